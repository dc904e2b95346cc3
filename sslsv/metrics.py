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
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sslsv.data.datadir import read_trials
from sslsv.fileio import DataError

__all__ = [
    "compute_act_dcf",
    "compute_cllr",
    "compute_eer",
    "compute_metrics",
    "compute_min_dcf",
    "check_unique_pairs",
    "det_curve",
    "id_codes",
    "pair_codes",
    "plot_det",
    "plot_score_histograms",
    "read_scores",
    "scores_for_trials",
]


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    return _sweep(*_check(scores, labels))


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
    scores, labels = _check(scores, labels)
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
    scores, labels = _check(scores, labels)
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
    scores, labels = _check(scores, labels)
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


# ---------------------------------------------------------------------------------------
# Score files


def read_scores(path: str | os.PathLike) -> tuple[list[str], list[str], np.ndarray]:
    """Read ``enroll test score`` lines: ``(enrolls, tests, scores)`` in file order."""
    if not Path(path).is_file():
        raise DataError(f"{path}: file not found")
    enrolls, tests, values = [], [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if len(fields) != 3:
                raise DataError(f"{path}:{lineno}: expected 'enroll test score', got {line!r}")
            try:
                value = float(fields[2])
            except ValueError:
                raise DataError(f"{path}:{lineno}: score {fields[2]!r} is not a number") from None
            if not math.isfinite(value):
                raise DataError(f"{path}:{lineno}: score {fields[2]!r} is not finite")
            enrolls.append(fields[0])
            tests.append(fields[1])
            values.append(value)
    return enrolls, tests, np.asarray(values, dtype=np.float64)


def id_codes(ids: Sequence[str], vocab: dict[str, int]) -> np.ndarray:
    """Utterance ids as int64 codes; ``vocab`` (id -> code, in first-seen order) is
    extended in place, so codes from one ``vocab`` are comparable."""
    return np.fromiter(
        (vocab.setdefault(u, len(vocab)) for u in ids), dtype=np.int64, count=len(ids)
    )


def pair_codes(enroll_codes: np.ndarray, test_codes: np.ndarray) -> np.ndarray:
    """One int64 per (enroll, test) pair of id codes (fewer than 2**31 distinct ids), so
    pairs compare and sort as integers."""
    return enroll_codes * (1 << 31) + test_codes


def _first_duplicates(codes: np.ndarray, n: int = 3) -> np.ndarray:
    """Positions of the first ``n`` entries whose code also occurs earlier."""
    order = np.argsort(codes, kind="stable")
    repeated = np.flatnonzero(codes[order][1:] == codes[order][:-1]) + 1
    return np.sort(order[repeated])[:n]


def _pair_list(enrolls: Sequence[str], tests: Sequence[str], positions: np.ndarray) -> str:
    return ", ".join(f"({enrolls[i]} {tests[i]})" for i in positions)


def check_unique_pairs(
    path: str | os.PathLike, enrolls: Sequence[str], tests: Sequence[str], codes: np.ndarray
) -> None:
    """Refuse a list naming a pair twice: matching by (enroll, test) would be ambiguous."""
    ordered = np.sort(codes)  # (a plain sort beats np.unique's hashing here)
    if np.any(ordered[1:] == ordered[:-1]):
        dup = _first_duplicates(codes)
        raise DataError(
            f"{path}: duplicate (enroll test) pair(s), e.g. line(s) "
            f"{', '.join(str(i + 1) for i in dup)}: {_pair_list(enrolls, tests, dup)}"
        )


def scores_for_trials(
    trials_path: str | os.PathLike, scores_path: str | os.PathLike
) -> tuple[np.ndarray, np.ndarray]:
    """Read a trial list and a score file; return ``(scores, labels)`` in trial order.

    A score line is matched to a trial by (enroll, test). A trial with no score, a score
    with no trial and a pair named twice in either file are errors naming the first few.
    """
    trials = read_trials(trials_path)
    t_enroll = [t[0] for t in trials]
    t_test = [t[1] for t in trials]
    labels = np.fromiter((t[2] for t in trials), dtype=bool, count=len(trials))
    del trials
    s_enroll, s_test, values = read_scores(scores_path)
    vocab: dict[str, int] = {}
    trial_codes = pair_codes(id_codes(t_enroll, vocab), id_codes(t_test, vocab))
    score_codes = pair_codes(id_codes(s_enroll, vocab), id_codes(s_test, vocab))
    check_unique_pairs(trials_path, t_enroll, t_test, trial_codes)
    check_unique_pairs(scores_path, s_enroll, s_test, score_codes)
    if np.array_equal(trial_codes, score_codes):  # the usual case: same order
        return values, labels
    order = np.argsort(score_codes)
    sorted_codes = score_codes[order]
    if len(sorted_codes):
        pos = np.minimum(np.searchsorted(sorted_codes, trial_codes), len(sorted_codes) - 1)
        found = sorted_codes[pos] == trial_codes
    else:
        pos, found = np.zeros(len(trial_codes), np.int64), np.zeros(len(trial_codes), bool)
    if not found.all():
        missing = np.flatnonzero(~found)
        raise DataError(
            f"{scores_path}: {len(missing)} trial(s) of {trials_path} have no score, e.g. "
            f"{_pair_list(t_enroll, t_test, missing[:3])}"
        )
    if len(score_codes) != len(trial_codes):
        extra = np.flatnonzero(~np.isin(score_codes, trial_codes))
        raise DataError(
            f"{scores_path}: {len(extra)} score(s) match no trial of {trials_path}, e.g. "
            f"{_pair_list(s_enroll, s_test, extra[:3])}"
        )
    return values[order[pos]], labels


# ---------------------------------------------------------------------------------------
# Plots


def _thin_det_points(x: np.ndarray, y: np.ndarray, step: float = 0.005) -> np.ndarray:
    """Indices of the DET points that enter a new ``step``-sized grid cell.

    A DET curve over millions of trials has millions of points but only a few hundred
    pixels; the curve is monotone, so this keeps its shape exactly at plotting resolution.
    """
    cell_x = np.floor(x / step).astype(np.int64)
    cell_y = np.floor(y / step).astype(np.int64)
    keep = np.r_[True, (cell_x[1:] != cell_x[:-1]) | (cell_y[1:] != cell_y[:-1])]
    keep[-1] = True
    return np.flatnonzero(keep)


def plot_det(
    p_miss: np.ndarray,
    p_fa: np.ndarray,
    path: str | os.PathLike,
    eer: float | None = None,
    min_dcf_points: Sequence[tuple[str, float, float]] = (),
) -> None:
    """DET curve on normal-deviate axes, written to ``path`` (PNG, atomically).

    ``min_dcf_points`` are ``(label, p_fa, p_miss)`` markers; the EER point lies on the
    diagonal.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    from sslsv.fileio import atomic_write

    ticks = np.array([0.0001, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6])
    lo, hi = 0.00005, 0.7

    def probit(p):
        return norm.ppf(np.clip(p, lo, hi))

    x, y = probit(p_fa), probit(p_miss)
    keep = _thin_det_points(x, y)
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.plot(x[keep], y[keep], lw=1.5, label="DET")
    if eer is not None:
        ax.plot(probit(eer), probit(eer), "o", label=f"EER {100 * eer:.2f}%")
    for label, fa, miss in min_dcf_points:
        ax.plot(probit(fa), probit(miss), "s", label=label)
    ax.plot(probit([lo, hi]), probit([lo, hi]), ":", color="grey", lw=0.8)
    tick_pos = probit(ticks)
    tick_labels = [f"{100 * t:g}" for t in ticks]
    ax.set_xticks(tick_pos, tick_labels)
    ax.set_yticks(tick_pos, tick_labels)
    ax.set_xlim(probit(lo), probit(hi))
    ax.set_ylim(probit(lo), probit(hi))
    ax.set_xlabel("False-alarm probability (%)")
    ax.set_ylabel("Miss probability (%)")
    ax.grid(True, lw=0.4)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    with atomic_write(Path(path), "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def plot_score_histograms(
    scores: np.ndarray, labels: np.ndarray, path: str | os.PathLike, bins: int = 100
) -> None:
    """Target and non-target score histograms (densities) in one PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sslsv.fileio import atomic_write

    scores, labels = _check(scores, labels)
    edges = np.histogram_bin_edges(scores, bins=bins)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(scores[~labels], bins=edges, density=True, alpha=0.6, label="non-target")
    ax.hist(scores[labels], bins=edges, density=True, alpha=0.6, label="target")
    ax.set_xlabel("score")
    ax.set_ylabel("density")
    ax.legend()
    fig.tight_layout()
    with atomic_write(Path(path), "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
