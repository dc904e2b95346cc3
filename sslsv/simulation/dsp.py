"""Signal-processing pieces of the simulations: coloured noise, mixing at an SNR, peaking EQ."""

from __future__ import annotations

import math

import numpy as np
import scipy.fft


def peaking_eq_sos(f0_hz: float, gain_db: float, q: float, sample_rate: int) -> np.ndarray:
    """One biquad section (scipy ``sos`` row) of a peaking EQ (Bristow-Johnson's cookbook).

    Gain ``gain_db`` at ``f0_hz``, unity at DC and Nyquist, bandwidth set by ``q``.
    """
    amp = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * f0_hz / sample_rate
    alpha = math.sin(w0) / (2.0 * q)
    cos_w0 = math.cos(w0)
    b = np.array([1.0 + alpha * amp, -2.0 * cos_w0, 1.0 - alpha * amp])
    a = np.array([1.0 + alpha / amp, -2.0 * cos_w0, 1.0 - alpha / amp])
    return np.concatenate([b / a[0], a / a[0]])[None, :]


def colored_noise(num_samples: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS Gaussian noise whose power spectrum falls as ``1 / f**exponent``."""
    # Shape a longer, FFT-friendly block and keep the start: arbitrary lengths can be slow.
    fft_len = scipy.fft.next_fast_len(max(num_samples, 2), real=True)
    spectrum = np.fft.rfft(rng.standard_normal(fft_len))
    freqs = np.fft.rfftfreq(fft_len)
    freqs[0] = freqs[1]  # keep DC finite
    noise = np.fft.irfft(spectrum * freqs ** (-exponent / 2.0), n=fft_len)[:num_samples]
    noise -= noise.mean()
    return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)


def mix_at_snr(
    speech: np.ndarray, speech_power: float, noise: np.ndarray, snr_db: float
) -> np.ndarray:
    """``speech + g * noise`` with ``g`` chosen so that speech_power / noise power = snr."""
    noise_power = float(np.mean(noise**2))
    gain = math.sqrt(speech_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return speech + gain * noise


def peak_normalise(audio: np.ndarray, peak: float = 0.9) -> np.ndarray:
    """float32 audio scaled to ``peak`` absolute maximum (silence stays silence)."""
    top = float(np.max(np.abs(audio))) if audio.size else 0.0
    return (audio * (peak / top)).astype(np.float32) if top > 0 else audio.astype(np.float32)
