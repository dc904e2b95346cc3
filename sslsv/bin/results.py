"""Stage 5: the experiment's RESULTS file, one line per (model, trial list).

  python -m sslsv.bin.results --config conf/x.yaml --output exp/x/RESULTS \
      --row "final test_trials" exp/x/scores_final/test_trials.metrics [--row ...] \
      [--clustering pl1 data/train_pl1/clustering.json ...] [--note TEXT ...]

Reads the metrics files written by sslsv.bin.compute_metrics, the clustering statistics of
sslsv.bin.cluster and the config (the embedding protocol of extract: and the back end of
scoring:, named in the header). Writes OUTPUT atomically: a header of '#' lines (with the
notes and one line per clustering round), then per --row its label, EER and minDCF values.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sslsv import cli
from sslsv.config.load import load_config
from sslsv.errors import DataError
from sslsv.fileio import atomic_write


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, "python -m sslsv.bin.results")
    p.add_argument("--config", required=True, help="the experiment config")
    p.add_argument("--output", required=True, help="the RESULTS file to write")
    p.add_argument(
        "--row",
        nargs=2,
        action="append",
        required=True,
        metavar=("LABEL", "METRICS"),
        help="a line of RESULTS: its label and the metrics file it reports",
    )
    p.add_argument(
        "--clustering",
        nargs=2,
        action="append",
        default=[],
        metavar=("LABEL", "JSON"),
        help="a second-stage round: its label and the clustering.json of its data dir",
    )
    p.add_argument("--note", action="append", default=[], help="one more header line")
    return p


#: The clustering statistics that RESULTS shows, in this order, when clustering.json has them.
CLUSTERING_FIELDS = ("utterances", "kept", "clusters", "nmi", "ari", "purity", "inverse_purity")


def clustering_line(label: str, path: Path) -> str:
    """One '#' line of a round's clustering statistics (clustering.json of sslsv.bin.cluster)."""
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            f"{path}: clustering statistics not found (run sslsv.bin.cluster)"
        ) from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not JSON ({e})") from None
    fields = []
    for key in CLUSTERING_FIELDS:
        value = stats.get(key)
        if isinstance(value, float):
            fields.append(f"{key} {value:.4f}")
        elif value is not None:
            fields.append(f"{key} {value}")
    return f"# clustering {label}: " + ", ".join(fields)


def metric_fields(path: Path) -> str:
    """The EER and minDCF lines of a metrics file, joined into one."""
    if not path.is_file():
        raise DataError(f"{path}: metrics file not found (run sslsv.bin.compute_metrics)")
    lines = path.read_text(encoding="utf-8").splitlines()
    fields = [line for line in lines if line.startswith(("EER", "minDCF"))]
    if not fields:
        raise DataError(f"{path}: no EER or minDCF line")
    return " ".join(fields)


def write_results(args: argparse.Namespace) -> None:
    cfg = load_config(args.config)
    output = Path(args.output)
    sc = cfg.scoring
    date = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())
    lines = [
        f"# {output.parent}: config {args.config}, {date}",
        "# model trials EER minDCF(p=...) (C_miss = C_fa = 1); init: the encoder untrained",
        f"# embeddings: {cfg.extract.describe()}; scoring: {sc.backend}, "
        f"score normalisation: {sc.norm}",
    ]
    lines += [f"# {note}" for note in args.note]
    lines += [clustering_line(label, Path(path)) for label, path in args.clustering]
    lines += [f"{label} {metric_fields(Path(path))}" for label, path in args.row]
    with atomic_write(output) as f:
        f.write("\n".join(lines) + "\n")
    sys.stdout.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    return cli.run(write_results, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
