"""Data preparation: import a corpus into a validated Kaldi data dir.

Reads the corpus' audio headers (in --nj processes; no audio is decoded) and, for VoxCeleb1,
the official trial lists. Writes DEST/{wav.scp,utt2spk,spk2utt,utt2dur} (plus utt2session,
segments, utt2sr, trials_* when the corpus has them) and DEST/excluded.txt, the excluded
files with their reasons.

Usage:
  python -m sslsv.bin.prepare_data librispeech ROOT DEST [--speakers F] [--exclude-speakers F]
  python -m sslsv.bin.prepare_data folder ROOT DEST
  python -m sslsv.bin.prepare_data csv LIST DEST
  python -m sslsv.bin.prepare_data voxceleb1 ROOT [ROOT ...] DEST [--trials O,E,H]
      [--veri-test F] [--list-test-all F] [--list-test-hard F] [--download [--download-dir D]]
  python -m sslsv.bin.prepare_data voxceleb2 ROOT DEST --wav-cache DIR
  python -m sslsv.bin.prepare_data musan ROOT DEST_PREFIX [--chunk-seconds 6]
  python -m sslsv.bin.prepare_data rirs ROOT DEST [--real]

Every kind also takes --config CONF (the experiment config: the audio is expected at its
features.sample_rate, and VoxCeleb2 decoded to it; without one, at the config's default),
--nj, --min-duration, --max-bad-fraction, --sample-rate, --allow-resample, --no-audio-check
[--utt2dur F], --speakers and --exclude-speakers (see --help of each kind).
Excluded files are listed in DEST/excluded.txt with the reason.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sslsv import cli
from sslsv.audio import default_jobs
from sslsv.corpora.folder import prepare_csv, prepare_folder
from sslsv.corpora.importer import ImportOptions
from sslsv.corpora.librispeech import prepare_librispeech
from sslsv.corpora.noise import prepare_musan, prepare_rirs
from sslsv.corpora.rate import add_rate_options, sample_rate_of
from sslsv.corpora.voxceleb import prepare_voxceleb1, prepare_voxceleb2
from sslsv.datadir.io import read_durations, read_id_list
from sslsv.errors import DataError


def _common_options(min_duration: float) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--nj", type=cli.at_least(int, 1), default=default_jobs(), help="parallel jobs"
    )
    common.add_argument(
        "--min-duration",
        type=float,
        default=min_duration,
        help=f"files shorter than this (seconds) are excluded (default {min_duration})",
    )
    common.add_argument(
        "--max-bad-fraction",
        type=float,
        default=0.01,
        help="fail when more than this fraction of files is unreadable or empty (default 0.01)",
    )
    add_rate_options(common, "the audio is expected (VoxCeleb2 decoded)")
    common.add_argument(
        "--allow-resample",
        action="store_true",
        help="accept other rates: record them in utt2sr (readers resample) instead of failing",
    )
    common.add_argument(
        "--no-audio-check",
        action="store_true",
        help="open no audio file (paths need not exist yet): durations come from --utt2dur, or "
        "no utt2dur is written; rates and channels are not checked",
    )
    common.add_argument(
        "--utt2dur",
        metavar="FILE",
        help="with --no-audio-check: 'utt seconds' lines giving every utterance's duration",
    )
    common.add_argument(
        "--check-silence",
        action="store_true",
        help="decode every kept file and list the digitally silent ones in DEST/silent.txt "
        "(a warning; slow on a large corpus: headers alone are read otherwise)",
    )
    common.add_argument(
        "--on-silence",
        choices=("warn", "error"),
        default="warn",
        help="with --check-silence: what a silent file is (default: a warning listing them)",
    )
    common.add_argument("--speakers", metavar="FILE", help="keep only these speakers")
    common.add_argument("--exclude-speakers", metavar="FILE", help="drop these speakers")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__, "python -m sslsv.bin.prepare_data")
    sub = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    speech = _common_options(0.5)

    p = sub.add_parser("librispeech", parents=[speech], help="ROOT/SPK/CHAPTER/*.flac")
    p.add_argument("root", help="a subset folder, e.g. LibriSpeech/train-clean-5")
    p.add_argument("dest")

    p = sub.add_parser("folder", parents=[speech], help="ROOT/SPEAKER/**/*.{wav,flac}")
    p.add_argument("root")
    p.add_argument("dest")

    p = sub.add_parser("csv", parents=[speech], help="CSV/TSV list: path,speaker[,utt,session]")
    p.add_argument("list_file", metavar="list")
    p.add_argument("dest")

    p = sub.add_parser("voxceleb1", parents=[speech], help="ROOT/wav/idXXXXX/VIDEO/NNNNN.wav")
    p.add_argument("roots", nargs="+", metavar="root", help="one or more (e.g. dev and test)")
    p.add_argument("dest")
    p.add_argument(
        "--trials",
        default="O",
        help="official lists to convert: comma list of O, E, H, or 'none' (default O)",
    )
    p.add_argument("--veri-test", metavar="FILE", help="veri_test2.txt (trials_O)")
    p.add_argument("--list-test-all", metavar="FILE", help="list_test_all2.txt (trials_E)")
    p.add_argument("--list-test-hard", metavar="FILE", help="list_test_hard2.txt (trials_H)")
    p.add_argument(
        "--download",
        action="store_true",
        help="fetch official lists found neither given nor next to the corpus from the VoxCeleb "
        "site (HTTPS, MD5-checked) into --download-dir",
    )
    p.add_argument(
        "--download-dir",
        metavar="DIR",
        help="where --download puts the lists (default: DEST/../local/voxceleb1_meta)",
    )

    p = sub.add_parser("voxceleb2", parents=[speech], help="ROOT/dev/aac/idXXXXX/VIDEO/*.m4a")
    p.add_argument("root")
    p.add_argument("dest")
    p.add_argument("--wav-cache", required=True, metavar="DIR", help="where decoded wavs go")
    p.add_argument("--subset", default="dev", help="dev or test (default dev)")

    noise = _common_options(0.5)
    p = sub.add_parser("musan", parents=[noise], help="ROOT/{noise,speech,music}/SUBSET/*.wav")
    p.add_argument("root")
    p.add_argument("dest_prefix", help="writes DEST_PREFIX_noise, _speech, _music")
    p.add_argument(
        "--chunk-seconds",
        type=float,
        default=6.0,
        help="virtual chunks via a segments file; 0 keeps whole files (default 6)",
    )
    p.add_argument("--categories", default="noise,speech,music", help="comma list")

    p = sub.add_parser(
        "rirs", parents=[_common_options(0.0)], help="RIRS_NOISES/simulated_rirs/*/RoomNNN/*.wav"
    )
    p.add_argument("root")
    p.add_argument("dest")
    p.add_argument("--real", action="store_true", help="add real_rirs_isotropic_noises/*rir*.wav")
    return parser


def options_from_args(args: argparse.Namespace) -> ImportOptions:
    if args.utt2dur and not args.no_audio_check:
        raise DataError("--utt2dur is only used with --no-audio-check (else headers are read)")
    return ImportOptions(
        check_audio=not args.no_audio_check,
        check_silence=args.check_silence,
        on_silence=args.on_silence,
        durations=read_durations(args.utt2dur) if args.utt2dur else None,
        min_duration=args.min_duration,
        max_bad_fraction=args.max_bad_fraction,
        sample_rate=sample_rate_of(args),
        allow_resample=args.allow_resample,
        nj=args.nj,
        speakers=read_id_list(args.speakers, "speaker") if args.speakers else None,
        exclude_speakers=(
            read_id_list(args.exclude_speakers, "speaker") if args.exclude_speakers else None
        ),
    )


def check_paths(args: argparse.Namespace) -> None:
    """What the import reads and writes, named once (sslsv.cli.check_io): a destination data
    dir, replaced whole, is not and does not hold the corpus, a list read or the wav cache;
    the wav cache and the download folder, written into, are not a file read."""
    inputs: dict[str, str | None] = {
        "--config": args.config,
        "--speakers": args.speakers,
        "--exclude-speakers": args.exclude_speakers,
        "--utt2dur": args.utt2dur,
    }
    if args.kind == "voxceleb1":
        inputs.update({f"ROOT[{i}]": root for i, root in enumerate(args.roots, 1)})
        inputs.update(
            {
                "--veri-test": args.veri_test,
                "--list-test-all": args.list_test_all,
                "--list-test-hard": args.list_test_hard,
            }
        )
    elif args.kind == "csv":
        inputs["LIST"] = args.list_file
    else:
        inputs["ROOT"] = args.root
    if args.kind == "musan":
        categories = [c.strip() for c in args.categories.split(",") if c.strip()]
        folders = {f"DEST_PREFIX ({c})": f"{args.dest_prefix}_{c}" for c in categories}
    else:
        folders = {"DEST": args.dest}
    into = {
        "--wav-cache": getattr(args, "wav_cache", None),
        "--download-dir": getattr(args, "download_dir", None),
    }
    cli.check_io(inputs, folders=folders, into=into)
    if into["--wav-cache"]:
        # The decoded audio that DEST's wav.scp names: DEST, replaced whole, may not hold it.
        cli.check_io({"--wav-cache": into["--wav-cache"]}, folders=folders)


def run(args: argparse.Namespace) -> None:
    if getattr(args, "download_dir", None) and not args.download:
        raise DataError("--download-dir is only used with --download")
    check_paths(args)
    options = options_from_args(args)
    if args.kind == "librispeech":
        prepare_librispeech(args.root, args.dest, options)
    elif args.kind == "folder":
        prepare_folder(args.root, args.dest, options)
    elif args.kind == "csv":
        prepare_csv(args.list_file, args.dest, options)
    elif args.kind == "voxceleb1":
        kinds = [] if args.trials == "none" else [k.strip() for k in args.trials.split(",")]
        given = {"O": args.veri_test, "E": args.list_test_all, "H": args.list_test_hard}
        prepare_voxceleb1(
            args.roots,
            args.dest,
            trials=kinds,
            trial_list_files={k: v for k, v in given.items() if v},
            options=options,
            download_dir=(
                (args.download_dir or Path(args.dest).parent / "local" / "voxceleb1_meta")
                if args.download
                else None
            ),
        )
    elif args.kind == "voxceleb2":
        prepare_voxceleb2(args.root, args.dest, args.wav_cache, options, args.subset)
    elif args.kind == "musan":
        categories = [c.strip() for c in args.categories.split(",") if c.strip()]
        prepare_musan(args.root, args.dest_prefix, args.chunk_seconds, categories, options)
    elif args.kind == "rirs":
        prepare_rirs(args.root, args.dest, args.real, options)


def main(argv: list[str] | None = None) -> int:
    return cli.run(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
