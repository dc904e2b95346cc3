"""The log-mel front end against a plain numpy implementation of its definition."""

import numpy as np
import torch

from sslsv.config.schema import FeaturesConfig
from sslsv.features import LogMelFbank, mean_var_norm


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + f / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def reference_logmel(x: np.ndarray, c: FeaturesConfig) -> np.ndarray:
    """Centred frames (reflect padding), periodic Hamming window zero-padded to n_fft,
    |FFT|^2, HTK triangular mel filters between f_min and f_max, log(. + offset)."""
    pad = c.n_fft // 2
    x = np.pad(x.astype(np.float64), pad, mode="reflect")
    n = np.arange(c.win_length)
    window = 0.54 - 0.46 * np.cos(2 * np.pi * n / c.win_length)  # periodic
    left = (c.n_fft - c.win_length) // 2
    full_window = np.zeros(c.n_fft)
    full_window[left : left + c.win_length] = window
    frames = 1 + (len(x) - c.n_fft) // c.hop_length
    power = np.empty((frames, c.n_fft // 2 + 1))
    for t in range(frames):
        seg = x[t * c.hop_length : t * c.hop_length + c.n_fft] * full_window
        power[t] = np.abs(np.fft.rfft(seg)) ** 2
    freqs = np.linspace(0, c.sample_rate / 2, c.n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(c.f_min), hz_to_mel(c.f_max), c.n_mels + 2))
    fbank = np.zeros((c.n_mels, len(freqs)))
    for m in range(c.n_mels):
        lo, centre, hi = edges[m], edges[m + 1], edges[m + 2]
        rising = (freqs - lo) / (centre - lo)
        falling = (hi - freqs) / (hi - centre)
        fbank[m] = np.maximum(0.0, np.minimum(rising, falling))
    return np.log(power @ fbank.T + c.log_offset).T  # (n_mels, frames)


def test_logmel_matches_reference():
    cfg = FeaturesConfig()
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t))
    got = LogMelFbank(cfg)(torch.tensor(x, dtype=torch.float32)[None])[0].numpy()
    want = reference_logmel(x, cfg)
    assert got.shape == want.shape == (40, 8000 // 160 + 1)
    np.testing.assert_allclose(got, want, atol=2e-3, rtol=1e-3)


def test_mean_var_norm():
    x = torch.randn(3, 40, 100) * 5 + 2
    y = mean_var_norm(x)
    assert torch.allclose(y.mean(-1), torch.zeros(3, 40), atol=1e-5)
    assert torch.allclose(y.std(-1, unbiased=False), torch.ones(3, 40), atol=1e-3)
