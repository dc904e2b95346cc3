"""Data preparation: generate a trial list for a data dir without an official one.

  python -m sslsv.bin.make_trials DATA_DIR --num-per-utt K --target-fraction F --seed S
      [--output FILE] [--cross-session-output FILE2]

Reads DATA_DIR/utt2spk (and utt2session, when present). Targets pair utterances of one
speaker from different sessions where it has several, else from one session; non-targets
pair different speakers; no pair twice. Writes DATA_DIR/trials (or FILE), deterministic
given the seed, and with --cross-session-output the same list without its same-session
targets (every non-target kept): the harder trials, where the channel does not help.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sslsv import cli
from sslsv.datadir.io import trial_files, write_trials
from sslsv.datadir.trials import count_trials, make_trials
from sslsv.datadir.validate import validate_data_dir
from sslsv.errors import DataError
from sslsv.fileio import read_dict


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__, "python -m sslsv.bin.make_trials")
    parser.add_argument("data_dir")
    parser.add_argument(
        "--num-per-utt", type=int, default=10, help="trials per enrollment utterance (10)"
    )
    parser.add_argument(
        "--target-fraction", type=float, default=0.5, help="fraction of target trials (0.5)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="trial file (default DATA_DIR/trials)")
    parser.add_argument(
        "--cross-session-output",
        help="also write the trials without same-session targets here (needs utt2session)",
    )
    return parser


def check_paths(data_dir: Path, output: Path, cross: Path | None) -> None:
    """The outputs are two files that are none of DATA_DIR's files but its trial lists
    (which this command writes), and can be written (sslsv.cli.check_io)."""
    inputs: dict[str, Path] = {"DATA_DIR": data_dir}
    if data_dir.is_dir():
        trials = set(trial_files(data_dir))
        for path in sorted(data_dir.iterdir()):
            if path.is_file() and path.name not in trials:
                inputs[f"DATA_DIR/{path.name}"] = path
    cli.check_io(inputs, files={"--output": output, "--cross-session-output": cross})
    if cross is not None and cross.resolve() == output.resolve():
        raise cli.OutputError(f"--cross-session-output {cross} is --output too: name two files")


def run(args: argparse.Namespace) -> None:
    data_dir = Path(args.data_dir)
    output = Path(args.output) if args.output else data_dir / "trials"
    cross_output = Path(args.cross_session_output) if args.cross_session_output else None
    validate_data_dir(data_dir, check_wav_exists=False)
    check_paths(data_dir, output, cross_output)
    utt2spk = read_dict(data_dir / "utt2spk")
    session_file = data_dir / "utt2session"
    utt2session = read_dict(session_file) if session_file.is_file() else None
    if utt2session is None:
        if args.cross_session_output:
            raise DataError(f"{session_file}: needed by --cross-session-output, not found")
        logging.info("%s: no utt2session; target trials may share a session", data_dir)
    trials = make_trials(
        utt2spk,
        utt2session,
        trials_per_utt=args.num_per_utt,
        target_fraction=args.target_fraction,
        seed=args.seed,
    )
    write_trials(output, trials)
    if cross_output is not None:
        cross = [t for t in trials if not t[2] or utt2session[t[0]] != utt2session[t[1]]]
        write_trials(cross_output, cross)
        logging.info(
            "%s: %d trials (%d target across sessions)",
            args.cross_session_output,
            len(cross),
            sum(t[2] for t in cross),
        )
    counts = count_trials(trials, utt2spk, utt2session)
    logging.info(
        "%s: %d speakers (%d utterances) -> %s; written to %s",
        data_dir,
        len(set(utt2spk.values())),
        len(utt2spk),
        counts.describe(utt2session is not None),
        output,
    )


def main(argv: list[str] | None = None) -> int:
    return cli.run(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
