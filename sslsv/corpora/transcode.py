"""Decoding compressed corpora (VoxCeleb2's m4a) once to 16-bit mono WAV with ffmpeg, at the
experiment's sample rate (:mod:`sslsv.corpora.rate`)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import soundfile as sf

from sslsv.errors import DataError

log = logging.getLogger(__name__)


def ffmpeg_path() -> str:
    """The ffmpeg executable, or a clear error."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise DataError(
            "ffmpeg not found on PATH; it is needed to decode VoxCeleb2 m4a files "
            "(install it: apt-get install ffmpeg, or conda install -c conda-forge ffmpeg)"
        )
    return exe


def _convert_one(ffmpeg: str, src: Path, dst: Path, sample_rate: int) -> str | None:
    """Decode ``src`` to 16-bit mono WAV ``dst`` at ``sample_rate`` via a temp file and rename;
    error text or None."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.{os.getpid()}-{threading.get_ident()}.tmp"
    # "file:" stops ffmpeg from reading a ':' in a path as a protocol name.
    command = [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-i", f"file:{src}", "-vn", "-ac", "1", "-ar", str(sample_rate),
        "-c:a", "pcm_s16le", "-f", "wav", f"file:{tmp}",
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines()
            return f"ffmpeg failed ({done.returncode}): {lines[-1] if lines else 'no message'}"
        os.replace(tmp, dst)
        return None
    finally:
        if tmp.exists():
            tmp.unlink()


def _rate_of(wav: Path, default: int) -> int:
    """The sample rate of a decoded wav; ``default`` when unreadable (the import lists it)."""
    try:
        return sf.info(str(wav)).samplerate
    except RuntimeError:  # soundfile's errors
        return default


def convert_to_wav(jobs: list[tuple[Path, Path]], sample_rate: int, nj: int = 1) -> dict[Path, str]:
    """Decode each ``(source, wav)`` pair whose wav does not exist yet to ``sample_rate``;
    source -> error text.

    Runs ``nj`` ffmpeg processes at once; a finished wav is only ever renamed into place, so an
    interrupted run leaves no partial files and a rerun converts only what is missing. A
    cache decoded at another rate (for a config of another ``features.sample_rate``) is
    refused, by the header of its first wav, rather than completed at a second rate.
    """
    todo: list[tuple[Path, Path]] = []
    done: list[Path] = []
    for src, dst in jobs:
        if dst.is_file():
            done.append(dst)
        else:
            todo.append((src, dst))
    if done and (rate := _rate_of(done[0], sample_rate)) != sample_rate:
        raise DataError(
            f"{done[0]}: decoded at {rate} Hz, not {sample_rate}: the wav cache was made for "
            "another sample rate; give another --wav-cache, or remove this one"
        )
    log.info(
        "convert_to_wav: %d files to decode, %d already done", len(todo), len(jobs) - len(todo)
    )
    if not todo:
        return {}
    ffmpeg = ffmpeg_path()
    errors: dict[Path, str] = {}
    step = max(1, len(todo) // 20)
    with ThreadPoolExecutor(max_workers=max(1, nj)) as pool:
        futures = [pool.submit(_convert_one, ffmpeg, s, d, sample_rate) for s, d in todo]
        for i, ((src, _), future) in enumerate(zip(todo, futures), 1):
            error = future.result()
            if error:
                errors[src] = error
            if i % step == 0 or i == len(todo):
                log.info("convert_to_wav: %d/%d decoded, %d failed", i, len(todo), len(errors))
    return errors
