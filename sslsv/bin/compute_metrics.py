"""Metrics: EER, minDCF, actDCF and Cllr of a score file against a trial list.

  python -m sslsv.bin.compute_metrics --trials data/test/trials --scores S [--config C]
      [--p-target P ...] [--plot-dir DIR] [--output FILE] [--json]
      [--calibration CAL.json [--utt2dur FILE ...]]

Reads the trial list and the score file (matched by (enroll, test) pair, in any order) and
the target priors of DCF (scoring.p_target of --config, or --p-target). Prints one
``name: value`` line per metric (or one JSON object with ``--json``), also written to
--output; --plot-dir gets det.png and score_hist.png::

    EER: 4.2290%
    minDCF(p=0.01): 0.4213
    actDCF(p=0.01): 1.0000
    Cllr: 0.9110
    #target: 97635
    #nontarget: 899789

With --calibration (from sslsv.bin.calibrate; --utt2dur too when it uses quality measures),
the raw scores' metrics are followed by actDCF per prior and Cllr of the calibrated scores
(``act_dcf_calibrated`` and ``cllr_calibrated`` in the JSON)::

    actDCF(p=0.01) calibrated: 0.4321
    Cllr calibrated: 0.4000

A calibration must name its model (calibrate records it); when SCORES.stamp (from
sslsv.bin.score) says which model made the scores, it must be that one, fitted on scores
of the same scoring settings, and the scores must be raw, not LLRs already. --output may
not be an input; --plot-dir may hold inputs but not be one.

Definitions: see ``sslsv/metrics.py`` and ``docs/BACKEND.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sslsv import cli
from sslsv.calibration import Calibration
from sslsv.config.load import load_config
from sslsv.config.schema import ScoringConfig
from sslsv.datadir.io import read_trials
from sslsv.errors import DataError
from sslsv.fileio import atomic_write
from sslsv.metrics import compute_act_dcf, compute_cllr, compute_metrics, det_curve
from sslsv.plots import plot_det, plot_score_histograms
from sslsv.provenance import recorded_fingerprint, scores_made_by
from sslsv.scores import scores_for_trials


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, "python -m sslsv.bin.compute_metrics")
    p.add_argument("--trials", required=True, help="Kaldi trial list")
    p.add_argument("--scores", required=True, help="'enroll test score' lines")
    p.add_argument("--config", help="experiment config (its scoring.p_target)")
    p.add_argument(
        "--p-target",
        type=cli.fraction(),
        nargs="+",
        help="target priors for DCF (scoring.p_target)",
    )
    p.add_argument("--plot-dir", help="write det.png and score_hist.png here")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--output", help="also write the printed result to this file")
    p.add_argument("--calibration", help="calibration (.json): also calibrated actDCF, Cllr")
    p.add_argument("--utt2dur", nargs="+", help="durations, for a calibration that uses them")
    return p


def format_text(result: dict) -> str:
    lines = [f"EER: {100 * result['eer']:.4f}%"]
    lines += [f"minDCF(p={p:g}): {v:.4f}" for p, v in result["min_dcf"].items()]
    lines += [f"actDCF(p={p:g}): {v:.4f}" for p, v in result["act_dcf"].items()]
    lines += [
        f"Cllr: {result['cllr']:.4f}",
        f"#target: {result['n_target']}",
        f"#nontarget: {result['n_nontarget']}",
    ]
    if "cllr_calibrated" in result:
        lines += [
            f"actDCF(p={p:g}) calibrated: {v:.4f}" for p, v in result["act_dcf_calibrated"].items()
        ]
        lines.append(f"Cllr calibrated: {result['cllr_calibrated']:.4f}")
    return "\n".join(lines) + "\n"


def _finite_or_none(value: float) -> float | None:
    # A +inf threshold (reject everything) has no JSON number; null says "none".
    return value if np.isfinite(value) else None


def _by_prior(values: dict) -> dict:
    return {f"{p:g}": _finite_or_none(v) for p, v in values.items()}


def format_json(result: dict) -> str:
    out = {
        "eer_percent": 100 * result["eer"],
        "eer_threshold": _finite_or_none(result["eer_threshold"]),
        "min_dcf": _by_prior(result["min_dcf"]),
        "min_dcf_threshold": _by_prior(result["min_dcf_threshold"]),
        "act_dcf": _by_prior(result["act_dcf"]),
        "cllr": result["cllr"],
        "n_target": result["n_target"],
        "n_nontarget": result["n_nontarget"],
    }
    if "cllr_calibrated" in result:
        out["act_dcf_calibrated"] = _by_prior(result["act_dcf_calibrated"])
        out["cllr_calibrated"] = result["cllr_calibrated"]
    return json.dumps(out, allow_nan=False) + "\n"


def add_calibrated(
    args: argparse.Namespace, scores: np.ndarray, labels: np.ndarray, result: dict
) -> None:
    """actDCF per prior and Cllr of the scores after ``--calibration``, into ``result``."""
    calibration = Calibration.from_json(args.calibration)
    made = scores_made_by(args.scores)
    model = None if made is None else made["model"]
    if made is not None:
        if made["calibration"] is not None:
            raise DataError(
                f"--scores {args.scores}: LLRs already (sslsv.bin.score --calibration): "
                f"--calibration {args.calibration} would calibrate them twice"
            )
        calibration.check_scoring(made["scoring"], args.calibration)
    fingerprint = None if model is None else recorded_fingerprint(model, args.scores)
    what = f"the model that made {args.scores} ({model and model['path']})"
    calibration.check_model(fingerprint, args.calibration, what)
    quality = None
    if calibration.quality:
        trials = read_trials(args.trials)  # scores are in trial order
        enrolls, tests = [t[0] for t in trials], [t[1] for t in trials]
        quality = calibration.quality_for(enrolls, tests, args.utt2dur, args.calibration)
    llr = calibration.apply(scores, quality)
    result["act_dcf_calibrated"] = {
        p: compute_act_dcf(llr, labels, p)[0] for p in result["act_dcf"]
    }
    result["cllr_calibrated"] = compute_cllr(llr, labels)


def write_plots(scores: np.ndarray, labels: np.ndarray, result: dict, plot_dir: Path) -> None:
    p_miss, p_fa, thresholds = det_curve(scores, labels)
    points = []
    for p, threshold in result["min_dcf_threshold"].items():
        k = int(np.searchsorted(thresholds, threshold))
        points.append((f"minDCF(p={p:g}) {result['min_dcf'][p]:.3f}", p_fa[k], p_miss[k]))
    plot_det(p_miss, p_fa, plot_dir / "det.png", result["eer"], points)
    plot_score_histograms(scores, labels, plot_dir / "score_hist.png")


def evaluate(args: argparse.Namespace) -> None:
    cli.check_io(
        {
            "--trials": args.trials,
            "--scores": args.scores,
            "--config": args.config,
            "--calibration": args.calibration,
            **cli.numbered("--utt2dur", args.utt2dur),
        },
        files={"--output": args.output},
        into={"--plot-dir": args.plot_dir},
    )
    p_target = args.p_target
    if p_target is None:
        p_target = (load_config(args.config).scoring if args.config else ScoringConfig()).p_target
    scores, labels = scores_for_trials(args.trials, args.scores)
    try:
        result = compute_metrics(scores, labels, tuple(dict.fromkeys(p_target)))
    except ValueError as e:
        raise DataError(f"{args.trials}: {e}") from None
    if args.calibration:
        add_calibrated(args, scores, labels, result)
    text = format_json(result) if args.json else format_text(result)
    sys.stdout.write(text)
    if args.output:
        with atomic_write(args.output) as f:
            f.write(text)
    if args.plot_dir:
        write_plots(scores, labels, result, Path(args.plot_dir))


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(evaluate, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
