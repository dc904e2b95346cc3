"""Speaker-verification metrics: EER, minDCF, actDCF, Cllr and the DET curve.

Convention everywhere: a trial is *accepted* (declared a target) when ``score >= threshold``.

Operating points. Let ``u_0 < u_1 < ... < u_{K-1}`` be the distinct score values. Operating
point ``k`` (``0 <= k < K``) accepts the scores ``>= u_k``; the extra point ``k = K`` has
threshold ``+inf`` and accepts nothing. So tied scores always move together (one operating
point), and the sweep runs from (P_miss, P_fa) = (0, 1) to (1, 0). Both rates are computed
with one sort and cumulative sums (O(n log n)).

EER. ``d_k = P_miss(k) - P_fa(k)`` increases strictly with ``k`` from -1 to 1. With ``i`` the
first point where ``d_i >= 0``, the rates are linearly interpolated between points ``i - 1``
and ``i`` at ``alpha = d_{i-1} / (d_{i-1} - d_i)``, where they are equal; that common value is
the EER. Its threshold is ``u_{i-1} + alpha * (u_i - u_{i-1})``, or ``u_{i-1}`` when point
``i`` is the accept-nothing point.

DCF (NIST SRE): ``C_det = C_miss * P_miss * p_target + C_fa * P_fa * (1 - p_target)``,
normalised by ``min(C_miss * p_target, C_fa * (1 - p_target))``, the cost of the best
decision made without the score. minDCF is its minimum over all operating points (so it is
at most 1); actDCF applies the Bayes threshold ``log(C_fa (1 - p) / (C_miss p))`` to scores
read as natural-log likelihood ratios. Cllr (Brümmer) is in bits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "compute_act_dcf",
    "compute_cllr",
    "compute_eer",
    "compute_metrics",
    "compute_min_dcf",
    "det_curve",
]


def check_scores(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float scores, bool labels) after checking shapes, values and that both classes occur."""
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(
            f"scores and labels must be 1-D of equal length, got {scores.shape} and {labels.shape}"
        )
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    if labels.dtype != bool:
        if not np.isin(labels, (0, 1)).all():
            raise ValueError("labels must be boolean or 0/1")
        labels = labels.astype(bool)
    if not np.isfinite(scores).all():
        bad = np.flatnonzero(~np.isfinite(scores))
        raise ValueError(f"{len(bad)} non-finite score(s), first at index {bad[0]}")
    n_target = int(np.count_nonzero(labels))
    if n_target == 0 or n_target == len(labels):
        raise ValueError(
            f"need both target and non-target trials, got {n_target} target and "
            f"{len(labels) - n_target} non-target"
        )
    return scores, labels


def _sweep(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Miss and false-alarm counts at every operating point (see the module docstring)."""
    order = np.argsort(scores)
    sorted_scores = scores[order]
    n = len(scores)
    targets_upto = np.cumsum(labels[order])  # targets with score <= sorted_scores[j]
    # Last position of each run of equal scores: one operating point per distinct value.
    is_run_end = np.empty(n, dtype=bool)
    np.not_equal(sorted_scores[1:], sorted_scores[:-1], out=is_run_end[:-1])
    is_run_end[-1] = True
    run_ends = np.flatnonzero(is_run_end)
    n_points = len(run_ends) + 1
    n_target = int(targets_upto[-1])
    n_nontarget = n - n_target
    # Point 0 accepts everything; point k >= 1 rejects the runs up to run_ends[k - 1].
    p_miss = np.zeros(n_points)
    p_miss[1:] = targets_upto[run_ends]
    p_fa = np.full(n_points, float(n_nontarget))
    p_fa[1:] -= run_ends + 1 - p_miss[1:]
    p_miss /= n_target
    p_fa /= n_nontarget
    thresholds = np.empty(n_points)
    thresholds[:-1] = sorted_scores[run_ends]
    thresholds[-1] = np.inf
    return p_miss, p_fa, thresholds


def det_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(p_miss, p_fa, thresholds)`` at every operating point, thresholds increasing.

    ``thresholds[k]`` is the k-th distinct score (accept ``score >= thresholds[k]``) and the
    last is ``+inf`` (accept nothing), so ``p_miss`` rises from 0 to 1, ``p_fa`` falls from 1
    to 0. ``labels`` are True (or 1) for target trials.
    """
    return _sweep(*check_scores(scores, labels))


def _eer(p_miss: np.ndarray, p_fa: np.ndarray, thresholds: np.ndarray) -> tuple[float, float]:
    diff = p_miss - p_fa
    i = int(np.argmax(diff >= 0))  # exists and is >= 1: diff runs from -1 to 1
    alpha = diff[i - 1] / (diff[i - 1] - diff[i])
    eer = p_miss[i - 1] + alpha * (p_miss[i] - p_miss[i - 1])
    if alpha == 1.0:
        threshold = thresholds[i]
    elif np.isinf(thresholds[i]):
        threshold = thresholds[i - 1]
    else:
        threshold = thresholds[i - 1] + alpha * (thresholds[i] - thresholds[i - 1])
    return float(eer), float(threshold)


def _dcf_normaliser(p_target: float, c_miss: float, c_fa: float) -> float:
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise ValueError(f"costs must be positive, got c_miss={c_miss}, c_fa={c_fa}")
    return min(c_miss * p_target, c_fa * (1.0 - p_target))


def _min_dcf(
    p_miss: np.ndarray,
    p_fa: np.ndarray,
    thresholds: np.ndarray,
    p_target: float,
    c_miss: float,
    c_fa: float,
) -> tuple[float, float]:
    norm = _dcf_normaliser(p_target, c_miss, c_fa)
    dcf = (c_miss * p_target * p_miss + c_fa * (1.0 - p_target) * p_fa) / norm
    k = int(np.argmin(dcf))
    return float(dcf[k]), float(thresholds[k])


def compute_eer(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """``(eer, threshold)``: the EER as a fraction in [0, 1], and its threshold.

    With ``d_k = P_miss(k) - P_fa(k)`` over the operating points of :func:`det_curve` and
    ``i`` the first point with ``d_i >= 0``, the rates are interpolated linearly between
    points ``i - 1`` and ``i`` at ``alpha = d_{i-1} / (d_{i-1} - d_i)``, where they are
    equal; the threshold is interpolated the same way (``thresholds[i - 1]`` if point ``i``
    is the accept-nothing point).
    """
    return _eer(*det_curve(scores, labels))


def compute_min_dcf(
    scores: np.ndarray,
    labels: np.ndarray,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> tuple[float, float]:
    """``(min_dcf, threshold)``: normalised DCF minimised over all operating points.

    The threshold is that of the first (lowest) minimising point; ``+inf`` means rejecting
    every trial is optimal.
    """
    return _min_dcf(*det_curve(scores, labels), p_target, c_miss, c_fa)


def compute_act_dcf(
    scores: np.ndarray,
    labels: np.ndarray,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> tuple[float, float]:
    """``(act_dcf, threshold)``: normalised DCF at the Bayes threshold for LLR scores."""
    scores, labels = check_scores(scores, labels)
    norm = _dcf_normaliser(p_target, c_miss, c_fa)
    threshold = math.log(c_fa * (1.0 - p_target) / (c_miss * p_target))
    accepted = scores >= threshold
    p_miss = np.count_nonzero(~accepted & labels) / np.count_nonzero(labels)
    p_fa = np.count_nonzero(accepted & ~labels) / np.count_nonzero(~labels)
    dcf = (c_miss * p_target * p_miss + c_fa * (1.0 - p_target) * p_fa) / norm
    return float(dcf), threshold


def compute_cllr(scores: np.ndarray, labels: np.ndarray) -> float:
    """Log-likelihood-ratio cost in bits for scores read as natural-log LLRs.

    ``Cllr = (mean_tar log2(1 + e^-s) + mean_non log2(1 + e^s)) / 2``; 1 bit is the cost of
    an uninformative system, 0 that of a perfect, calibrated one.
    """
    scores, labels = check_scores(scores, labels)
    scores = scores.astype(np.float64, copy=False)
    tar = np.logaddexp(0.0, -scores[labels]).mean()
    non = np.logaddexp(0.0, scores[~labels]).mean()
    return float((tar + non) / (2.0 * math.log(2.0)))


def compute_metrics(
    scores: np.ndarray, labels: np.ndarray, p_targets: Sequence[float] = (0.01,)
) -> dict:
    """Every metric above from one sweep.

    Returns ``{"eer", "eer_threshold", "min_dcf": {p: value}, "min_dcf_threshold": {p: t},
    "act_dcf": {p: value}, "cllr", "n_target", "n_nontarget"}`` (EER as a fraction).
    """
    scores, labels = check_scores(scores, labels)
    p_miss, p_fa, thresholds = _sweep(scores, labels)
    eer, eer_threshold = _eer(p_miss, p_fa, thresholds)
    result: dict = {
        "eer": eer,
        "eer_threshold": eer_threshold,
        "min_dcf": {},
        "min_dcf_threshold": {},
        "act_dcf": {},
    }
    for p in p_targets:
        result["min_dcf"][p], result["min_dcf_threshold"][p] = _min_dcf(
            p_miss, p_fa, thresholds, p, 1.0, 1.0
        )
        result["act_dcf"][p] = compute_act_dcf(scores, labels, p)[0]
    result["cllr"] = compute_cllr(scores, labels)
    result["n_target"] = int(np.count_nonzero(labels))
    result["n_nontarget"] = len(labels) - result["n_target"]
    return result
