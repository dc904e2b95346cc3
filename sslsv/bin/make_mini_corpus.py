"""Data preparation of egs/mini: generate the offline synthetic multi-speaker corpus.

Reads the eSpeak NG library and voices of the espeakng-loader package and, with --config, the
experiment config's features.sample_rate. Writes OUT/wav/SPK/SESSION/SPK-SESSION-NNNN.wav
(mono int16 at that rate, or without a config at the config's default), OUT/speakers.tsv
and, last, OUT/wav.stamp (its settings). Rerunning with the same arguments does nothing; other
arguments generate it again; an interrupted run is redone from scratch.
"""

from __future__ import annotations

import argparse
import os
import sys

from sslsv import cli
from sslsv.corpora.rate import add_rate_options, sample_rate_of
from sslsv.simulation.mini_corpus import make_corpus


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__, "python -m sslsv.bin.make_mini_corpus")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--num-speakers", type=cli.at_least(int, 1), default=100, help="default: %(default)s"
    )
    parser.add_argument(
        "--utts-per-speaker", type=cli.at_least(int, 1), default=12, help="default: %(default)s"
    )
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    parser.add_argument(
        "--speaker-prefix",
        default="spk",
        help="speaker ids <prefix>001... (default: %(default)s; e.g. dev for a dev corpus)",
    )
    parser.add_argument(
        "--keep-last",
        type=cli.at_least(int, 0),
        default=0,
        help="render only the last N planned speakers (0: all; default: %(default)s)",
    )
    parser.add_argument(
        "--nj",
        type=cli.at_least(int, 1),
        default=min(4, os.cpu_count() or 1),
        help="parallel worker processes (default: %(default)s)",
    )
    add_rate_options(parser, "the corpus is written")
    return parser


def run(args: argparse.Namespace) -> None:
    make_corpus(
        args.out,
        num_speakers=args.num_speakers,
        utts_per_speaker=args.utts_per_speaker,
        seed=args.seed,
        nj=args.nj,
        verbose=True,
        speaker_prefix=args.speaker_prefix,
        keep_last=args.keep_last,
        sample_rate=sample_rate_of(args),
    )


def main(argv: list[str] | None = None) -> int:
    return cli.run(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
