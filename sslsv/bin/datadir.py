"""Kaldi data-dir tools: the Python side of ``utils/*.sh``.

Each command reads and writes the data dirs it names (validate writes nothing; fix keeps the
originals in DIR/.backup/; combine, subset and split build their output whole, then swap it
in). Exit status 0 on success, 1 on bad data (the message names file, line and id), 2 on bad
usage. An output that is a source or holds one (DEST = SRC, a DEST above a SRC) is refused
before anything is written, in one line (sslsv.cli.check_io, from the tools themselves).

Usage:
  python -m sslsv.bin.datadir validate DIR [--no-wav-check]
  python -m sslsv.bin.datadir fix DIR
  python -m sslsv.bin.datadir combine DEST SRC1 [SRC2 ...]
  python -m sslsv.bin.datadir subset (--utt-list FILE | --spk-list FILE | --first N) SRC DEST
  python -m sslsv.bin.datadir split [--per-spk] DIR N        # prints the part folders
  python -m sslsv.bin.datadir utt2dur [--nj N] DIR
  python -m sslsv.bin.datadir spk2utt [UTT2SPK|-] > spk2utt
"""

from __future__ import annotations

import argparse
import logging
import sys

from sslsv import cli
from sslsv.audio import default_jobs
from sslsv.datadir.fix import fix_data_dir
from sslsv.datadir.io import spk2utt_from_utt2spk
from sslsv.datadir.tools import (
    combine_data_dirs,
    compute_utt2dur,
    split_data_dir,
    subset_data_dir,
)
from sslsv.datadir.validate import validate_data_dir
from sslsv.errors import DataError
from sslsv.fileio import read_table


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__, "python -m sslsv.bin.datadir")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check a data dir for consistency")
    p.add_argument("dir")
    p.add_argument(
        "--no-wav-check",
        action="store_true",
        help="do not check audio files exist, nor read their headers (with segments: that "
        "every segment ends within its recording, checked against reco2dur instead when present)",
    )

    p = sub.add_parser("fix", help="keep only consistent utterances; report what is dropped")
    p.add_argument("dir")

    p = sub.add_parser("combine", help="concatenate data dirs (duplicate utterances: error)")
    p.add_argument("dest")
    p.add_argument("srcs", nargs="+", metavar="src")

    p = sub.add_parser("subset", help="copy part of a data dir")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--utt-list", metavar="FILE", help="utterance ids (first column)")
    group.add_argument("--spk-list", metavar="FILE", help="speaker ids (first column)")
    group.add_argument("--first", type=int, metavar="N", help="first N utterances (sorted)")
    p.add_argument("src")
    p.add_argument("dest")

    p = sub.add_parser(
        "split",
        help="split into DIR/split{N}/{1..N} (per utterance) or DIR/split{N}spk/{1..N}",
    )
    p.add_argument("dir")
    p.add_argument("n", type=cli.at_least(int, 1))
    p.add_argument("--per-spk", action="store_true", help="keep each speaker in one part")

    p = sub.add_parser("utt2dur", help="write DIR/utt2dur from audio headers")
    p.add_argument("dir")
    p.add_argument(
        "--nj", type=cli.at_least(int, 1), default=default_jobs(), help="parallel processes"
    )

    p = sub.add_parser("spk2utt", help="print spk2utt for a utt2spk file (or stdin)")
    p.add_argument("utt2spk", nargs="?", default="-", help="utt2spk file, '-' for stdin")
    return parser


def _spk2utt(source: str) -> None:
    if source == "-":
        utt2spk = {}
        for lineno, line in enumerate(sys.stdin, 1):
            fields = line.split()
            if len(fields) != 2:
                raise DataError(f"<stdin>:{lineno}: expected 'utt spk', got {line.rstrip()!r}")
            utt2spk[fields[0]] = fields[1]
    else:
        utt2spk = {}
        for lineno, (utt, spk) in enumerate(read_table(source), 1):
            if len(spk.split()) != 1:
                raise DataError(f"{source}:{lineno}: expected 'utt spk', got {utt} {spk!r}")
            utt2spk[utt] = spk
    for spk, utts in spk2utt_from_utt2spk(utt2spk).items():
        sys.stdout.write(f"{spk} {' '.join(utts)}\n")


def run(args: argparse.Namespace) -> None:
    if args.command == "validate":
        warnings = validate_data_dir(args.dir, check_wav_exists=not args.no_wav_check)
        logging.info("%s: valid%s", args.dir, f" ({len(warnings)} warnings)" if warnings else "")
    elif args.command == "fix":
        summary = fix_data_dir(args.dir)
        logging.info("%s: kept %d, dropped %d", args.dir, summary["kept"], summary["dropped"])
    elif args.command == "combine":
        combine_data_dirs(args.dest, args.srcs)
    elif args.command == "subset":
        subset_data_dir(
            args.src, args.dest, utt_list=args.utt_list, spk_list=args.spk_list, first=args.first
        )
    elif args.command == "split":
        for part in split_data_dir(args.dir, args.n, per_speaker=args.per_spk):
            print(part)
    elif args.command == "utt2dur":
        durations = compute_utt2dur(args.dir, nj=args.nj)
        hours = sum(durations.values()) / 3600
        logging.info("%s/utt2dur: %d utterances, %.2f h", args.dir, len(durations), hours)
    elif args.command == "spk2utt":
        _spk2utt(args.utt2spk)


def main(argv: list[str] | None = None) -> int:
    return cli.run(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
