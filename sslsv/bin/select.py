"""Choose among models without labels: the split-utterance EER of an unlabelled set's audio.

  python -m sslsv.bin.select --data data/dev --output exp/x/SELECTION \\
      pl1=exp/x_pl1/final.pt pl2=exp/x_pl2/final.pt [--device cpu]

For each LABEL=MODEL, the criterion of :mod:`sslsv.selection` on DATA's audio (two crops of
each utterance, one per half; at most --max-utts of them, a seeded subset): split-utterance
EER, alignment and uniformity. DATA's utt2spk, spk2utt and trial lists are never read: the
choice uses no label. Writes OUTPUT atomically: a line per model (label, model, split_eer,
alignment, uniformity) and last ``selected LABEL``, the lowest split-utterance EER; prints
the same. Crops are --crop-seconds long at the first model's features.sample_rate.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

from sslsv import cli, selection
from sslsv.devices import check_device
from sslsv.errors import DataError
from sslsv.fileio import atomic_write
from sslsv.train.checkpoint import load_model


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, "python -m sslsv.bin.select")
    p.add_argument("--data", required=True, help="unlabelled data dir (its audio only)")
    p.add_argument("--output", required=True, help="the table and the choice")
    p.add_argument("--crop-seconds", type=cli.at_least(float, 0.1), default=2.0)
    p.add_argument("--max-utts", type=cli.at_least(int, 0), default=500)
    p.add_argument("--device", default="cpu")
    p.add_argument("models", nargs="+", metavar="LABEL=MODEL")
    return p


def select(args: argparse.Namespace) -> None:
    device = torch.device(check_device(args.device))
    models = []
    for item in args.models:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise DataError(f"model {item!r}: expected LABEL=MODEL")
        models.append((label, path))
    pairs = None
    rows = []
    for label, path in models:
        model, cfg = load_model(path, device)
        if pairs is None:
            pairs = selection.read_split_pairs(
                args.data, cfg.features.sample_rate, args.crop_seconds, args.max_utts
            )
        result = selection.evaluate(model, pairs, device)
        rows.append((label, path, result))
    best = min(rows, key=lambda row: row[2]["split_eer"])[0]
    lines = [
        f"{label} {path} split_eer {r['split_eer']:.4f} alignment {r['alignment']:.5f} "
        f"uniformity {r['uniformity']:.5f}"
        for label, path, r in rows
    ]
    lines.append(f"selected {best}")
    with atomic_write(args.output) as f:
        f.writelines(line + "\n" for line in lines)
    print("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(select, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
