"""DET curves and score histograms (matplotlib, written as PNG atomically)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sslsv.fileio import atomic_write
from sslsv.metrics import check_scores


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

    scores, labels = check_scores(scores, labels)
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
