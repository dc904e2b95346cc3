"""The cosine back end: cosine similarity, optionally after subtracting the training mean."""

from __future__ import annotations

import numpy as np
import torch

from sslsv.backend.base import Backend, TrainingSet, register_backend
from sslsv.backend.scoring import pair_scores
from sslsv.backend.transforms import length_norm
from sslsv.config.schema import ScoringConfig

__all__ = ["CosineBackend"]


@register_backend("cosine")
class CosineBackend(Backend):
    """Cosine similarity after optional mean subtraction; uses no speaker labels."""

    options = {"subtract_mean": "subtract the training set's mean embedding (needs --train)"}

    def __init__(self, mean: np.ndarray | None = None):
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)

    @classmethod
    def needs_training(cls, cfg: ScoringConfig) -> str | None:
        return "scoring.subtract_mean (or --no-subtract-mean)" if cfg.subtract_mean else None

    @classmethod
    def fit(cls, cfg: ScoringConfig, train: TrainingSet | None) -> CosineBackend:
        if not cfg.subtract_mean:
            return cls()
        if train is None:
            raise ValueError("scoring.subtract_mean needs the training set's embeddings")
        return cls.trained_on(train.x)

    @classmethod
    def trained_on(cls, x: np.ndarray) -> CosineBackend:
        """The mean of ``x`` (e.g. training embeddings) becomes the subtracted mean."""
        return cls(np.mean(x, axis=0, dtype=np.float64))

    def settings(self) -> dict:
        return {"subtract_mean": self.mean is not None}

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
