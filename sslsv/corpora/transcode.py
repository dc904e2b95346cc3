"""Decoding compressed corpora (VoxCeleb2's m4a) once to 16-bit mono WAV with ffmpeg."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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
    """Decode ``src`` to 16-bit mono WAV ``dst`` via a temp file and rename; error text or None."""
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


def convert_to_wav(
    jobs: list[tuple[Path, Path]], nj: int = 1, sample_rate: int = 16000
) -> dict[Path, str]:
    """Decode each ``(source, wav)`` pair whose wav does not exist yet; source -> error text.

    Runs ``nj`` ffmpeg processes at once; a finished wav is only ever renamed into place, so an
    interrupted run leaves no partial files and a rerun converts only what is missing.
    """
    todo = [(s, d) for s, d in jobs if not d.is_file()]
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
