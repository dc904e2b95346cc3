"""Stage 5: the experiment's RESULTS file, one line per (model, trial list).

  python -m sslsv.bin.results --config conf/x.yaml --output exp/x/RESULTS \
      --row "final test_trials" exp/x/scores_final/test_trials.metrics [--row ...]

Reads the metrics files written by sslsv.bin.compute_metrics and the config (the embedding
protocol of extract: and the back end of scoring:, named in the header). Writes OUTPUT
atomically: a header of '#' lines, then per --row its label, EER and minDCF values.
"""

from __future__ import annotations

import argparse
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
    return p


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
        "# model trials EER minDCF(p=...) (C_miss = C_fa = 1); final.pt is trained, "
        "init.pt untrained",
        f"# embeddings: {cfg.extract.describe()}; scoring: {sc.backend}, "
        f"score normalisation: {sc.norm}",
    ]
    lines += [f"{label} {metric_fields(Path(path))}" for label, path in args.row]
    with atomic_write(output) as f:
        f.write("\n".join(lines) + "\n")
    sys.stdout.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    return cli.run(write_results, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
