"""Score calibration: raw scores to natural-log likelihood ratios, and decision thresholds.

A cosine or PLDA score ranks trials (EER, minDCF) but is not an LLR, so the Bayes threshold
``log((1 - p) / p)`` applied to it (actDCF) and Cllr say little. A linear map fitted on dev
trials (BOSARIS; Brümmer and du Preez, 2006) turns it into one:

    llr = a * score + b + sum_j c_j * q_j        (q: optional quality measures)

fitted by prior-weighted logistic regression at ``p_target``, i.e. by minimising (in nats)

    C = p * mean_tar log(1 + e^-(llr + logit p)) + (1 - p) * mean_non log(1 + e^(llr + logit p))

(at p = 0.5, ``C / log 2`` is Cllr). The weights ``p / N_tar`` and ``(1 - p) / N_non`` make
the fit care about the region of the scores where decisions at that prior are made, whatever
the proportion of targets in the dev list.

Quality measures (QMF-style): ``log_dur_min`` and ``log_dur_max``, the log seconds of the
shorter and of the longer side of a trial. Min/max rather than enroll/test: the measures are
symmetric, so a trial scored the other way round gets the same LLR, and the shorter side is
what mostly limits how reliable a score is.

Thresholds (accept when ``score >= threshold``, as in :mod:`sslsv.metrics`) are recorded on
both scales, each found by the same rule on the raw dev scores and on the calibrated dev
LLRs: the EER point, the minDCF point per prior, the lowest threshold whose dev false-accept
rate is at most a requested rate, and the Bayes threshold of the calibration's prior (its
raw equivalent ``(llr - b) / a`` only without quality measures).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from sslsv.datadir.io import read_durations
from sslsv.errors import DataError
from sslsv.fileio import atomic_write
from sslsv.metrics import check_scores, compute_eer, compute_metrics, compute_min_dcf, det_curve

log = logging.getLogger(__name__)

__all__ = [
    "FORMAT",
    "QUALITY_MEASURES",
    "Calibration",
    "bayes_threshold",
    "calibration_objective",
    "decide",
    "far_threshold",
    "fit_calibration",
    "fit_linear",
    "load_durations",
    "quality_measures",
    "scoring_differences",
]

FORMAT = "sslsv-calibration-1"

#: Quality measures of a trial from the durations (seconds) of its two sides.
QUALITY_MEASURES = {
    "log_dur_min": lambda e, t: np.log(np.minimum(e, t)),
    "log_dur_max": lambda e, t: np.log(np.maximum(e, t)),
}

#: scoring: keys that do not change the scores (a calibration does not depend on them).
UNSCORED = frozenset({"p_target"})


def bayes_threshold(p_target: float) -> float:
    """``log((1 - p) / p)``: accept an LLR at or above it (unit costs, as actDCF)."""
    return math.log(1.0 * (1.0 - p_target) / (1.0 * p_target))


def decide(llr: np.ndarray, p_target: float) -> np.ndarray:
    """The Bayes decision for LLR scores at prior ``p_target``: True means accept."""
    return np.asarray(llr) >= bayes_threshold(p_target)


def calibration_objective(llr: np.ndarray, labels: np.ndarray, p_target: float) -> float:
    """The prior-weighted cross-entropy (nats) that :func:`fit_linear` minimises."""
    llr, labels = check_scores(llr, labels)
    z = llr.astype(np.float64) + math.log(p_target / (1.0 - p_target))
    tar = np.logaddexp(0.0, -z[labels]).mean()
    non = np.logaddexp(0.0, z[~labels]).mean()
    return float(p_target * tar + (1.0 - p_target) * non)


def fit_linear(
    features: np.ndarray, labels: np.ndarray, p_target: float = 0.01
) -> tuple[np.ndarray, float]:
    """``(weights, bias)`` of ``llr = features @ weights + bias`` minimising the objective.

    ``features`` is (trials, k): the score first, then any quality measures. The fit runs on
    standardised columns (one scale for Newton's steps) and returns raw-scale parameters.
    scipy's trust-region Newton on the objective itself, not scikit-learn's logistic
    regression: what is minimised is exactly the documented objective (no conversion of
    sample weights and intercept), with an analytic Hessian it converges in a few steps to
    a gradient of 1e-10, and it needs no package beyond scipy. A ValueError when the dev
    trials do not define a finite fit (a constant column, separated classes).
    """
    x = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    mean, sd = x.mean(axis=0), x.std(axis=0)
    if np.any(sd == 0):
        raise ValueError(f"feature column(s) {np.flatnonzero(sd == 0).tolist()} are constant")
    design = np.column_stack([(x - mean) / sd, np.ones(len(x))])
    if np.linalg.matrix_rank(design) < design.shape[1]:
        raise ValueError("score and quality measures are collinear (no unique fit)")
    y = labels.astype(np.float64)
    n_tar = y.sum()
    weight = np.where(labels, p_target / n_tar, (1.0 - p_target) / (len(y) - n_tar))
    offset = math.log(p_target / (1.0 - p_target))

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = design @ theta + offset
        loss = weight @ (np.logaddexp(0.0, z) - y * z)  # softplus(-z) for targets
        return float(loss), design.T @ (weight * (expit(z) - y))

    def hess(theta: np.ndarray) -> np.ndarray:
        s = expit(design @ theta + offset)
        return (design * (weight * s * (1.0 - s))[:, None]).T @ design

    theta0 = np.zeros(design.shape[1])
    res = minimize(fun, theta0, jac=True, hess=hess, method="trust-exact", options={"gtol": 1e-10})
    # trust-exact may stop at the rounding floor with success False; the gradient decides.
    if not np.all(np.isfinite(res.x)) or np.abs(res.x[:-1]).max() > 1e3:
        raise ValueError("no finite calibration: targets and non-targets are (nearly) separable")
    if np.abs(fun(res.x)[1]).max() > 1e-6 * min(p_target, 1.0 - p_target):
        raise ValueError(f"calibration did not converge ({res.message})")
    weights = res.x[:-1] / sd
    return weights, float(res.x[-1] - weights @ mean)


def load_durations(paths: Sequence[str | os.PathLike]) -> dict[str, float]:
    """utt2dur tables merged (the enroll and test sets may be apart); an utterance given two
    different durations is an error naming it."""
    merged: dict[str, float] = {}
    for path in paths:
        for utt, seconds in read_durations(path).items():
            if merged.setdefault(utt, seconds) != seconds:
                raise DataError(f"{path}: utterance {utt!r} has another duration elsewhere")
    return merged


def _durations_of(ids: Sequence[str], durations: dict[str, float], source: str) -> np.ndarray:
    values = np.fromiter((durations.get(u, math.nan) for u in ids), np.float64, len(ids))
    missing = np.flatnonzero(np.isnan(values))
    if len(missing):
        n = len({ids[i] for i in missing})
        more = f" (and {n - 1} more)" if n > 1 else ""
        raise DataError(f"{source}: no duration for utterance {ids[missing[0]]!r}{more}")
    zero = np.flatnonzero(values <= 0)
    if len(zero):
        raise DataError(f"{source}: utterance {ids[zero[0]]!r} has duration 0 (no log)")
    return values


def quality_measures(
    names: Sequence[str],
    enrolls: Sequence[str],
    tests: Sequence[str],
    durations: dict[str, float],
    source: str = "utt2dur",
) -> np.ndarray:
    """(trials, len(names)) matrix of the named :data:`QUALITY_MEASURES` per trial."""
    unknown = [n for n in names if n not in QUALITY_MEASURES]
    if unknown:
        raise ValueError(f"unknown quality measure(s) {unknown}; known: {list(QUALITY_MEASURES)}")
    e = _durations_of(enrolls, durations, source)
    t = _durations_of(tests, durations, source)
    return np.column_stack([QUALITY_MEASURES[n](e, t) for n in names]).reshape(len(e), -1)


def _key(p: float) -> str:
    return f"{p:g}"


def scoring_differences(a: dict[str, Any], b: dict[str, Any], name_a: str, name_b: str) -> str:
    """The scoring: keys (but those that do not change scores) on which two sets of
    settings differ, in words; empty when they agree."""
    keys = sorted((set(a) | set(b)) - UNSCORED)
    return "; ".join(
        f"{k}: {name_a} {a.get(k)!r}, {name_b} {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)
    )


@dataclass
class Calibration:
    """A fitted linear calibration and what it was fitted on (see the module docstring).

    ``thresholds`` maps ``eer`` to ``{"raw", "llr"}`` and ``min_dcf``, ``far`` and ``bayes``
    to ``{prior or rate: {"raw", "llr"}}`` (``+inf``: reject every trial; no ``raw`` Bayes
    threshold with quality measures); ``dev_metrics`` has ``before`` and ``after``, each
    ``{"eer", "min_dcf", "act_dcf", "cllr"}`` at ``p_target``.
    """

    format: ClassVar[str] = FORMAT
    p_target: float
    score_weight: float
    bias: float
    quality: list[str] = field(default_factory=list)
    quality_weights: list[float] = field(default_factory=list)
    model: str = ""
    scoring: dict[str, Any] = field(default_factory=dict)
    trials: str = ""
    n_target: int = 0
    n_nontarget: int = 0
    thresholds: dict[str, Any] = field(default_factory=dict)
    dev_metrics: dict[str, Any] = field(default_factory=dict)

    def apply(self, scores: np.ndarray, quality: np.ndarray | None = None) -> np.ndarray:
        """LLRs (float64) of raw scores and, when the calibration has them, their trials'
        quality measures ((trials, len(self.quality)), as :func:`quality_measures` gives)."""
        llr = self.score_weight * np.asarray(scores, dtype=np.float64) + self.bias
        if self.quality:
            q = None if quality is None else np.asarray(quality, dtype=np.float64)
            if q is None or q.shape != (len(llr), len(self.quality)):
                shape = None if q is None else q.shape
                raise ValueError(
                    f"the calibration needs quality measures {self.quality} per trial, "
                    f"shape {(len(llr), len(self.quality))}, got {shape}"
                )
            llr = llr + q @ np.asarray(self.quality_weights, dtype=np.float64)
        return llr

    def check_scoring(self, scoring: dict[str, Any], where: str) -> None:
        """Refuse scores made with other scoring settings than the calibration's dev scores
        (an LLR map of one back end is wrong for another); nothing recorded: no check."""
        if not self.scoring:
            return
        shown = scoring_differences(self.scoring, scoring, "calibrated", "now")
        if shown:
            raise DataError(f"{where}: fitted on scores made with other scoring settings ({shown})")

    def check_model(self, fingerprint: str | None, where: str, what: str = "this model") -> None:
        """Refuse a calibration that does not name the model its dev scores came from, or
        names another than ``fingerprint`` (``what``'s; None: unknown, only the first
        check). An LLR map fitted on one model's scores is wrong for any other's."""
        if not self.model:
            raise DataError(
                f"{where}: records no model fingerprint (fitted without knowing which model "
                "made its scores), so nothing ties it to a model: fit it again with python -m "
                "sslsv.bin.calibrate on scores of sslsv.bin.score, or with --checkpoint"
            )
        if fingerprint is not None and self.model != fingerprint:
            raise DataError(f"{where}: made for model {self.model}, not {what} ({fingerprint})")

    def quality_for(
        self,
        enrolls: Sequence[str],
        tests: Sequence[str],
        utt2dur: Sequence[str | os.PathLike] | None,
        where: str,
    ) -> np.ndarray | None:
        """The quality matrix of these trials, or None when the calibration uses none."""
        if not self.quality:
            return None
        if not utt2dur:
            raise DataError(
                f"{where}: the calibration uses quality measures ({', '.join(self.quality)}): "
                "give --utt2dur with the trials' utterance durations"
            )
        source = " ".join(str(p) for p in utt2dur)
        return quality_measures(self.quality, enrolls, tests, load_durations(utt2dur), source)

    def decide(self, llr: np.ndarray | float, p_target: float | None = None) -> np.ndarray:
        """The Bayes decision for LLRs at ``p_target`` (default: the calibration's own)."""
        return decide(llr, self.p_target if p_target is None else p_target)

    def describe(self) -> str:
        """A few Markdown lines for a model card: the map, where it was fitted, thresholds."""

        def fmt(value: float | None) -> str:
            return "reject all" if value is None or value == math.inf else f"{value:.4f}"

        t, after = self.thresholds, self.dev_metrics.get("after", {})
        quality = f" + quality ({', '.join(self.quality)})" if self.quality else ""
        lines = [
            f"- LLR = {self.score_weight:.4f} x score {self.bias:+.4f}{quality}, fitted at "
            f"p_target {self.p_target:g} on {self.n_target} target and {self.n_nontarget} "
            f"non-target development trials ({self.trials or 'not recorded'}).",
        ]
        if after:
            lines.append(
                f"- On those trials after calibration: EER {100 * after['eer']:.2f}%, minDCF "
                f"{after['min_dcf']:.4f}, actDCF {after['act_dcf']:.4f}, Cllr {after['cllr']:.4f}."
            )
        lines.append("- Raw-score thresholds (accept when score >= threshold):")
        if "eer" in t:
            lines.append(f"  - EER point: {fmt(t['eer']['raw'])}")
        for p, v in t.get("min_dcf", {}).items():
            lines.append(f"  - minDCF point, p_target {p}: {fmt(v['raw'])}")
        for rate, v in t.get("far", {}).items():
            lines.append(f"  - false-accept rate {float(rate):.2%}: {fmt(v['raw'])}")
        for p, v in t.get("bayes", {}).items():
            lines.append(
                f"  - Bayes decision, p_target {p}: LLR >= {fmt(v['llr'])}"
                + (f" (score >= {fmt(v['raw'])})" if "raw" in v else "")
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """What :meth:`to_json` writes: plain JSON values, an infinite threshold as None."""
        data = {"format": FORMAT, **dataclasses.asdict(self)}
        data["thresholds"] = _map_leaves(self.thresholds, lambda v: v if math.isfinite(v) else None)
        return data

    def to_json(self, path: str | os.PathLike) -> None:
        """Write it atomically as pretty JSON (no NaN or Infinity: null for +inf)."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
        with atomic_write(path) as f:
            f.write(text)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Calibration:
        """Read and check a file of :meth:`to_json` (JSON only: nothing is executed); any
        deviation is a one-line DataError naming the file."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: file not found")
        return cls.from_text(path.read_bytes(), str(path))

    @classmethod
    def from_text(cls, text: str | bytes, source: str = "calibration") -> Calibration:
        """Parse and check the JSON text of :meth:`to_json` (a file's, or one packaged in a
        model file); any deviation is a one-line DataError naming ``source``."""
        try:
            if isinstance(text, bytes):
                text = text.decode("utf-8")
            data = json.loads(text, parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            reason = "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else str(e)
            raise DataError(f"{source}: not a calibration file (not JSON: {reason})") from None
        return cls.from_dict(data, source)

    @classmethod
    def from_dict(cls, data: Any, source: str = "calibration") -> Calibration:
        """Check the parsed JSON of :meth:`to_dict` strictly (types, keys, format); any
        deviation is a one-line DataError naming ``source``."""
        if not isinstance(data, dict):
            raise DataError(f"{source}: not a calibration file (a JSON {type(data).__name__})")
        if data.get("format") != FORMAT:
            raise DataError(f"{source}: format is {data.get('format')!r}, expected {FORMAT!r}")
        wanted = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(wanted - set(data))
        extra = sorted(set(data) - wanted - {"format"})
        if missing or extra:
            what = f"missing key(s) {missing}" if missing else f"unknown key(s) {extra}"
            raise DataError(f"{source}: not an {FORMAT} file: {what}")
        for key, (check, kind) in _CHECKS.items():
            if not check(data[key]):
                raise DataError(f"{source}: key {key!r} must be {kind}, got {data[key]!r:.60}")
        if len(data["quality_weights"]) != len(data["quality"]):
            raise DataError(f"{source}: 'quality' and 'quality_weights' differ in length")
        fields = {k: v for k, v in data.items() if k != "format"}
        fields["thresholds"] = _map_leaves(
            fields["thresholds"], lambda v: math.inf if v is None else v
        )
        return cls(**fields)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _map_leaves(tree: Any, fn: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _map_leaves(v, fn) for k, v in tree.items()}
    return fn(tree)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _tree(v: Any, leaf: Any) -> bool:
    """A dict of dicts whose leaves pass ``leaf``."""
    return isinstance(v, dict) and all(
        _tree(x, leaf) if isinstance(x, dict) else leaf(x) for x in v.values()
    )


def _names(v: Any) -> bool:
    return isinstance(v, list) and len(set(v)) == len(v) and all(q in QUALITY_MEASURES for q in v)


_CHECKS = {
    "p_target": (lambda v: _number(v) and 0 < v < 1, "a number in (0, 1)"),
    "score_weight": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "bias": (_number, "a number"),
    "quality": (_names, f"a list of distinct names of {list(QUALITY_MEASURES)}"),
    "quality_weights": (lambda v: isinstance(v, list) and all(map(_number, v)), "numbers"),
    "model": (lambda v: isinstance(v, str), "a string"),
    "scoring": (lambda v: isinstance(v, dict), "an object"),
    "trials": (lambda v: isinstance(v, str), "a string"),
    "n_target": (_count, "a count"),
    "n_nontarget": (_count, "a count"),
    "thresholds": (lambda v: _tree(v, lambda x: x is None or _number(x)), "numbers or null"),
    "dev_metrics": (lambda v: _tree(v, _number), "an object of numbers"),
}


def far_threshold(scores: np.ndarray, labels: np.ndarray, far: float) -> tuple[float, float]:
    """``(threshold, achieved rate)``: the lowest threshold whose false-accept rate on these
    trials is at most ``far``.

    Ties: tied scores are one operating point (as in :func:`sslsv.metrics.det_curve`), so
    the threshold is a score of the list (or ``+inf``: accept nothing) and a run of equal
    scores is accepted or rejected whole; a run that would push the rate above ``far`` is
    rejected, with every score below it.
    """
    _, p_fa, thresholds = det_curve(scores, labels)
    k = int(np.argmax(p_fa <= far))  # p_fa falls to 0 at the last (+inf) point
    return float(thresholds[k]), float(p_fa[k])


def _operating_points(
    scores: np.ndarray,
    labels: np.ndarray,
    dcf_p_targets: Sequence[float],
    fars: Sequence[float],
) -> dict[str, Any]:
    return {
        "eer": compute_eer(scores, labels)[1],
        "min_dcf": {_key(p): compute_min_dcf(scores, labels, p)[1] for p in dcf_p_targets},
        "far": {_key(r): far_threshold(scores, labels, r)[0] for r in fars},
    }


def _dev_metrics(scores: np.ndarray, labels: np.ndarray, p_target: float) -> dict[str, float]:
    m = compute_metrics(scores, labels, (p_target,))
    return {
        "eer": m["eer"],
        "min_dcf": m["min_dcf"][p_target],
        "act_dcf": m["act_dcf"][p_target],
        "cllr": m["cllr"],
    }


def fit_calibration(
    scores: np.ndarray,
    labels: np.ndarray,
    p_target: float = 0.01,
    quality: np.ndarray | None = None,
    quality_names: Sequence[str] = (),
    *,
    dcf_p_targets: Sequence[float] = (0.01, 0.001),
    fars: Sequence[float] = (0.01, 0.001),
    model: str = "",
    scoring: dict[str, Any] | None = None,
    trials: str = "",
) -> Calibration:
    """Fit a :class:`Calibration` on dev scores (and quality measures, one column per name
    of ``quality_names``), with its thresholds and dev metrics. ValueError on bad input."""
    scores, labels = check_scores(scores, labels)
    scores = scores.astype(np.float64)
    if not 0 < p_target < 1:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    if any(not 0 <= r < 1 for r in fars):
        raise ValueError(f"false-accept rates must be in [0, 1), got {list(fars)}")
    names = list(quality_names)
    q = np.zeros((len(scores), 0)) if quality is None else np.asarray(quality, np.float64)
    if q.shape != (len(scores), len(names)):
        raise ValueError(f"quality has shape {q.shape}, expected {(len(scores), len(names))}")
    if scores[labels].min() >= scores[~labels].max():
        raise ValueError("no finite calibration: every target scores above every non-target")
    weights, bias = fit_linear(np.column_stack([scores, q]), labels, p_target)
    if weights[0] <= 0:
        # The scores rank these trials the wrong way round (an untrained model can): the
        # best map that keeps "higher is more target-like" is then the constant LLR 0 (the
        # optimum of the prior-weighted objective for a constant), which decides by the
        # prior alone. Said, not hidden: a warning, and a zero weight in the file.
        log.warning(
            "calibration: fitted score weight %.4g is not positive (higher scores are not "
            "more target-like on these trials); using the uninformative LLR 0 for every trial",
            weights[0],
        )
        weights, bias = np.zeros_like(weights), 0.0
    cal = Calibration(
        p_target=float(p_target),
        score_weight=float(weights[0]),
        bias=bias,
        quality=names,
        quality_weights=[float(w) for w in weights[1:]],
        model=model,
        scoring=dict(scoring or {}),
        trials=str(trials),
        n_target=int(labels.sum()),
        n_nontarget=int((~labels).sum()),
    )
    llr = cal.apply(scores, q if names else None)
    raw_points = _operating_points(scores, labels, dcf_p_targets, fars)
    llr_points = _operating_points(llr, labels, dcf_p_targets, fars)
    theta = bayes_threshold(p_target)
    # Without quality measures the LLR is a ramp of the score: the raw equivalent exists
    # (not for the flat map of an uninformative calibration).
    ramp = not names and cal.score_weight > 0
    bayes = {"raw": (theta - cal.bias) / cal.score_weight, "llr": theta} if ramp else {"llr": theta}
    cal.thresholds = {
        "eer": {"raw": raw_points["eer"], "llr": llr_points["eer"]},
        **{
            kind: {k: {"raw": raw_points[kind][k], "llr": llr_points[kind][k]} for k in values}
            for kind, values in raw_points.items()
            if kind != "eer"
        },
        "bayes": {_key(p_target): bayes},
    }
    cal.dev_metrics = {
        "before": _dev_metrics(scores, labels, p_target),
        "after": _dev_metrics(llr, labels, p_target),
    }
    return cal
