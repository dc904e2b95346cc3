"""The two scoring back ends, and saving/loading them as plain arrays (``.npz``).

Each back end turns raw embeddings into *prepared* ones once (``prepare``), then scores
prepared embeddings pairwise (``score_pairs``) or all-against-all (``score_matrix``, used
by score normalisation).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from sslsv.backend.plda import PLDA
from sslsv.backend.scoring import pair_scores
from sslsv.backend.transforms import LDA, fit_whitening, length_norm
from sslsv.errors import DataError
from sslsv.fileio import atomic_write

__all__ = ["Backend", "CosineBackend", "PLDABackend", "load_backend", "save_backend"]

_FORMAT = "sslsv-backend-v1"


class CosineBackend:
    """Cosine similarity after optional mean subtraction; uses no speaker labels."""

    kind = "cosine"

    def __init__(self, mean: np.ndarray | None = None):
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)

    @classmethod
    def fit(cls, x: np.ndarray | None = None) -> CosineBackend:
        """The mean of ``x`` (e.g. training embeddings) becomes the subtracted mean."""
        return cls(None if x is None else np.mean(x, axis=0, dtype=np.float64))

    def config(self) -> dict:
        return {"mean_subtraction": self.mean is not None}

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """Float32 unit-length rows (after subtracting the mean, if any)."""
        x = np.asarray(x, dtype=np.float32)
        if self.mean is not None:
            x = x - self.mean.astype(np.float32)
        return length_norm(x)

    def score_pairs(
        self, enroll: np.ndarray, test: np.ndarray, enroll_idx: np.ndarray, test_idx: np.ndarray
    ) -> np.ndarray:
        return pair_scores(enroll, test, enroll_idx, test_idx)

    def score_matrix(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (torch.from_numpy(a) @ torch.from_numpy(b).T).numpy()

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {} if self.mean is None else {"mean": self.mean}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> CosineBackend:
        return cls(arrays.get("mean"))


class PLDABackend:
    """Centre, optionally whiten, optionally LDA, length-normalise, then two-covariance PLDA.

    Training uses speaker labels (LDA and PLDA). Length normalisation scales to norm
    ``sqrt(dim)`` so that per-dimension variances stay near 1.
    """

    kind = "plda"

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
    def fit(
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

    def config(self) -> dict:
        return {
            "lda_dim": self.lda.dim if self.lda else 0,
            "whiten": self.whitening is not None,
            "n_iter": self.n_iter,
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


Backend = CosineBackend | PLDABackend
_KINDS = {"cosine": CosineBackend, "plda": PLDABackend}


def save_backend(path: str | os.PathLike, backend: Backend) -> None:
    """Write ``backend`` as plain arrays to ``path`` (``.npz``), atomically."""
    arrays = {"format": np.array(_FORMAT), "kind": np.array(backend.kind)}
    arrays.update(backend.to_arrays())
    with atomic_write(Path(path), "wb") as f:
        np.savez(f, **arrays)


def load_backend(path: str | os.PathLike) -> Backend:
    """Read a back end written by :func:`save_backend` (no pickle: plain arrays only)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable .npz back-end file ({e})") from None
    if str(arrays.get("format", "")) != _FORMAT:
        raise DataError(f"{path}: not an sslsv back end (format {_FORMAT!r} expected)")
    kind = str(arrays.pop("kind", ""))
    if kind not in _KINDS:
        raise DataError(f"{path}: unknown back-end kind {kind!r}")
    try:
        return _KINDS[kind].from_arrays(arrays)
    except KeyError as e:
        raise DataError(f"{path}: {kind} back end lacks array {e}") from None
