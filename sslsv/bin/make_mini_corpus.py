"""Generate the offline synthetic multi-speaker corpus used by ``egs/mini`` (stage 0).

Writes ``OUT/wav/SPK/SESSION/SPK-SESSION-NNNN.wav`` (16 kHz mono int16), ``OUT/speakers.tsv``
and, last, ``OUT/.done``. Rerunning with the same arguments does nothing; an interrupted
run is redone from scratch.
"""

from __future__ import annotations

import argparse
import os
import sys

from sslsv.data.synth import SynthError, make_corpus


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sslsv.bin.make_mini_corpus",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--num-speakers", type=int, default=100, help="default: %(default)s")
    parser.add_argument("--utts-per-speaker", type=int, default=12, help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    parser.add_argument(
        "--nj",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="parallel worker processes (default: %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("num_speakers", "utts_per_speaker", "nj"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    try:
        make_corpus(
            args.out,
            num_speakers=args.num_speakers,
            utts_per_speaker=args.utts_per_speaker,
            seed=args.seed,
            nj=args.nj,
            verbose=True,
        )
    except SynthError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
