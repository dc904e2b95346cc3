"""Scoring back ends: cosine, LDA, two-covariance PLDA and score normalisation.

One place for each thing:

- ``embeddings``: ``load_embeddings(scp) -> (ids, matrix)`` (safe Kaldi ark/scp reading);
- ``transforms``: ``length_norm``, whitening, ``LDA``;
- ``scoring``: ``pair_scores`` (batched row-wise dot products), ``cosine_scores``;
- ``plda``: ``PLDA`` (EM training, closed-form LLR);
- ``backends``: ``CosineBackend``, ``PLDABackend``, ``save_backend``/``load_backend`` (.npz);
- ``norm``: ``score_norm`` (Z-, T-, S-, AS-norm).
"""

from sslsv.backend.backends import (
    Backend,
    CosineBackend,
    PLDABackend,
    load_backend,
    save_backend,
)
from sslsv.backend.embeddings import (
    load_embeddings,
    load_labelled_embeddings,
    speaker_means,
)
from sslsv.backend.norm import NORM_METHODS, cohort_stats, normalize_scores, score_norm
from sslsv.backend.plda import PLDA
from sslsv.backend.scoring import cosine_scores, pair_scores
from sslsv.backend.transforms import LDA, fit_whitening, length_norm

__all__ = [
    "LDA",
    "NORM_METHODS",
    "PLDA",
    "Backend",
    "CosineBackend",
    "PLDABackend",
    "cohort_stats",
    "cosine_scores",
    "fit_whitening",
    "length_norm",
    "load_backend",
    "load_embeddings",
    "load_labelled_embeddings",
    "normalize_scores",
    "pair_scores",
    "save_backend",
    "score_norm",
    "speaker_means",
]
