"""Scoring back ends: a registry of them (cosine, PLDA), their parts, and score normalisation.

One place for each thing:

- ``base``: ``Backend`` (what a back end is), the registry ``BACKENDS`` with
  ``register_backend`` and ``backend_class``, ``TrainingSet``, ``save_backend`` /
  ``load_backend`` (.npz, format ``base.FORMAT``);
- ``cosine``: ``CosineBackend`` ("cosine"); ``plda``: ``PLDABackend`` ("plda"), one module
  per back end, each registered by name (imported below: importing them registers them);
- ``transforms``: ``length_norm``, whitening, ``LDA``, ``speaker_means``;
- ``scoring``: ``pair_scores`` (batched row-wise dot products), ``cosine_scores``;
- ``plda_model``: ``PLDA`` (two-covariance model: EM training, closed-form LLR);
- ``norm``: ``score_norm`` (Z-, T-, S-, AS-norm).

Embeddings are read by :mod:`sslsv.arkio` (``load_embeddings``, re-exported here).
"""

from sslsv.arkio import load_embeddings, load_labelled_embeddings
from sslsv.backend.base import (
    BACKENDS,
    Backend,
    TrainingSet,
    backend_class,
    backend_options,
    load_backend,
    reads_training_set,
    register_backend,
    save_backend,
)
from sslsv.backend.cosine import CosineBackend  # importing a back end registers it
from sslsv.backend.norm import NORM_METHODS, cohort_stats, normalize_scores, score_norm
from sslsv.backend.plda import PLDABackend
from sslsv.backend.plda_model import PLDA
from sslsv.backend.scoring import cosine_scores, pair_scores
from sslsv.backend.transforms import LDA, fit_whitening, length_norm, speaker_means

__all__ = [
    "BACKENDS",
    "LDA",
    "NORM_METHODS",
    "reads_training_set",
    "PLDA",
    "Backend",
    "CosineBackend",
    "PLDABackend",
    "TrainingSet",
    "backend_class",
    "backend_options",
    "cohort_stats",
    "cosine_scores",
    "fit_whitening",
    "length_norm",
    "load_backend",
    "load_embeddings",
    "load_labelled_embeddings",
    "normalize_scores",
    "pair_scores",
    "register_backend",
    "save_backend",
    "score_norm",
    "speaker_means",
]
