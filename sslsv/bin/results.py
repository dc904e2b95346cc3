"""Results: the experiment's RESULTS file, one line per (model, trial list).

  python -m sslsv.bin.results --config conf/x.yaml --output exp/x/RESULTS \
      --row "final test_trials" exp/x/scores_final/test_trials.metrics [--row ...] \
      [--clustering pl1 data/train_pl1/clustering.json ...] [--note TEXT ...] \
      [--thresholds ssl exp/x/calibration_final/calibration.json ... --thresholds-output F]

Reads the metrics files written by sslsv.bin.compute_metrics, the clustering statistics of
sslsv.bin.cluster and the config (the embedding protocol of extract: and the back end of
scoring:, named in the header). Writes OUTPUT atomically: a header of '#' lines (with the
notes and one line per clustering round), then per --row its label, EER and minDCF values
(and actDCF and Cllr after calibration, when the metrics file has them). With --thresholds,
also THRESHOLDS-OUTPUT (default: THRESHOLDS beside OUTPUT): per model the raw-score
thresholds its calibration file recorded on the development trials.

A --row LABEL is 'MODEL TRIALS' (RESULTS' first two columns), a --thresholds or --clustering
LABEL one name: names without whitespace, each label given once. An output that is one of
the files read, a label with whitespace in a name or given twice: a one-line error, and
nothing is written.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sslsv import cli
from sslsv.calibration import Calibration
from sslsv.config.load import load_config
from sslsv.errors import DataError, UserError
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
        help="a line of RESULTS: its label 'MODEL TRIALS' and the metrics file it reports",
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
    p.add_argument(
        "--thresholds",
        nargs=2,
        action="append",
        default=[],
        metavar=("LABEL", "CALIBRATION"),
        help="a model's calibration.json, whose thresholds THRESHOLDS lists",
    )
    p.add_argument("--thresholds-output", help="default: THRESHOLDS beside --output")
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
    fields += [
        line for line in lines if line.startswith(("actDCF", "Cllr")) and "calibrated" in line
    ]
    return " ".join(fields)


def _threshold(value: float | None) -> str:
    return "inf" if value is None or value == float("inf") else f"{value:.4f}"


def thresholds_lines(entries: list[tuple[str, str]]) -> list[str]:
    """THRESHOLDS: one line per model of the raw-score thresholds of its calibration."""
    lines: list[str] = []
    for label, path in entries:
        cal = Calibration.from_json(path)
        t = cal.thresholds
        if not lines:
            columns = ["EER"]
            columns += [f"minDCF(p={p})" for p in t.get("min_dcf", {})]
            columns += [f"FAR={float(r):.2%}" for r in t.get("far", {})]
            columns += [f"Bayes(p={p})" for p in t.get("bayes", {})]
            lines = [
                "# raw-score thresholds (accept a trial when score >= threshold), fitted on "
                "each model's development trials, never the test trials;",
                f"# calibration: LLR = a * score + b at p_target {cal.p_target:g} "
                "(python -m sslsv.bin.calibrate)",
                "# model dev_trials a b " + " ".join(columns),
            ]
        values = [_threshold(t["eer"]["raw"])]
        values += [_threshold(v["raw"]) for v in t.get("min_dcf", {}).values()]
        values += [_threshold(v["raw"]) for v in t.get("far", {}).values()]
        values += [_threshold(v.get("raw")) for v in t.get("bayes", {}).values()]
        lines.append(
            f"{label} {cal.trials} {cal.score_weight:.4f} {cal.bias:.4f} " + " ".join(values)
        )
    return lines


def check_labels(args: argparse.Namespace) -> None:
    """Refuse labels that would make RESULTS or THRESHOLDS ambiguous: whitespace inside a
    name (its columns would shift) or a label given twice (two lines, one name)."""
    options = (("--row", args.row, 2), ("--clustering", args.clustering, 1))
    for option, entries, names in (*options, ("--thresholds", args.thresholds, 1)):
        seen: set[str] = set()
        for label, _path in entries:
            if len(label.split()) != names or label != " ".join(label.split()):
                want = "'MODEL TRIALS', two names" if names == 2 else "one name"
                raise UserError(f"{option} label {label!r}: a label is {want} without whitespace")
            if label in seen:
                raise UserError(f"{option} label {label!r} is given twice: give each once")
            seen.add(label)


def thresholds_path(args: argparse.Namespace) -> Path | None:
    """THRESHOLDS-OUTPUT, when --thresholds asks for it."""
    if not args.thresholds:
        return None
    return Path(args.thresholds_output or Path(args.output).with_name("THRESHOLDS"))


def check_paths(args: argparse.Namespace) -> None:
    """Every file read and written, named once (sslsv.cli.check_io): no output may be one
    of the inputs, and the two outputs are two files."""
    inputs: dict[str, str | None] = {"--config": args.config}
    for option, entries in (
        ("--row", args.row),
        ("--clustering", args.clustering),
        ("--thresholds", args.thresholds),
    ):
        inputs.update({f"{option} {label!r}": path for label, path in entries})
    thresholds = thresholds_path(args)
    cli.check_io(inputs, files={"--output": args.output, "--thresholds-output": thresholds})
    if thresholds is not None and thresholds.resolve() == Path(args.output).resolve():
        raise cli.OutputError(f"--thresholds-output {thresholds} is --output too: name two files")


def write_results(args: argparse.Namespace) -> None:
    check_labels(args)
    check_paths(args)
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
    if args.thresholds:
        table = thresholds_lines(args.thresholds)
        with atomic_write(thresholds_path(args)) as f:
            f.write("\n".join(table) + "\n")


def main(argv: list[str] | None = None) -> int:
    return cli.run(write_results, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
