"""The model that a checkpoint holds: log-mel front end + per-utterance MVN (unless the
encoder takes raw features) + encoder (saved and loaded by :mod:`sslsv.train.checkpoint`)."""

from __future__ import annotations

import torch
from torch import nn

from sslsv.config.schema import Config
from sslsv.features import LogMelFbank, mean_var_norm
from sslsv.models import build_encoder


class EmbeddingModel(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.fbank = LogMelFbank(cfg.features)
        self.encoder = build_encoder(cfg.encoder.name, cfg.features.n_mels, cfg.encoder.args)

    @property
    def embed_dim(self) -> int:
        return self.encoder.embed_dim

    def forward_features(self, feats: torch.Tensor) -> torch.Tensor:
        """Raw log-mels (B, n_mels, T), as feature computation writes them -> embeddings (B, D); the
        encoder sees them mean/variance normalised per utterance, unless it declares
        ``raw_features = True`` (statistics of the raw log-mels: :mod:`sslsv.models.stats`)."""
        if not getattr(self.encoder, "raw_features", False):
            feats = mean_var_norm(feats)
        return self.encoder(feats)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Waveforms (B, L) -> embeddings (B, D)."""
        return self.forward_features(self.fbank(wave))
