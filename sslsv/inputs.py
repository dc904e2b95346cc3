"""The one input normaliser: user audio and protocol options, checked before any embedding.

Every path that turns audio a user hands over into embeddings goes through here: the API
(:mod:`sslsv.api`: ``embed``, ``verify``), the commands built on it (``sslsv.bin.verify``,
``sslsv.bin.embed``) and, for the minimum length, extraction (:mod:`sslsv.extraction`). A bad
input is one :class:`sslsv.errors.DataError` line naming it (a protocol option: a
:class:`sslsv.errors.ConfigError`), never a result that is silently wrong:

- audio is a file path (``str`` or ``os.PathLike``; first channel, resampled to the model's
  rate, as :mod:`sslsv.audio` reads every file), an :class:`sslsv.audio.AudioSource`, or an
  array or tensor of real samples: float (full scale 1.0) as it is; int16, int32 and uint8
  scaled to [-1, 1] as soundfile reads those PCM formats; bool, complex, other integer
  types, strings and objects refused. ``bytes`` are refused: raw file contents and a path
  spelled as bytes look alike;
- an array is 1-D (samples) or 2-D (channels, samples), of which the first channel is kept,
  as for files; a 2-D array with more rows than columns is refused (it looks like
  soundfile's (samples, channels), whose first row is one sample of every channel);
- a sample rate is a whole number of Hz in [:data:`MIN_RATE`, :data:`MAX_RATE`];
- samples are finite; an input shorter than one front-end window (:func:`min_samples`) is
  refused; a digitally silent one (:func:`sslsv.audio.is_silent`, the rule of feature
  computation and extraction) is refused, or with ``on_silence`` "warn" logged and embedded;
- protocol options (``crop_seconds``, ``num_crops``, ``batch_size``) are checked against
  the ranges that :class:`sslsv.config.schema.ExtractConfig` declares for the config.
"""

from __future__ import annotations

import dataclasses
import logging
import numbers
import os
from typing import Any

import numpy as np
import torch

from sslsv.audio import (
    INT16_SCALE,
    SILENCE_DBFS,
    AudioSource,
    describe_source,
    is_silent,
    probe_audio_file,
    read_audio,
    resample,
)
from sslsv.config.load import from_plain
from sslsv.config.schema import ExtractConfig, FeaturesConfig
from sslsv.errors import DataError

log = logging.getLogger(__name__)

#: The lowest rate accepted for audio: the lowest a model may have (``features.sample_rate``'s
#: minimum, read from the schema). Resampling makes ``model_rate / rate`` samples of each
#: input sample, so this also bounds the growth (x16 to 16 kHz): a rate of 1 Hz would turn
#: a few seconds of samples into gigabytes.
MIN_RATE: int = next(
    int(f.metadata["bounds"]["minimum"])
    for f in dataclasses.fields(FeaturesConfig)
    if f.name == "sample_rate"
)
#: The highest rate accepted: the highest that audio interfaces and formats use (DXD,
#: 384 kHz). The resampling filter grows with ``rate / model_rate``; above this, a rate is a
#: mistake (a sample count, milliseconds) rather than audio.
MAX_RATE = 384_000

#: Integer samples -> float: (offset, full scale), as soundfile reads 8-bit unsigned, 16-bit
#: and 32-bit PCM (so an int16 array embeds as the 16-bit file it came from).
INTEGER_SCALES: dict[np.dtype, tuple[int, int]] = {
    np.dtype(np.uint8): (128, 128),
    np.dtype(np.int16): (0, INT16_SCALE),
    np.dtype(np.int32): (0, 2**31),
}

#: Float samples whose peak exceeds this are logged: full scale is 1.0, and integer samples
#: converted to float without scaling (peaks in the thousands) change what a level-sensitive
#: model (``stats``) sees.
LOUD_PEAK = 2.0

ON_SILENCE = ("error", "warn")


# --------------------------------------------------------------------------- the front end


def min_samples(front_end: FeaturesConfig) -> int:
    """The fewest samples a model with this front end embeds: one analysis window, and more
    than the ``n_fft // 2`` samples that its centred frames reflect-pad on each side (torch
    refuses a reflection longer than the signal)."""
    return max(front_end.win_length, front_end.n_fft // 2 + 1)


def min_frames(front_end: FeaturesConfig) -> int:
    """:func:`min_samples` as log-mel frames (the feature arks' ``feats.scp``): the frames that
    many samples make (centred frames: ``samples // hop_length + 1``)."""
    return min_samples(front_end) // front_end.hop_length + 1


def check_length(length: int, front_end: FeaturesConfig, name: str, frames: bool = False) -> None:
    """A :class:`DataError` naming ``name`` when ``length`` samples (``frames``: log-mel
    frames) are shorter than one front-end window."""
    least = min_frames(front_end) if frames else min_samples(front_end)
    if length >= least:
        return
    rate = front_end.sample_rate
    window = f"{min_samples(front_end)} samples, {1000 * min_samples(front_end) / rate:g} ms"
    unit = "frames" if frames else f"samples ({1000 * length / rate:g} ms)"
    raise DataError(
        f"{name}: {length} {unit} at {rate} Hz, shorter than one front-end window "
        f"({window}{f'; {least} frames' if frames else ''}): too short to embed"
    )


# --------------------------------------------------------------------------- options


def check_rate(rate: Any, default: int) -> int:
    """``rate`` (Hz; None: ``default``, the model's) as an int, or a :class:`DataError`: a
    whole number in [:data:`MIN_RATE`, :data:`MAX_RATE`]. 0 is not "the default"."""
    if rate is None:
        return default
    if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, numbers.Real):
        raise DataError(f"sample_rate {rate!r}: not a number of Hz")
    if not float(rate).is_integer():
        raise DataError(f"sample_rate {rate!r}: not a whole number of Hz")
    if not MIN_RATE <= int(rate) <= MAX_RATE:
        raise DataError(
            f"sample_rate {rate!r}: outside {MIN_RATE} to {MAX_RATE} Hz (None: the model's "
            f"rate, {default} Hz)"
        )
    return int(rate)


def protocol(base: ExtractConfig, front_end: FeaturesConfig, **options: Any) -> ExtractConfig:
    """``base`` (a model's ``extract:`` section) with ``options`` (``crop_seconds``,
    ``num_crops``, ``batch_size``) over it, checked as the config's keys are (the ranges of
    :class:`ExtractConfig`); crops shorter than one front-end window are refused."""
    unknown = set(options) - {"crop_seconds", "num_crops", "batch_size"}
    if unknown:
        raise DataError(
            f"unknown protocol option(s): {', '.join(sorted(unknown))} (known: crop_seconds, "
            "num_crops, batch_size)"
        )
    # numpy scalars as Python numbers: the config's type check takes int and float only.
    given = {k: v.item() if isinstance(v, np.generic) else v for k, v in options.items()}
    merged = from_plain(ExtractConfig, {**dataclasses.asdict(base), **given}, "", "protocol")
    if merged.crop_seconds:
        crop = round(merged.crop_seconds * front_end.sample_rate)
        check_length(crop, front_end, f"crop_seconds {merged.crop_seconds:g}")
    return merged


# --------------------------------------------------------------------------- audio


def _source_name(item: str | os.PathLike | AudioSource) -> str:
    if isinstance(item, AudioSource):
        return describe_source(item)
    return os.fsdecode(os.fspath(item))


def _read_file(item: str | os.PathLike | AudioSource, model_rate: int, name: str) -> np.ndarray:
    source = item if isinstance(item, AudioSource) else AudioSource(name)
    if not source.path:
        raise DataError("an empty path: give an audio file")
    info = probe_audio_file(source.path)
    if info.error is None and not MIN_RATE <= info.sample_rate <= MAX_RATE:
        # Checked before reading: resampling from such a rate is what costs gigabytes.
        raise DataError(
            f"{name}: sample rate {info.sample_rate} Hz, outside {MIN_RATE} to {MAX_RATE} Hz"
        )
    return read_audio(source, sample_rate=model_rate)  # unreadable: a DataError naming it


def _samples(x: Any, name: str) -> np.ndarray:
    """An array or tensor of samples as a 1-D float32 array at full scale 1.0."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().resolve_conj()
        # numpy has no bfloat16; every other dtype converts as it is (and is checked below).
        x = (x.float() if x.dtype == torch.bfloat16 else x).numpy()
    try:
        array = np.asarray(x)
    except (TypeError, ValueError) as e:  # ragged lists, objects numpy cannot read
        raise DataError(f"{name}: not an array of samples ({e})") from None
    kind = array.dtype.kind
    if array.dtype == object or kind not in "biufc":
        raise DataError(
            f"{name}: {type(x).__name__} of {array.dtype} is not audio: give a file path "
            "(str or Path), an array of samples, or a list of those"
        )
    if kind == "b":
        raise DataError(f"{name}: bool samples are not audio")
    if kind == "c":
        raise DataError(f"{name}: complex samples are not audio (give the real signal)")
    if kind in "iu" and array.dtype not in INTEGER_SCALES:
        raise DataError(
            f"{name}: {array.dtype} samples have no standard full scale: give float samples "
            "(full scale 1.0) or int16, int32 or uint8 PCM"
        )
    if array.ndim == 2:
        channels, length = array.shape
        if channels >= length:
            raise DataError(
                f"{name}: shape {array.shape} is not (channels, samples) (more rows than "
                "columns: soundfile's (samples, channels)? give x[:, 0] or x.T)"
            )
        array = array[0]  # the first channel, as files are read
    elif array.ndim != 1:
        raise DataError(
            f"{name}: a waveform is 1-D (samples) or 2-D (channels, samples), got shape "
            f"{array.shape} (several inputs: a list of them)"
        )
    if kind in "iu":
        offset, scale = INTEGER_SCALES[array.dtype]
        wave = (array.astype(np.float32) - np.float32(offset)) / np.float32(scale)
        return wave.astype(np.float32)
    with np.errstate(over="ignore"):  # float64 beyond float32's range: inf, refused next
        return array.astype(np.float32)


def waveform(x: Any, sample_rate: int | None, model_rate: int, name: str) -> np.ndarray:
    """An input (a file path, an :class:`AudioSource`, an array or tensor of samples at
    ``sample_rate``, default ``model_rate``) as a 1-D float32 waveform at ``model_rate``:
    read or converted (see the module docstring), checked non-empty and finite.

    ``name`` names an array in messages ("input 3"); a file is named by its path."""
    if isinstance(x, (bytes, bytearray, memoryview)):
        raise DataError(
            f"{name}: bytes are neither a path nor samples: give a path as str or Path, or "
            "decode the audio first (soundfile.read(io.BytesIO(data)))"
        )
    if isinstance(x, (str, os.PathLike, AudioSource)):
        name = _source_name(x)
        wave = _read_file(x, model_rate, name)
    else:
        rate = check_rate(sample_rate, model_rate)
        wave = _samples(x, name)
        if not np.isfinite(wave).all():
            # Before resampling, which would smear one bad sample over its neighbours.
            raise DataError(f"{name}: non-finite audio samples (nan or inf)")
        if wave.size and float(np.max(np.abs(wave))) > LOUD_PEAK:
            log.warning(
                "%s: float samples peak at %g, full scale is 1.0 (int16 samples converted "
                "to float unscaled? divide them by 32768, or pass the int16 array)",
                name, float(np.max(np.abs(wave))),
            )  # fmt: skip
        if rate != model_rate and wave.size:
            wave = resample(wave, rate, model_rate)
    if wave.size == 0:
        raise DataError(f"{name}: no audio samples")
    if not np.isfinite(wave).all():
        raise DataError(f"{name}: non-finite audio samples (nan or inf)")
    return wave


def check_usable(
    wave: np.ndarray, front_end: FeaturesConfig, name: str, on_silence: str = "error"
) -> None:
    """Refuse a waveform (at the model's rate) shorter than one front-end window, and a
    digitally silent one (feature computation's and extraction's rule: RMS below
    :data:`sslsv.audio.SILENCE_DBFS`) unless ``on_silence`` is "warn": its embedding says
    nothing of a speaker, and any two silent inputs score near 1, "the same speaker"."""
    if on_silence not in ON_SILENCE:
        raise DataError(f"on_silence {on_silence!r}: one of {', '.join(ON_SILENCE)}")
    check_length(len(wave), front_end, name)
    if is_silent(wave):
        message = (
            f"{name}: digitally silent (RMS below {SILENCE_DBFS:g} dBFS): its embedding says "
            "nothing of a speaker, and two silent inputs score as the same speaker"
        )
        if on_silence == "error":
            raise DataError(message)
        log.warning("%s", message)


def user_audio(
    x: Any,
    sample_rate: int | None,
    front_end: FeaturesConfig,
    name: str,
    on_silence: str = "error",
) -> np.ndarray:
    """:func:`waveform` then :func:`check_usable`: what the API embeds for one input."""
    wave = waveform(x, sample_rate, front_end.sample_rate, name)
    if isinstance(x, (str, os.PathLike, AudioSource)):
        name = _source_name(x)
    check_usable(wave, front_end, name, on_silence)
    return wave
