"""The PLDA back end: centre, optionally whiten and LDA, length-normalise, two-covariance
PLDA (:mod:`sslsv.backend.plda_model`); trained with the training set's speaker labels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sslsv.backend.base import Backend, TrainingSet, register_backend
from sslsv.backend.plda_model import PLDA
from sslsv.backend.transforms import LDA, fit_whitening, length_norm
from sslsv.config.schema import ScoringConfig

__all__ = ["PLDABackend"]


@register_backend("plda")
class PLDABackend(Backend):
    """Centre, optionally whiten, optionally LDA, length-normalise, then two-covariance PLDA.

    Training uses speaker labels (LDA and PLDA). Length normalisation scales to norm
    ``sqrt(dim)`` so that per-dimension variances stay near 1.
    """

    options = {
        "lda_dim": "LDA dimension before PLDA (0: none)",
        "whiten": "whiten before LDA and PLDA",
        "plda_iters": "EM iterations",
    }
    needs_labels = True
    saved = True

    def __init__(
        self,
        mean: np.ndarray,
        plda: PLDA,
        whitening: np.ndarray | None = None,
        lda: LDA | None = None,
        n_iter: int = 10,
    ):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.whitening = whitening
        self.lda = lda
        self.plda = plda
        self.n_iter = n_iter

    @classmethod
    def fit(cls, cfg: ScoringConfig, train: TrainingSet | None) -> PLDABackend:
        if train is None or train.speakers is None:
            raise ValueError("PLDA needs the training set's embeddings and speaker labels")
        return cls.trained_on(
            train.x, train.speakers, cfg.lda_dim or None, cfg.whiten, cfg.plda_iters
        )

    @classmethod
    def trained_on(
        cls,
        x: np.ndarray,
        labels: Sequence,
        lda_dim: int | None = None,
        whiten: bool = False,
        n_iter: int = 10,
    ) -> PLDABackend:
        """Train every stage on ``x`` (rows) with one speaker label per row."""
        if len(labels) != len(x):
            raise ValueError(f"{len(x)} embeddings but {len(labels)} labels")
        x = np.asarray(x, dtype=np.float64)
        whitening = None
        if whiten:
            mean, whitening = fit_whitening(x)
        else:
            mean = x.mean(0)
        y = x - mean
        if whitening is not None:
            y = y @ whitening
        lda = LDA.fit(y, labels, lda_dim) if lda_dim else None
        plda = PLDA.fit(_reduce_and_normalise(y, lda), labels, n_iter=n_iter)
        return cls(mean, plda, whitening, lda, n_iter)

    def settings(self) -> dict:
        return {
            "lda_dim": self.lda.dim if self.lda else 0,
            "whiten": self.whitening is not None,
            "plda_iters": self.n_iter,
        }

    def prepare(self, x: np.ndarray) -> np.ndarray:
        y = np.asarray(x, dtype=np.float64) - self.mean
        if self.whitening is not None:
            y = y @ self.whitening
        return _reduce_and_normalise(y, self.lda)

    def score_pairs(
        self, enroll: np.ndarray, test: np.ndarray, enroll_idx: np.ndarray, test_idx: np.ndarray
    ) -> np.ndarray:
        return self.plda.score_pairs(enroll, test, enroll_idx, test_idx)

    def score_matrix(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.plda.score_matrix(a, b)

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"mean": self.mean, "n_iter": np.array(self.n_iter)}
        if self.whitening is not None:
            arrays["whitening"] = self.whitening
        if self.lda is not None:
            arrays["lda_mean"] = self.lda.mean
            arrays["lda_projection"] = self.lda.projection
        arrays.update({f"plda_{k}": v for k, v in self.plda.to_arrays().items()})
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> PLDABackend:
        lda = None
        if "lda_projection" in arrays:
            lda = LDA(arrays["lda_mean"], arrays["lda_projection"])
        plda = PLDA(arrays["plda_mean"], arrays["plda_between_cov"], arrays["plda_within_cov"])
        return cls(arrays["mean"], plda, arrays.get("whitening"), lda, int(arrays["n_iter"]))


def _reduce_and_normalise(centred: np.ndarray, lda: LDA | None) -> np.ndarray:
    y = lda.transform(centred) if lda else centred
    return length_norm(y, np.sqrt(y.shape[1]))
