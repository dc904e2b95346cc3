"""Augmentation corpora: MUSAN (noise, speech, music; virtual chunks) and RIRS_NOISES."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from sslsv.audio import find_audio_files
from sslsv.corpora.importer import (
    ImportOptions,
    ImportReport,
    Recording,
    audio_path,
    import_recordings,
)
from sslsv.datadir.io import PathLike, sanitize_id
from sslsv.errors import DataError

MUSAN_CATEGORIES = ("noise", "speech", "music")


def list_musan(root: PathLike, category: str) -> list[Recording]:
    """``ROOT/{category}/<subset>/*.wav``; each file is its own speaker."""
    folder = Path(root) / category
    if not folder.is_dir():
        raise DataError(f"{folder}: MUSAN {category} folder not found (expected ROOT/{category}/)")
    items = []
    for path in find_audio_files(folder):
        rec = sanitize_id(path.stem)
        items.append(Recording(rec, rec, audio_path(path)))
    if not items:
        raise DataError(f"{folder}: no audio files")
    return items


def prepare_musan(
    root: PathLike,
    dest_prefix: PathLike,
    chunk_seconds: float = 6.0,
    categories: Iterable[str] = MUSAN_CATEGORIES,
    options: ImportOptions | None = None,
) -> dict[str, ImportReport]:
    """Import MUSAN into ``{dest_prefix}_noise``, ``_speech``, ``_music``.

    Chunks are virtual: ``wav.scp`` lists whole files and ``segments`` cuts them into
    ``chunk_seconds`` pieces (a short tail joins the previous piece); read them with
    :func:`sslsv.datadir.io.read_audio_sources`. ``chunk_seconds=0``: whole files, no segments.
    """
    reports = {}
    for category in categories:
        if category not in MUSAN_CATEGORIES:
            raise DataError(f"unknown MUSAN category {category!r}; choose from {MUSAN_CATEGORIES}")
        dest = Path(f"{os.fspath(dest_prefix)}_{category}")
        reports[category] = import_recordings(
            list_musan(root, category), dest, options, chunk_seconds
        )
    return reports


def list_rirs(root: PathLike, include_real: bool = False) -> list[Recording]:
    """RIRS_NOISES: ``simulated_rirs/{small,medium,large}room/RoomNNN/*.wav`` (speaker =
    ``<size>-RoomNNN``) and, optionally, ``real_rirs_isotropic_noises/*rir*.wav``."""
    root = Path(root)
    if not (root / "simulated_rirs").is_dir() and (root / "RIRS_NOISES").is_dir():
        root = root / "RIRS_NOISES"
    sim = root / "simulated_rirs"
    if not sim.is_dir():
        raise DataError(f"{sim}: not found; ROOT must be the RIRS_NOISES folder")
    items = []
    for room_type in ("smallroom", "mediumroom", "largeroom"):
        for path in sorted((sim / room_type).glob("*/*.wav")):
            spk = sanitize_id(f"{room_type}-{path.parent.name}")
            stem = sanitize_id(path.stem)
            room = sanitize_id(path.parent.name)
            utt = f"{room_type}-{stem}" if stem.startswith(f"{room}-") else f"{spk}-{stem}"
            items.append(Recording(utt, spk, audio_path(path)))
    if include_real:
        real = root / "real_rirs_isotropic_noises"
        if not real.is_dir():
            raise DataError(f"{real}: not found (needed for the real RIRs)")
        for path in sorted(real.glob("*rir*.wav")):
            utt = sanitize_id(f"real-{path.stem}")
            items.append(Recording(utt, utt, audio_path(path)))
    if not items:
        raise DataError(f"{sim}: no {{small,medium,large}}room/RoomNNN/*.wav files")
    return items


def prepare_rirs(
    root: PathLike, dest: PathLike, include_real: bool = False, options: ImportOptions | None = None
) -> ImportReport:
    """Import RIRS_NOISES room impulse responses.

    RIRs are short, so the default options keep every non-empty file (``min_duration`` 0).
    """
    options = options or ImportOptions(min_duration=0.0)
    return import_recordings(list_rirs(root, include_real), dest, options)
