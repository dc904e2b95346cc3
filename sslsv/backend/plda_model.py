"""Two-covariance PLDA, trained by EM, scored with the closed-form log-likelihood ratio.

Model: a speaker's latent identity ``y ~ N(mu, B)`` and each of its embeddings
``x | y ~ N(y, W)`` (B: between-class, W: within-class covariance).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from sslsv.backend.scoring import pair_scores
from sslsv.backend.transforms import (
    class_sums,
    generalised_eigh,
    labels_to_classes,
    single_threaded_blas,
)

__all__ = ["PLDA"]


def _logdet(a: np.ndarray) -> float:
    sign, value = np.linalg.slogdet(a)
    if sign <= 0:
        raise np.linalg.LinAlgError("covariance is not positive definite")
    return float(value)


class PLDA:
    """Two-covariance PLDA with parameters ``mean``, ``between_cov`` (B), ``within_cov`` (W).

    Scoring works in the basis ``V`` with ``V'WV = I`` and ``V'BV = diag(psi)``, where the
    same-speaker log-likelihood ratio of ``u = V'(x1 - mean)``, ``w = V'(x2 - mean)`` splits
    per dimension:
    ``LLR = sum_j [p_j u_j w_j + q_j (u_j^2 + w_j^2) / 2] + sum_j [log(1 + psi_j)
    - log(1 + 2 psi_j) / 2]`` with ``p = psi / (1 + 2 psi)`` and
    ``q = -psi^2 / ((1 + psi)(1 + 2 psi))`` (from inverting ``[[1 + psi, psi], [psi, 1 + psi]]``).
    So scoring costs one dot product per trial, like cosine.
    """

    def __init__(self, mean: np.ndarray, between_cov: np.ndarray, within_cov: np.ndarray):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.between_cov = np.asarray(between_cov, dtype=np.float64)
        self.within_cov = np.asarray(within_cov, dtype=np.float64)
        self.loglik_history: list[float] = []
        with single_threaded_blas():
            psi, self._basis = generalised_eigh(self.between_cov, self.within_cov)
        psi = np.maximum(psi, 0.0)
        self._cross = psi / (1 + 2 * psi)
        self._self = -(psi**2) / ((1 + psi) * (1 + 2 * psi))
        self._const = float(np.sum(np.log1p(psi) - 0.5 * np.log1p(2 * psi)))

    @property
    def dim(self) -> int:
        return len(self.mean)

    # -- training ---------------------------------------------------------------------

    @classmethod
    def fit(cls, x: np.ndarray, labels: Sequence, n_iter: int = 10) -> PLDA:
        """EM from the moment estimates (speaker-mean covariance, within-speaker scatter).

        ``loglik_history`` of the result holds the training-data log-likelihood before each
        EM step and after the last one (non-decreasing, as EM guarantees).
        """
        names, inverse = labels_to_classes(labels)
        x = np.asarray(x, dtype=np.float64)
        n, d = x.shape
        if len(inverse) != n:
            raise ValueError(f"{n} embeddings but {len(inverse)} labels")
        n_spk = len(names)
        if n_spk < 2:
            raise ValueError(f"PLDA needs at least 2 speakers, got {n_spk}")
        counts, sums = class_sums(x, inverse, n_spk)
        second = x.T @ x  # sum of x x^T
        spk_means = sums / counts[:, None]
        mean = x.mean(0)
        within = (second - (spk_means.T * counts) @ spk_means) / n
        between = np.cov(spk_means.T, bias=True).reshape(d, d)
        history = []
        with single_threaded_blas():
            within = _floor(within)
            between = _floor(between)
            for _ in range(n_iter):
                loglik, (mean, between, within) = _em_step(
                    mean, between, within, counts, sums, second
                )
                history.append(loglik)
            history.append(_em_step(mean, between, within, counts, sums, second)[0])
        model = cls(mean, between, within)
        model.loglik_history = history
        return model

    # -- scoring ----------------------------------------------------------------------

    def prepare(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(u * sqrt(p)`` as float32, ``q'u^2 / 2 + const / 2)`` per row: the LLR of a pair is
        the dot product of the first parts plus both second parts."""
        u = (np.asarray(x, dtype=np.float64) - self.mean) @ self._basis
        half_self = 0.5 * (u**2 @ self._self) + self._const / 2
        return (u * np.sqrt(self._cross)).astype(np.float32), half_self

    def score_pairs(
        self,
        enroll: np.ndarray,
        test: np.ndarray,
        enroll_idx: np.ndarray,
        test_idx: np.ndarray,
    ) -> np.ndarray:
        """LLR of ``(enroll[enroll_idx[i]], test[test_idx[i]])`` for every i (float64)."""
        e_vec, e_self = self.prepare(enroll)
        t_vec, t_self = (e_vec, e_self) if test is enroll else self.prepare(test)
        cross = pair_scores(e_vec, t_vec, enroll_idx, test_idx)
        return cross + e_self[enroll_idx] + t_self[test_idx]

    def score_matrix(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """LLR of every row of ``a`` against every row of ``b`` (float64)."""
        a_vec, a_self = self.prepare(a)
        b_vec, b_self = self.prepare(b)
        cross = (torch.from_numpy(a_vec) @ torch.from_numpy(b_vec).T).numpy()
        return cross + a_self[:, None] + b_self[None, :]

    def llr(self, x1: np.ndarray, x2: np.ndarray) -> float:
        """LLR of one pair from the Gaussian densities themselves (slow; for checks):
        ``log N([x1; x2]; [mean; mean], [[T, B], [B, T]]) - log N(x1; mean, T)
        - log N(x2; mean, T)`` with ``T = B + W``."""

        def log_gauss(v: np.ndarray, cov: np.ndarray) -> float:
            return -0.5 * (
                v @ np.linalg.solve(cov, v) + _logdet(cov) + len(v) * math.log(2 * math.pi)
            )

        a, b = x1 - self.mean, x2 - self.mean
        total = self.between_cov + self.within_cov
        joint = np.block([[total, self.between_cov], [self.between_cov, total]])
        return log_gauss(np.r_[a, b], joint) - log_gauss(a, total) - log_gauss(b, total)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "between_cov": self.between_cov, "within_cov": self.within_cov}


def _floor(cov: np.ndarray, rel: float = 1e-6) -> np.ndarray:
    """Symmetrise and keep eigenvalues >= ``rel`` times the largest (EM needs inverses)."""
    cov = (cov + cov.T) / 2
    eigval, eigvec = np.linalg.eigh(cov)
    eigval = np.maximum(eigval, rel * max(eigval.max(), 1e-30))
    return (eigvec * eigval) @ eigvec.T


def _em_step(
    mean: np.ndarray,
    between: np.ndarray,
    within: np.ndarray,
    counts: np.ndarray,
    sums: np.ndarray,
    second: np.ndarray,
) -> tuple[float, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Log-likelihood under the given parameters, and the EM-updated parameters.

    Works in the coordinates ``z = V'x`` where ``V'WV = I`` and ``V'BV = diag(psi)``
    (generalised eigenvectors). There a speaker with ``n`` rows summing to ``f`` has the
    posterior identity ``N(mu + c (f - n mu), diag(c))`` with ``c = psi / (1 + n psi)``, and
    ``log|Sigma_speaker| = n log|W| + sum_j log(1 + n psi_j)``: no per-speaker inverses.
    EM is affine-equivariant, so updating there and mapping back is the same EM.
    """
    n, d = int(counts.sum()), len(mean)
    n_spk = len(counts)
    psi, v = generalised_eigh(between, within)
    psi = np.maximum(psi, 0.0)
    mean_z = mean @ v
    sums_z = sums @ v
    second_z = v.T @ second @ v
    centred_sums = sums_z - counts[:, None] * mean_z
    post_var = psi / (1.0 + counts[:, None] * psi)  # (speakers, d) diagonal covariances
    post_mean = mean_z + post_var * centred_sums
    # Marginal log-likelihood (Woodbury and the determinant lemma, in z coordinates).
    total_sum_z = sums_z.sum(0)
    scatter = np.trace(second_z) - 2 * mean_z @ total_sum_z + n * mean_z @ mean_z
    loglik = -0.5 * (
        n * d * math.log(2 * math.pi)
        + n * _logdet(within)
        + float(np.log1p(counts[:, None] * psi).sum())
        + scatter
        - float((post_var * centred_sums**2).sum())
    )
    new_mean_z = post_mean.mean(0)
    new_between_z = (np.diag(post_var.sum(0)) + post_mean.T @ post_mean) / n_spk - np.outer(
        new_mean_z, new_mean_z
    )
    cross = sums_z.T @ post_mean
    new_within_z = (
        second_z - cross - cross.T + np.diag(counts @ post_var) + (post_mean.T * counts) @ post_mean
    ) / n
    v_inv = v.T @ within  # = v^-1 as v'Wv = I; rows map back as x = z v^-1
    new_between = v_inv.T @ new_between_z @ v_inv
    new_within = v_inv.T @ new_within_z @ v_inv
    new_between = (new_between + new_between.T) / 2
    new_within = (new_within + new_within.T) / 2
    return loglik, (new_mean_z @ v_inv, new_between, new_within)
