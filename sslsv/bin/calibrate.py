"""Fit a score calibration (raw score -> log-likelihood ratio) and thresholds on dev trials.

  python -m sslsv.bin.calibrate --trials data/dev/trials --scores exp/x/scores_final/dev.scores
      --output exp/x/scores_final/calibration.json [--p-target 0.01]
      [--dcf-p-target 0.01 0.001] [--far 0.01 0.001] [--utt2dur data/dev/utt2dur ...]
      [--checkpoint exp/x/final.pt] [--config conf/x.yaml]

Reads the dev trial list and its score file (matched by (enroll, test) pair), and with
--utt2dur the durations of the trials' utterances: the quality measures log_dur_min and
log_dur_max then join the score in the fit. Fits ``llr = a * score + b (+ c . q)`` by
prior-weighted logistic regression at --p-target (see ``sslsv/calibration.py``).
The calibration records the fingerprint of the weights of the model whose scores it is
fitted on, which every user of it checks: that model is the one SCORES.stamp names (written
by sslsv.bin.score from the embeddings' extraction stamps) or --checkpoint; with both, they
must agree; with neither, nothing is written. It records the scoring: settings the scores
were made with (SCORES.stamp's, or --config's, which must then agree): sslsv.bin.score
refuses a calibration made with others. Scores that are LLRs already are refused.
Writes OUTPUT (JSON; not one of the inputs): the parameters, the
thresholds on the raw and LLR scales (EER, minDCF per --dcf-p-target, the lowest threshold
with a dev false-accept rate at most each --far, the Bayes threshold) and the dev metrics
before and after calibration, which it also prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

from sslsv import cli
from sslsv.calibration import QUALITY_MEASURES, fit_calibration, load_durations, scoring_differences
from sslsv.calibration import quality_measures as trial_quality
from sslsv.config.load import load_config
from sslsv.datadir.io import read_trials
from sslsv.errors import DataError
from sslsv.provenance import model_file, recorded_fingerprint, same_model_file, scores_made_by
from sslsv.reuse import stamp_path
from sslsv.scores import scores_for_trials


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, "python -m sslsv.bin.calibrate")
    p.add_argument("--trials", required=True, help="dev trial list (Kaldi)")
    p.add_argument("--scores", required=True, help="its scores: 'enroll test score' lines")
    p.add_argument("--output", required=True, help="calibration file (.json) to write")
    p.add_argument("--p-target", type=cli.fraction(), default=0.01, help="prior of the fit")
    p.add_argument(
        "--dcf-p-target",
        type=cli.fraction(),
        nargs="+",
        default=[0.01, 0.001],
        help="minDCF priors",
    )
    p.add_argument(
        "--far",
        type=cli.fraction(low_open=False),
        nargs="+",
        default=[0.01, 0.001],
        help="false-accept rates",
    )
    p.add_argument("--utt2dur", nargs="+", help="durations: fit with log_dur_min, log_dur_max")
    p.add_argument(
        "--checkpoint",
        help="model the scores came from (default: the one SCORES.stamp names)",
    )
    p.add_argument("--config", help="config whose scoring: section made the scores")
    return p


def _model_fingerprint(path: str) -> str:
    from sslsv.train.checkpoint import load_model, model_fingerprint  # torch: only if asked

    model, _ = load_model(path)
    return model_fingerprint(model.state_dict())


def scores_model(args: argparse.Namespace, made: dict[str, Any] | None) -> str:
    """The fingerprint of the model whose scores are calibrated: the one the scores' stamp
    names and --checkpoint, each checked against the other when both are given."""
    recorded = None if made is None else made["model"]
    if recorded is None and not args.checkpoint:
        raise DataError(
            f"{args.scores}: which model made these scores is not recorded (no "
            f"{stamp_path(args.scores).name} from sslsv.bin.score over embeddings of "
            "sslsv.bin.extract): give --checkpoint, the model they came from"
        )
    if recorded is None:
        return _model_fingerprint(args.checkpoint)
    fingerprint = recorded_fingerprint(recorded, args.scores)
    given = args.checkpoint
    if given and not same_model_file(model_file(given), recorded):
        other = _model_fingerprint(given)
        if other != fingerprint:
            raise DataError(
                f"--scores {args.scores}: made by model {recorded['path']} ({fingerprint}), "
                f"not --checkpoint {given} ({other})"
            )
    return fingerprint


def scores_scoring(args: argparse.Namespace, made: dict[str, Any] | None) -> dict[str, Any]:
    """The scoring settings that made the scores: the stamp's, or --config's (which must
    then agree with the stamp)."""
    recorded = None if made is None else made["scoring"]
    if not args.config:
        return recorded or {}
    scoring = dataclasses.asdict(load_config(args.config).scoring)
    if recorded:
        shown = scoring_differences(recorded, scoring, "the scores", "--config")
        if shown:
            raise DataError(
                f"--scores {args.scores}: made with other scoring settings than --config "
                f"{args.config} ({shown})"
            )
    return scoring


def _line(name: str, m: dict, p: float) -> str:
    return (
        f"{name}: EER {100 * m['eer']:.4f}%  minDCF(p={p:g}) {m['min_dcf']:.4f}  "
        f"actDCF(p={p:g}) {m['act_dcf']:.4f}  Cllr {m['cllr']:.4f}"
    )


def calibrate(args: argparse.Namespace) -> None:
    cli.check_io(
        {
            "--trials": args.trials,
            "--scores": args.scores,
            "--checkpoint": args.checkpoint,
            "--config": args.config,
            **cli.numbered("--utt2dur", args.utt2dur),
        },
        files={"--output": args.output},
    )
    made = scores_made_by(args.scores)
    if made is not None and made["calibration"] is not None:
        raise DataError(
            f"--scores {args.scores}: LLRs already (sslsv.bin.score --calibration): calibrate "
            "the raw scores"
        )
    scoring = scores_scoring(args, made)
    scores, labels = scores_for_trials(args.trials, args.scores)
    names, quality = [], None
    if args.utt2dur:
        trials = read_trials(args.trials)
        names = list(QUALITY_MEASURES)
        quality = trial_quality(
            names,
            [t[0] for t in trials],
            [t[1] for t in trials],
            load_durations(args.utt2dur),
            " ".join(args.utt2dur),
        )
    model = scores_model(args, made)
    try:
        cal = fit_calibration(
            scores,
            labels,
            args.p_target,
            quality,
            names,
            dcf_p_targets=tuple(dict.fromkeys(args.dcf_p_target)),
            fars=tuple(dict.fromkeys(args.far)),
            model=model,
            scoring=scoring,
            trials=str(args.trials),
        )
    except ValueError as e:
        raise DataError(f"{args.scores} on {args.trials}: {e}") from None
    cal.to_json(args.output)
    terms = [(cal.bias, ""), *zip(cal.quality_weights, (f" * {n}" for n in cal.quality))]
    shown = "".join(f" {'-' if w < 0 else '+'} {abs(w):.6g}{name}" for w, name in terms)
    print(f"llr = {cal.score_weight:.6g} * score{shown}")
    print(f"dev: {cal.n_target} target, {cal.n_nontarget} nontarget trials")
    print(_line("before calibration", cal.dev_metrics["before"], cal.p_target))
    print(_line("after calibration", cal.dev_metrics["after"], cal.p_target))
    print(f"wrote {args.output}")


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(calibrate, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
