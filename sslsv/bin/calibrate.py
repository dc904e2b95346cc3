"""Fit a score calibration (raw score -> log-likelihood ratio) and thresholds on dev trials.

  python -m sslsv.bin.calibrate --trials data/dev/trials --scores exp/x/scores_final/dev.scores
      --output exp/x/scores_final/calibration.json [--p-target 0.01]
      [--dcf-p-target 0.01 0.001] [--far 0.01 0.001] [--utt2dur data/dev/utt2dur ...]
      [--checkpoint exp/x/final.pt] [--config conf/x.yaml]

Reads the dev trial list and its score file (matched by (enroll, test) pair), and with
--utt2dur the durations of the trials' utterances: the quality measures log_dur_min and
log_dur_max then join the score in the fit. Fits ``llr = a * score + b (+ c . q)`` by
prior-weighted logistic regression at --p-target (see ``sslsv/calibration.py``).
--checkpoint records the fingerprint of that model's weights, --config its scoring: section
(the settings the dev scores were made with: give the same ones to sslsv.bin.score, which
refuses a calibration made with others). Writes OUTPUT (JSON): the parameters, the
thresholds on the raw and LLR scales (EER, minDCF per --dcf-p-target, the lowest threshold
with a dev false-accept rate at most each --far, the Bayes threshold) and the dev metrics
before and after calibration, which it also prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from sslsv import cli
from sslsv.calibration import QUALITY_MEASURES, fit_calibration, load_durations
from sslsv.calibration import quality_measures as trial_quality
from sslsv.config.load import load_config
from sslsv.datadir.io import read_trials
from sslsv.errors import DataError
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
    p.add_argument("--checkpoint", help="model the scores came from (its fingerprint)")
    p.add_argument("--config", help="config whose scoring: section made the scores")
    return p


def _model_fingerprint(path: str) -> str:
    from sslsv.train.checkpoint import load_model, model_fingerprint  # torch: only if asked

    model, _ = load_model(path)
    return model_fingerprint(model.state_dict())


def _line(name: str, m: dict, p: float) -> str:
    return (
        f"{name}: EER {100 * m['eer']:.4f}%  minDCF(p={p:g}) {m['min_dcf']:.4f}  "
        f"actDCF(p={p:g}) {m['act_dcf']:.4f}  Cllr {m['cllr']:.4f}"
    )


def calibrate(args: argparse.Namespace) -> None:
    scoring = dataclasses.asdict(load_config(args.config).scoring) if args.config else {}
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
    model = _model_fingerprint(args.checkpoint) if args.checkpoint else ""
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
