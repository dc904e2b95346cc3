"""Score normalisation with a cohort: Z-, T-, S- and adaptive S-norm.

For a trial (e, t) with raw score s, let ``mu_e, sigma_e`` be the mean and standard
deviation (population, ddof=0) of the scores of e against every cohort embedding, and
``mu_t, sigma_t`` the same for t. Then

- Z-norm: ``(s - mu_e) / sigma_e``; T-norm: ``(s - mu_t) / sigma_t``;
- S-norm: the average of the two;
- AS-norm: S-norm with each side's statistics taken over its ``top_k`` highest cohort
  scores only (each side selects its own top k).
"""

from __future__ import annotations

import typing
from collections.abc import Sequence

import numpy as np
import torch

from sslsv.config.schema import ScoreNorm

__all__ = ["NORM_METHODS", "cohort_stats", "normalize_scores", "score_norm"]

NORM_METHODS: tuple[str, ...] = typing.get_args(ScoreNorm)


def cohort_stats(
    cohort_scores: np.ndarray, top_k: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row ``(mean, std)`` (float64) of a scores-vs-cohort matrix, over its ``top_k``
    largest entries if ``top_k`` is given."""
    scores = torch.from_numpy(np.asarray(cohort_scores))
    if top_k is not None:
        if not 1 <= top_k <= scores.shape[1]:
            raise ValueError(f"top_k={top_k} must be in [1, cohort size {scores.shape[1]}]")
        scores = torch.topk(scores, top_k, dim=1, sorted=False).values
    scores = scores.double()
    mean = scores.mean(1)
    std = (scores - mean[:, None]).square().mean(1).sqrt()
    return mean.numpy(), std.numpy()


def normalize_scores(
    scores: np.ndarray,
    method: str,
    enroll_mean: np.ndarray | None = None,
    enroll_std: np.ndarray | None = None,
    test_mean: np.ndarray | None = None,
    test_std: np.ndarray | None = None,
) -> np.ndarray:
    """Apply ``method`` to per-trial raw scores given per-trial cohort statistics."""
    if method not in NORM_METHODS:
        raise ValueError(f"unknown score normalisation {method!r}; choose from {NORM_METHODS}")
    if method == "none":
        return scores
    scores = np.asarray(scores, dtype=np.float64)
    if method == "z":
        return (scores - enroll_mean) / enroll_std
    if method == "t":
        return (scores - test_mean) / test_std
    return 0.5 * ((scores - enroll_mean) / enroll_std + (scores - test_mean) / test_std)


def _side_stats(
    backend,
    x: np.ndarray,
    rows: np.ndarray,
    cohort: np.ndarray,
    top_k: int | None,
    ids: Sequence[str] | None,
    chunk_rows: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Cohort statistics of the rows of ``x`` that trials use (others stay NaN)."""
    mean = np.full(len(x), np.nan)
    std = np.full(len(x), np.nan)
    for start in range(0, len(rows), chunk_rows):
        chunk = rows[start : start + chunk_rows]
        m, s = cohort_stats(backend.score_matrix(x[chunk], cohort), top_k)
        mean[chunk], std[chunk] = m, s
    flat = rows[~(std[rows] > 0)]
    if len(flat):
        names = [ids[i] if ids is not None else f"row {i}" for i in flat[:5]]
        raise ValueError(
            f"cohort scores have zero spread for {len(flat)} embedding(s), e.g. "
            f"{' '.join(names)}: cannot normalise"
        )
    return mean, std


def score_norm(
    backend,
    scores: np.ndarray,
    enroll: np.ndarray,
    test: np.ndarray,
    enroll_idx: np.ndarray,
    test_idx: np.ndarray,
    cohort: np.ndarray,
    method: str,
    top_k: int = 300,
    enroll_ids: Sequence[str] | None = None,
    test_ids: Sequence[str] | None = None,
    chunk_rows: int = 4096,
) -> np.ndarray:
    """Normalise raw trial ``scores`` with ``method`` (see the module docstring).

    ``enroll``, ``test`` and ``cohort`` are embeddings already prepared by ``backend``
    (whose ``score_matrix`` scores them against the cohort); trial i pairs
    ``enroll[enroll_idx[i]]`` with ``test[test_idx[i]]``. Cohort statistics are computed
    once per distinct embedding, and once for both sides when ``enroll is test``.
    ``top_k`` applies to ``"as"`` only. ``*_ids`` only name culprits in errors.
    """
    if method not in NORM_METHODS:
        raise ValueError(f"unknown score normalisation {method!r}; choose from {NORM_METHODS}")
    if method == "none":
        return scores
    k = top_k if method == "as" else None
    if k is not None and not 1 <= k <= len(cohort):
        raise ValueError(f"top_k={k} must be in [1, cohort size {len(cohort)}]")
    need_enroll = method in ("z", "s", "as")
    need_test = method in ("t", "s", "as")
    enroll_rows = np.unique(enroll_idx) if need_enroll else np.zeros(0, np.int64)
    test_rows = np.unique(test_idx) if need_test else np.zeros(0, np.int64)
    if enroll is test:
        rows = np.union1d(enroll_rows, test_rows)
        e_mean, e_std = _side_stats(backend, enroll, rows, cohort, k, enroll_ids, chunk_rows)
        t_mean, t_std = e_mean, e_std
    else:
        e_mean, e_std = _side_stats(backend, enroll, enroll_rows, cohort, k, enroll_ids, chunk_rows)
        t_mean, t_std = _side_stats(backend, test, test_rows, cohort, k, test_ids, chunk_rows)
    return normalize_scores(
        scores,
        method,
        e_mean[enroll_idx],
        e_std[enroll_idx],
        t_mean[test_idx],
        t_std[test_idx],
    )
