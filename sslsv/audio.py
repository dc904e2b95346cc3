"""The one audio reader: every stage reads utterances through these functions.

An utterance is an :class:`AudioSource`: a file, or the span ``[start, end)`` (seconds) of a
recording when its data dir has a ``segments`` file. Readers take the sample rate they must
return explicitly, resample (band-limited, torchaudio's windowed sinc) when the file is at
another rate, and keep the first channel. Headers are probed without decoding, in parallel.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf

from sslsv.errors import DataError
from sslsv.fileio import atomic_write, kaldi_sort_key

log = logging.getLogger(__name__)

#: File name endings the corpus walkers take for audio (soundfile reads all three).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
#: int16 samples are float samples times this (libsndfile's scale for 16-bit PCM): a 16-bit
#: file read as int16 holds exactly the values it reads as float32.
INT16_SCALE = 32768


@dataclass(frozen=True)
class AudioSource:
    """Where an utterance's audio lives: a file, optionally a ``[start, end)`` span (seconds;
    ``end`` None: to the end of the file)."""

    path: str
    start: float = 0.0
    end: float | None = None


def _as_source(source: AudioSource | str | os.PathLike) -> AudioSource:
    return source if isinstance(source, AudioSource) else AudioSource(os.fspath(source))


def _span(source: AudioSource, f: sf.SoundFile) -> tuple[int, int]:
    """(first frame, number of frames) of ``source`` in the open file, at its native rate."""
    rate = f.samplerate
    start = min(round(source.start * rate), f.frames)
    stop = f.frames if source.end is None else min(f.frames, round(source.end * rate))
    return start, max(0, stop - start)


def _who(utt: str) -> str:
    return f"utterance {utt!r}: " if utt else ""


def describe_source(source: AudioSource) -> str:
    """A source in words: its path, with the span when it is a segment."""
    if source.start == 0 and source.end is None:
        return source.path
    end = "end" if source.end is None else f"{source.end:g} s"
    return f"{source.path} [{source.start:g} s, {end})"


# ----------------------------------------------------------------------------- resampling


@functools.lru_cache(maxsize=8)
def _resampler(rate: int, target: int):  # -> torchaudio.transforms.Resample
    # The transform keeps its filter bank, which costs as much to build as to apply. Imported
    # here: torch costs seconds to import, and most readers never resample.
    import torchaudio.transforms

    return torchaudio.transforms.Resample(rate, target)


def resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Band-limited (windowed-sinc, torchaudio's defaults) resampling of a 1-D signal."""
    import torch

    signal = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    with torch.no_grad():
        return _resampler(rate, target)(signal).numpy()


def _resample_context(rate: int, target: int) -> tuple[int, int, int]:
    """(native block, target block, context blocks) for reading a span and resampling it.

    After reduction by the gcd, ``native`` input samples make exactly ``target`` output
    samples; a read that starts on a block boundary therefore lines up with the whole-file
    result, and ``context`` blocks either side cover the resampling filter (torchaudio's
    default: 6 zero crossings at 0.99 of the lower Nyquist), so a crop equals the matching
    slice of the resampled file.
    """
    g = math.gcd(rate, target)
    native, out = rate // g, target // g
    filter_width = math.ceil(6 * native / (min(native, out) * 0.99))
    return native, out, -(-(filter_width + native + 1) // native)


# ----------------------------------------------------------------------------- reading


def read_audio(
    source: AudioSource | str | os.PathLike, *, sample_rate: int, utt: str = ""
) -> np.ndarray:
    """A whole utterance: first channel, float32, at ``sample_rate`` (resampled when the
    file is at another rate; the output keeps the samples that fall inside the span)."""
    source = _as_source(source)
    try:
        with sf.SoundFile(source.path) as f:
            rate = f.samplerate
            first, total = _span(source, f)
            f.seek(first)
            audio = f.read(total, dtype="float32", always_2d=True)[:, 0]
    except (sf.LibsndfileError, RuntimeError) as e:
        raise DataError(f"{_who(utt)}cannot read {describe_source(source)}: {e}") from None
    if rate != sample_rate and audio.size:
        audio = resample(audio, rate, sample_rate)[: total * sample_rate // rate]
    return audio


def read_crop(
    source: AudioSource | str | os.PathLike,
    start: int,
    length: int,
    *,
    sample_rate: int,
    utt: str = "",
) -> np.ndarray:
    """``length`` samples of an utterance from ``start`` (first channel, float32), looped
    when the utterance is shorter.

    ``start`` and ``length`` count samples at ``sample_rate`` from the utterance's start; a
    start too late for the crop reads the last ``length`` samples. A file at another rate is
    read over the same time span (plus filter context) and resampled, so the crop equals the
    matching slice of :func:`read_audio`'s output. Only the crop is read: a segment of a long
    recording costs a seek. Several crops of one utterance: :func:`read_crops`.
    """
    return read_crops(source, [(start, length)], sample_rate=sample_rate, utt=utt)[0]


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Float samples (full scale 1.0) as int16 at :data:`INT16_SCALE`: rounded to the nearest
    step of 2**-15, clipped to [-1, 1 - 2**-15]. A 16-bit PCM sample comes back exactly."""
    scaled = np.rint(np.asarray(audio, dtype=np.float32) * np.float32(INT16_SCALE))
    return np.clip(scaled, -INT16_SCALE, INT16_SCALE - 1).astype(np.int16)


def read_crops(
    source: AudioSource | str | os.PathLike,
    crops: Sequence[tuple[int, int]],
    *,
    sample_rate: int,
    utt: str = "",
    dtype: type[np.generic] = np.float32,
) -> list[np.ndarray]:
    """Several ``(start, length)`` crops of one utterance, from one open of its file: what
    :func:`read_crop` gives for each, in order.

    ``dtype`` float32 (samples in [-1, 1]) or int16 (:func:`to_int16` of those; a 16-bit PCM
    file at ``sample_rate`` is read as int16 directly, which is the same values).
    """
    if dtype not in (np.float32, np.int16):
        raise ValueError(f"dtype must be numpy float32 or int16, got {dtype}")
    source = _as_source(source)
    try:
        with sf.SoundFile(source.path) as f:
            rate = f.samplerate
            offset, total = _span(source, f)
            if total == 0:
                raise DataError(f"{_who(utt)}{describe_source(source)} is empty")
            # libsndfile reads 16-bit PCM as int16 unscaled and as float divided by 32768,
            # so the int16 read is exact and saves the float conversion.
            native_int16 = dtype == np.int16 and rate == sample_rate and f.subtype == "PCM_16"
            kind = "int16" if native_int16 else "float32"

            def read(first: int, frames: int) -> np.ndarray:
                f.seek(offset + first)
                return f.read(frames, dtype=kind, always_2d=True)[:, 0]

            if rate == sample_rate:
                out = _native_crops(read, total, crops)
            else:
                out = _resampled_crops(read, total, rate, sample_rate, crops)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise DataError(f"{_who(utt)}cannot read {describe_source(source)}: {e}") from None
    if dtype == np.int16 and not native_int16:
        out = [to_int16(x) for x in out]
    return out


def _native_crops(
    read: Callable[[int, int], np.ndarray], total: int, crops: Sequence[tuple[int, int]]
) -> list[np.ndarray]:
    """Crops of a file at the asked rate: a start too late reads the last ``length`` samples,
    an utterance shorter than ``length`` is looped."""
    spans = [(0, total) if total <= length else (min(start, total - length), length)
             for start, length in crops]  # fmt: skip
    if not spans:
        return []
    # One read of the span covering every crop when that decodes no more samples than the
    # crops themselves (several crops of a short utterance): fewer seeks, and a compressed
    # file (FLAC) decodes each of its blocks once. The samples are the same either way.
    first = min(s for s, _ in spans)
    cover = max(s + n for s, n in spans) - first
    if len(spans) > 1 and cover <= sum(n for _, n in spans):
        block = read(first, cover)
        pieces = [block[s - first : s - first + n] for s, n in spans]
    else:
        pieces = [read(s, n) for s, n in spans]
    return [
        np.resize(piece, length) if len(piece) < length else piece
        for piece, (_, length) in zip(pieces, crops, strict=True)
    ]


def _resampled_crops(
    read: Callable[[int, int], np.ndarray],
    total: int,
    rate: int,
    sample_rate: int,
    crops: Sequence[tuple[int, int]],
) -> list[np.ndarray]:
    """Crops of a file at another rate: each read over its time span plus filter context and
    resampled, so that it equals the matching slice of :func:`read_audio`'s output."""
    total_out = total * sample_rate // rate
    native, out, context = _resample_context(rate, sample_rate)
    whole = None  # the resampled utterance, when one is shorter than a crop (then looped)
    result = []
    for start, length in crops:
        if total_out <= length:
            if whole is None:
                whole = resample(read(0, total), rate, sample_rate)[:total_out]
            result.append(np.resize(whole, length))
            continue
        start = min(start, total_out - length)
        first = max(0, start // out - context)
        last = min(-(-total // native), -(-(start + length) // out) + context)
        span = read(first * native, min(total, last * native) - first * native)
        skip = start - first * out
        result.append(resample(span, rate, sample_rate)[skip : skip + length])
    return result


# ----------------------------------------------------------------------------- silence

#: An utterance whose RMS level is below this is digitally silent (or nearly): a dead
#: channel, a file of zeros. Real quiet speech sits far above (-50 dBFS is very quiet).
SILENCE_DBFS = -70.0


def is_silent(audio: np.ndarray) -> bool:
    """True when ``audio`` is digitally silent or nearly (RMS below :data:`SILENCE_DBFS`)."""
    if audio.size == 0:
        return True
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return rms < 10 ** (SILENCE_DBFS / 20)


def report_silent(silent: list[str], listing: Path, on_silence: str) -> None:
    """List digitally silent utterances in ``listing``; warn, or with ``on_silence`` "error"
    refuse: their embeddings say nothing, and any two of them score near 1."""
    with atomic_write(listing) as f:
        f.writelines(f"{utt}\n" for utt in silent)
    if not silent:
        return
    message = (
        f"{len(silent)} utterances are digitally silent (RMS below {SILENCE_DBFS:g} dBFS, e.g. "
        f"{', '.join(silent[:5])}); listed in {listing}"
    )
    if on_silence == "error":
        raise DataError(message)
    log.warning("%s", message)


# ----------------------------------------------------------------------------- headers


class AudioInfo(NamedTuple):
    """What a file header says; ``error`` is set (and the rest zero) when it is unreadable."""

    frames: int = 0
    sample_rate: int = 0
    channels: int = 0
    error: str | None = None
    #: Set when the duration comes from a table rather than the header (``frames`` is then
    #: its rounding to samples).
    seconds: float | None = None

    @property
    def duration(self) -> float:
        if self.seconds is not None:
            return self.seconds
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def probe_audio_file(path: str) -> AudioInfo:
    """Read one header; any failure becomes ``AudioInfo(error=...)`` rather than an exception."""
    try:
        info = sf.info(path)
    except Exception as e:  # every failure is reported per file by the caller
        message = str(e).strip().replace("\n", " ") or type(e).__name__
        return AudioInfo(error=message)
    if info.samplerate <= 0:
        return AudioInfo(error=f"bad sample rate {info.samplerate}")
    return AudioInfo(int(info.frames), int(info.samplerate), int(info.channels))


def _probe_chunk(paths: list[str]) -> list[AudioInfo]:
    return [probe_audio_file(p) for p in paths]


def default_jobs() -> int:
    """Worker processes used when the caller does not say: the CPUs, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def probe_audio_files(paths: list[str], nj: int = 1) -> list[AudioInfo]:
    """:func:`probe_audio_file` for each path, in order, using ``nj`` processes."""
    if nj < 1:
        raise ValueError(f"nj must be >= 1, got {nj}")
    # Below a few hundred files a pool costs more than it saves.
    if nj == 1 or len(paths) < 256:
        return _probe_chunk(paths)
    size = max(64, -(-len(paths) // (nj * 8)))
    chunks = [paths[i : i + size] for i in range(0, len(paths), size)]
    with ProcessPoolExecutor(max_workers=nj) as pool:
        return [info for chunk in pool.map(_probe_chunk, chunks) for info in chunk]


# ----------------------------------------------------------------------------- finding files


def find_audio_files(folder: str | os.PathLike) -> list[Path]:
    """Audio files (:data:`AUDIO_EXTENSIONS`) under ``folder``, in ``LC_ALL=C`` path order.

    Links are followed, each real folder once (a link loop ends); hidden files and folders
    are skipped.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    found, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames.clear()
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [
            Path(dirpath) / name
            for name in filenames
            if not name.startswith(".") and name.lower().endswith(AUDIO_EXTENSIONS)
        ]
    return sorted(found, key=lambda p: kaldi_sort_key(str(p)))
