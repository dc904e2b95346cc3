"""Moved: embeddings are read by :mod:`sslsv.arkio` (and ``speaker_means`` is in
:mod:`sslsv.backend.transforms`). This name stays for ``sslsv.train.seed`` until it imports
from there; nothing else uses it."""

from sslsv.arkio import load_embeddings

__all__ = ["load_embeddings"]
