"""The one log-mel front end, shared by feature computation, training and extraction."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from sslsv.config.schema import FeaturesConfig


class LogMelFbank(nn.Module):
    """Waveforms (B, L) at ``sample_rate`` -> log-mel filterbanks (B, n_mels, frames).

    ``log(mel_power + log_offset)`` with a Hamming window, HTK mel scale, centred frames
    (``frames = L // hop_length + 1``). Always computed in float32, also under autocast,
    because the log of small powers is not safe in bf16.
    """

    def __init__(self, cfg: FeaturesConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = self.cfg
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=c.sample_rate,
            n_fft=c.n_fft,
            win_length=c.win_length,
            hop_length=c.hop_length,
            f_min=c.f_min,
            f_max=c.f_max,
            n_mels=c.n_mels,
            window_fn=torch.hamming_window,
            power=2.0,
            mel_scale="htk",
        )

    def num_frames(self, num_samples: int) -> int:
        return num_samples // self.cfg.hop_length + 1

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=wave.device.type, enabled=False):
            return torch.log(self.mel(wave.float()) + self.cfg.log_offset)


def mean_var_norm(feats: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-utterance mean and variance normalisation over time of (B, F, T) features."""
    mean = feats.mean(dim=-1, keepdim=True)
    var = feats.var(dim=-1, keepdim=True, unbiased=False)
    return (feats - mean) / torch.sqrt(var + eps)
