"""A label-free, training-free baseline "encoder": per-utterance statistics of cepstra.

The embedding of an utterance is the mean and the standard deviation over time of its
MFCCs (the orthonormal DCT-II of the raw log-mels, first ``n_mfcc`` coefficients; with
``n_mfcc: 0`` the log-mels themselves), each dimension then standardised with the training
set's mean and standard deviation (buffers ``shift`` and ``scale``, filled by
``python -m sslsv.bin.fit_stats``; unfitted they are 0 and 1). Scored with plain cosine, it
is the floor that every learned model must beat. It has no trainable parameters.

It takes the raw log-mels (``raw_features``): the per-utterance mean/variance normalisation
that the other encoders get would erase the very statistics it takes.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from sslsv.errors import ConfigError
from sslsv.models import register_encoder


@register_encoder("stats")
class StatsEncoder(nn.Module):
    """Raw log-mels (B, n_mels, T) -> standardised [mean, std] of the cepstra (B, 2 * C).

    The standard deviation is the population one (divided by T, not T - 1): defined, 0, for
    a single frame. ``C`` is ``n_mfcc``, or ``n_mels`` when ``n_mfcc`` is 0.
    """

    #: :class:`sslsv.models.embedding.EmbeddingModel` skips mean/variance normalisation.
    raw_features = True

    def __init__(self, n_mels: int, n_mfcc: int = 30) -> None:
        super().__init__()
        if not 0 <= n_mfcc <= n_mels:
            raise ConfigError(
                f"'encoder.args.n_mfcc' is {n_mfcc!r}; it must be between 0 (log-mels) and "
                f"features.n_mels {n_mels}"
            )
        self.n_mels, self.n_mfcc = n_mels, n_mfcc
        if n_mfcc:
            # (n_mels, n_mfcc): x (.., n_mels) @ dct = the orthonormal DCT-II, first n_mfcc.
            dct = torchaudio.functional.create_dct(n_mfcc, n_mels, norm="ortho")
            self.register_buffer("dct", dct.float(), persistent=False)
        else:
            self.dct = None
        dim = 2 * (n_mfcc or n_mels)
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    @property
    def embed_dim(self) -> int:
        return self.shift.numel()

    def statistics(self, feats: torch.Tensor) -> torch.Tensor:
        """Raw log-mels (B, n_mels, T) -> unstandardised [mean, std] over time (B, 2 * C)."""
        x = feats.float()
        if self.dct is not None:
            x = torch.einsum("bft,fc->bct", x, self.dct)
        std, mean = torch.std_mean(x, dim=-1, correction=0)
        return torch.cat([mean, std], dim=-1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return (self.statistics(feats) - self.shift) / self.scale
