"""SpecAugment-style masking of log-mel crops: bands of frequency bins and spans of frames
replaced by the crop's mean log-mel value (the masked region then carries no information
and, after the model's per-utterance normalisation, sits at about zero).

As for the waveform augmenter, every choice is drawn on the CPU from the caller's generator
for the global batch (:func:`sample_masks`), and applied with tensor ops on the batch's
device (:func:`apply_masks`): reproducible, and independent of how the batch is split.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sslsv.config.schema import AugmentConfig
from sslsv.devices import upload


@dataclass(frozen=True)
class Masks:
    """Per row: ``count`` bands [start, start + width) of bins and of frames (width 0: none)."""

    freq_start: torch.Tensor  # (rows, freq_masks) int64
    freq_width: torch.Tensor
    time_start: torch.Tensor  # (rows, time_masks) int64
    time_width: torch.Tensor

    def rows(self, start: int, stop: int) -> Masks:
        return Masks(*(t[start:stop] for t in (self.freq_start, self.freq_width,
                                                self.time_start, self.time_width)))  # fmt: skip


def masking_enabled(cfg: AugmentConfig) -> bool:
    return cfg.enabled and (cfg.spec_freq_masks > 0 or cfg.spec_time_masks > 0)


def _bands(rows: int, count: int, size: int, max_width: int, g: torch.Generator):
    width = torch.randint(0, min(max_width, size) + 1, (rows, count), generator=g)
    start = (torch.rand(rows, count, generator=g) * (size - width + 1)).long()
    return start, width


def sample_masks(
    rows: int, n_mels: int, frames: int, cfg: AugmentConfig, generator: torch.Generator
) -> Masks:
    """Masks for ``rows`` crops of (n_mels, frames): ``spec_freq_masks`` bands of up to
    ``spec_freq_width`` bins and ``spec_time_masks`` spans of up to ``spec_time_width``
    frames each, widths and positions uniform."""
    freq = _bands(rows, cfg.spec_freq_masks, n_mels, cfg.spec_freq_width, generator)
    time = _bands(rows, cfg.spec_time_masks, frames, cfg.spec_time_width, generator)
    return Masks(*freq, *time)


def _covered(start: torch.Tensor, width: torch.Tensor, size: int) -> torch.Tensor:
    """(rows, size) True where any band of the row covers the position."""
    if start.shape[1] == 0:
        return torch.zeros(start.shape[0], size, dtype=torch.bool, device=start.device)
    position = torch.arange(size, device=start.device)[None, None]
    inside = (position >= start[..., None]) & (position < (start + width)[..., None])
    return inside.any(dim=1)


def apply_masks(feats: torch.Tensor, masks: Masks) -> torch.Tensor:
    """(rows, n_mels, frames) log-mels with the masked bins and frames set to each crop's
    mean value; a new tensor."""
    rows, n_mels, frames = feats.shape
    device = feats.device
    freq = _covered(upload(masks.freq_start, device), upload(masks.freq_width, device), n_mels)
    time = _covered(upload(masks.time_start, device), upload(masks.time_width, device), frames)
    covered = freq[:, :, None] | time[:, None, :]
    fill = feats.mean(dim=(1, 2), keepdim=True).expand_as(feats)
    return torch.where(covered, fill, feats)
