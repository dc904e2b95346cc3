"""Data preparation: offline augmentation sets (simulated RIRs, noise, babble, music) as data dirs.

Reads the noise and music files given (searched recursively in --noise-dir/--music-dir)
and, for babble, the utterances of --babble-from. Writes OUT/rirs, OUT/noise and, when given
sources, OUT/speech and OUT/music, each a data dir with a stamp beside it (OUT/SET.stamp: its
settings and the identity of its source files). A set built from the same inputs is reused;
from other inputs, rebuilt whole, and the log says what changed.

Usage:
  python -m sslsv.bin.make_aug_sets --out exp/aug --seed 0 [--config CONF] \\
      [--num-rirs 200] [--noise-dir ../shared/data/noise/speech_commands_background] \\
      [--noise-files F ...] [--babble-from data/train] [--music-dir D]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from sslsv import cli
from sslsv.audio import AUDIO_EXTENSIONS, find_audio_files
from sslsv.corpora.rate import add_rate_options, sample_rate_of
from sslsv.errors import DataError
from sslsv.simulation.aug_sets import build_aug_sets


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, "python -m sslsv.bin.make_aug_sets")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    add_rate_options(p, "the sets are written")
    p.add_argument("--num-rirs", type=cli.at_least(int, 1), default=200)
    p.add_argument(
        "--rir-method",
        choices=["auto", "pyroomacoustics", "exp-decay"],
        default="auto",
        help="auto: pyroomacoustics when installed, else an exponential-decay model",
    )
    p.add_argument("--noise-files", nargs="+", default=[], metavar="F")
    p.add_argument(
        "--noise-dir",
        action="append",
        default=[],
        metavar="D",
        help="folder of noise audio (searched recursively); may repeat",
    )
    p.add_argument("--num-colored", type=int, default=30, help="generated coloured noises")
    p.add_argument("--babble-from", metavar="DATA_DIR", help="data dir for babble sources")
    p.add_argument("--num-babble", type=int, default=200, help="babble source chunks")
    p.add_argument("--music-files", nargs="+", default=[], metavar="F")
    p.add_argument("--music-dir", action="append", default=[], metavar="D")
    p.add_argument("--chunk-seconds", type=float, default=5.0)
    p.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="processes for RIR simulation (results do not depend on it)",
    )
    return p


#: The sets under OUT, each rebuilt whole.
SETS = ("rirs", "noise", "speech", "music")


def check_paths(args: argparse.Namespace, found: dict[str, list[Path]]) -> None:
    """No set under OUT (each replaced whole) is, or holds, a source: a noise or music file
    (given, or found in a folder searched), a folder searched or the babble data dir, e.g.
    --noise-dir OUT/noise from an earlier build (sslsv.cli.check_io)."""
    inputs: dict[str, str | os.PathLike | None] = {
        "--config": args.config,
        "--babble-from": args.babble_from,
    }
    for option, files, dirs in (
        ("noise", args.noise_files, args.noise_dir),
        ("music", args.music_files, args.music_dir),
    ):
        inputs.update({f"--{option}-files[{i}]": f for i, f in enumerate(files, 1)})
        for i, d in enumerate(dirs, 1):
            inputs[f"--{option}-dir[{i}]"] = d
            inputs.update(
                {f"--{option}-dir[{i}]'s file #{j}": f for j, f in enumerate(found[d], 1)}
            )
    out = Path(args.out)
    cli.check_io(inputs, folders={f"--out {name}": out / name for name in SETS})


def run(args: argparse.Namespace) -> None:
    sample_rate = sample_rate_of(args)  # a bad --config fails before any work
    found = {}
    for d in args.noise_dir + args.music_dir:
        found[d] = find_audio_files(d)
        if not found[d]:
            raise DataError(f"{d}: no audio files ({' '.join(AUDIO_EXTENSIONS)})")
    noise = list(args.noise_files) + [f for d in args.noise_dir for f in found[d]]
    music = list(args.music_files) + [f for d in args.music_dir for f in found[d]]
    check_paths(args, found)
    start = time.time()
    build_aug_sets(
        args.out,
        seed=args.seed,
        sample_rate=sample_rate,
        num_rirs=args.num_rirs,
        rir_method=args.rir_method,
        noise_files=noise,
        num_colored=args.num_colored,
        babble_from=args.babble_from,
        num_babble=args.num_babble,
        music_files=music,
        chunk_seconds=args.chunk_seconds,
        jobs=args.jobs,
    )
    logging.info("done in %.1f s", time.time() - start)


def main(argv: list[str] | None = None) -> int:
    return cli.run(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
