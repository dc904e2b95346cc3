"""The labels a second-stage round ended with, as a data dir (label correction).

  python -m sslsv.bin.relabel --data data/train_pl1 --labels exp/x_pl1/utt2label \\
      --output data/train_pl1_corrected [--truth data/train]

Reads DATA, the pseudo-labelled data dir the round trained on, and LABELS, ``utt2label``:
the class of each of its utterances at the end of training (written by training when
``method.correction`` is on). Writes OUTPUT atomically: DATA's files with utt2spk and
spk2utt from LABELS (classes that lost every utterance disappear), and
OUTPUT/relabel.json: how many utterances changed class and, when --truth has real speakers
(its utt2spk: statistics only, never used for training), NMI and purity before and after.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from sslsv import cli
from sslsv.cluster import quality
from sslsv.datadir.io import write_spk2utt
from sslsv.datadir.tools import write_filtered
from sslsv.errors import DataError
from sslsv.fileio import atomic_dir, atomic_write, kaldi_sort_key, read_dict, write_table

log = logging.getLogger("relabel")


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, "python -m sslsv.bin.relabel")
    p.add_argument("--data", required=True, help="the round's pseudo-labelled data dir")
    p.add_argument("--labels", required=True, help="the round's utt2label")
    p.add_argument("--output", required=True, help="the corrected data dir to write")
    p.add_argument("--truth", help="a data dir whose utt2spk has the true speakers")
    return p


def relabel(args: argparse.Namespace) -> None:
    data, output = Path(args.data), Path(args.output)
    before = read_dict(data / "utt2spk")
    after = read_dict(args.labels)
    missing = sorted(set(before) - set(after), key=kaldi_sort_key)
    if missing:
        raise DataError(f"{args.labels}: no label for {len(missing)} utterances of {data}, "
                        f"e.g. {missing[0]!r}")  # fmt: skip
    utts = sorted(before, key=kaldi_sort_key)
    summary: dict = {
        "utterances": len(utts),
        "changed": sum(before[u] != after[u] for u in utts),
        "classes_before": len(set(before.values())),
        "classes_after": len({after[u] for u in utts}),
    }
    if args.truth:
        truth = read_dict(Path(args.truth) / "utt2spk")
        true = [truth.get(u, u) for u in utts]
        if len(set(true)) > 1:
            summary["before"] = quality(true, [before[u] for u in utts])
            summary["after"] = quality(true, [after[u] for u in utts])
            summary["note"] = "statistics only: true labels are not used for training"
    with atomic_dir(output) as tmp:
        write_filtered(data, tmp, set(utts), with_trials=False)
        write_table(tmp / "utt2spk", {u: after[u] for u in utts})
        write_spk2utt(tmp)
        with atomic_write(tmp / "relabel.json") as f:
            json.dump(summary, f, indent=1)
    line = f"{output}: {summary['changed']} of {len(utts)} utterances changed class"
    if "before" in summary:
        b, a = summary["before"], summary["after"]
        line += (
            f"; purity {b['purity']:.4f} -> {a['purity']:.4f}, NMI {b['nmi']:.4f} -> {a['nmi']:.4f}"
        )
    log.info("%s", line)


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(relabel, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
