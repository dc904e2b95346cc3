"""Header-level audio checks (``soundfile.info``: reads headers, never decodes), in parallel."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from typing import NamedTuple


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
    import soundfile as sf

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
