"""Embedding transforms: length normalisation, whitening and LDA."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from threadpoolctl import threadpool_limits

__all__ = [
    "LDA",
    "class_sums",
    "fit_whitening",
    "generalised_eigh",
    "labels_to_classes",
    "length_norm",
    "single_threaded_blas",
    "speaker_means",
]


def generalised_eigh(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.linalg.eigh(a, b)``. scipy is imported where it is used, in this module and in
    ``plda_model``: ``sslsv.config.load`` imports the back ends to check
    ``scoring.backend``, and ``scipy.linalg`` alone takes 0.4 s to import."""
    import scipy.linalg

    return scipy.linalg.eigh(a, b)


def single_threaded_blas() -> threadpool_limits:
    """Context running BLAS/LAPACK on one thread, for algebra on small (d x d) matrices.

    A process here holds three thread pools (torch's OpenMP, numpy's and scipy's OpenBLAS);
    on few cores they oversubscribe, and a 200 x 200 ``eigh`` was measured 10-50x slower
    multi-threaded than on one thread.
    """
    return threadpool_limits(limits=1, user_api="blas")


def length_norm(x: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Rows of ``x`` rescaled to Euclidean norm ``scale`` (same dtype); a zero row is an error."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not np.all(norms > 0):
        raise ValueError(f"zero embedding(s) at row(s) {np.flatnonzero(norms[:, 0] == 0)[:5]}")
    return (x * (scale / norms)).astype(x.dtype, copy=False)


def labels_to_classes(labels: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """``(class_names, class_index_per_row)`` for arbitrary hashable labels (e.g. speakers)."""
    names, inverse = np.unique(np.asarray(labels), return_inverse=True)
    return names, inverse.ravel()


def class_sums(x: np.ndarray, inverse: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, sums)`` of the rows of ``x`` per class, sums in float64."""
    import scipy.sparse  # here, not at the top: see generalised_eigh

    n = len(inverse)
    # A sparse one-hot (classes x rows) product sums every class in one pass.
    onehot = scipy.sparse.csr_array((np.ones(n), (inverse, np.arange(n))), shape=(n_classes, n))
    counts = np.bincount(inverse, minlength=n_classes)
    return counts, onehot @ x.astype(np.float64, copy=False)


def speaker_means(x: np.ndarray, speakers: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """``(speaker_ids, means)``: the mean embedding of each speaker, speakers sorted."""
    names, inverse = np.unique(np.asarray(speakers), return_inverse=True)
    counts, sums = class_sums(x, inverse, len(names))
    return [str(s) for s in names], (sums / counts[:, None]).astype(np.float32)


def _ridge(cov: np.ndarray, rel: float = 1e-8) -> np.ndarray:
    """``cov`` plus a tiny diagonal so that rank-deficient data still factorises."""
    return cov + rel * max(np.trace(cov) / len(cov), 1e-30) * np.eye(len(cov))


def fit_whitening(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, matrix)``: ``(x - mean) @ matrix`` has identity covariance (ZCA whitening)."""
    x = x.astype(np.float64, copy=False)
    mean = x.mean(0)
    centred = x - mean
    cov = _ridge(centred.T @ centred / len(x))
    with single_threaded_blas():
        eigval, eigvec = np.linalg.eigh(cov)
    return mean, (eigvec / np.sqrt(eigval)) @ eigvec.T


class LDA:
    """Linear discriminant analysis: ``(x - mean) @ projection``.

    The projection solves ``S_b v = lambda S_w v`` (between- and within-class covariances,
    classes weighted by their number of rows) and keeps the ``dim`` directions of largest
    ``lambda``, scaled so that the projected within-class covariance is the identity.
    """

    def __init__(self, mean: np.ndarray, projection: np.ndarray):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.projection = np.asarray(projection, dtype=np.float64)

    @property
    def dim(self) -> int:
        return self.projection.shape[1]

    @classmethod
    def fit(cls, x: np.ndarray, labels: Sequence, dim: int) -> LDA:
        """Train on rows ``x`` with one class label per row."""
        names, inverse = labels_to_classes(labels)
        n, d = x.shape
        if len(inverse) != n:
            raise ValueError(f"{n} embeddings but {len(inverse)} labels")
        if not 1 <= dim <= min(d, len(names) - 1):
            raise ValueError(
                f"LDA dimension {dim} must be in [1, min(input dim {d}, classes - 1 = "
                f"{len(names) - 1})]"
            )
        x = x.astype(np.float64, copy=False)
        mean = x.mean(0)
        counts, sums = class_sums(x, inverse, len(names))
        class_means = sums / counts[:, None]
        total = x.T @ x / n - np.outer(mean, mean)
        # E[m_s m_s^T] weighted by rows; the within-class part is what remains of the total.
        between = (class_means.T * counts) @ class_means / n - np.outer(mean, mean)
        within = total - between
        with single_threaded_blas():
            eigval, eigvec = generalised_eigh(between, _ridge(within))
        projection = eigvec[:, ::-1][:, :dim]  # eigh normalises v^T S_w v = 1
        return cls(mean, projection)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) @ self.projection
