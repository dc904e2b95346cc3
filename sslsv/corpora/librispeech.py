"""LibriSpeech (and its layout: ``SPK/CHAPTER/SPK-CHAPTER-UTT.flac``); session = chapter."""

from __future__ import annotations

import re
from pathlib import Path

from sslsv.corpora.importer import (
    ImportOptions,
    ImportReport,
    Recording,
    audio_path,
    import_recordings,
)
from sslsv.datadir.io import PathLike, sanitize_id
from sslsv.errors import DataError


def list_librispeech(root: PathLike) -> list[Recording]:
    """``ROOT/SPK/CHAPTER/SPK-CHAPTER-UTT.flac``; session = chapter."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: LibriSpeech folder not found")
    items = []
    for flac in sorted(root.glob("*/*/*.flac")):
        spk, chapter = flac.parent.parent.name, flac.parent.name
        if not re.fullmatch(rf"{re.escape(spk)}-{re.escape(chapter)}-\d+", flac.stem):
            raise DataError(f"{flac}: expected the name {spk}-{chapter}-NNNN.flac")
        items.append(Recording(sanitize_id(flac.stem), sanitize_id(spk), audio_path(flac), chapter))
    if not items:
        raise DataError(
            f"{root}: no SPK/CHAPTER/*.flac files; give a subset folder such as "
            "LibriSpeech/train-clean-5"
        )
    return items


def prepare_librispeech(
    root: PathLike, dest: PathLike, options: ImportOptions | None = None
) -> ImportReport:
    """Import a LibriSpeech subset; writes ``utt2session`` (the chapter)."""
    return import_recordings(list_librispeech(root), dest, options)
