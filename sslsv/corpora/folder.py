"""Corpora without a known layout: a folder per speaker, or a CSV/TSV list of files."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

from sslsv.audio import AUDIO_EXTENSIONS, find_audio_files
from sslsv.corpora.importer import (
    ImportOptions,
    ImportReport,
    Recording,
    audio_path,
    import_recordings,
)
from sslsv.datadir.io import PathLike, sanitize_id
from sslsv.errors import DataError
from sslsv.fileio import utf8_text

log = logging.getLogger(__name__)


def list_folder(root: PathLike) -> list[Recording]:
    """``ROOT/SPEAKER/**/*.{wav,flac,ogg}``; session = first sub-folder when every file has one."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    items, sessions = [], []
    loose = [p for p in root.iterdir() if p.is_file() and p.name.lower().endswith(AUDIO_EXTENSIONS)]
    if loose:
        log.warning(
            "%s: %d audio files directly in the root are ignored (no speaker folder), e.g. %s",
            root,
            len(loose),
            loose[0].name,
        )
    for spk_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        spk = sanitize_id(spk_dir.name)
        for path in find_audio_files(spk_dir):
            rel = path.relative_to(spk_dir)
            rel_id = sanitize_id("-".join([*rel.parts[:-1], path.stem]))
            sessions.append(sanitize_id(rel.parts[0]) if len(rel.parts) > 1 else None)
            items.append(Recording(f"{spk}-{rel_id}", spk, audio_path(path)))
    if not items:
        raise DataError(f"{root}: no SPEAKER/**/*.wav, *.flac or *.ogg files")
    if all(s is not None for s in sessions):
        items = [Recording(r.utt, r.speaker, r.path, s) for r, s in zip(items, sessions)]
    elif any(s is not None for s in sessions):
        log.warning(
            "%s: some files sit directly in their speaker folder, others in sub-folders: "
            "no utt2session written",
            root,
        )
    return items


def prepare_folder(
    root: PathLike, dest: PathLike, options: ImportOptions | None = None
) -> ImportReport:
    """Import any ``SPEAKER/**/*.{wav,flac,ogg}`` tree."""
    return import_recordings(list_folder(root), dest, options)


def list_csv(list_file: PathLike) -> list[Recording]:
    """A CSV (or TSV) list with header ``path,speaker`` and optional ``utt``, ``session``.

    Relative paths are resolved against the list's folder. Without ``utt`` the id is the path
    relative to the files' common folder, with folders named like the speaker left out, ``/``
    -> ``-`` and the extension dropped; any utterance id is prefixed with ``SPEAKER-`` unless
    it already is.
    """
    list_file = Path(list_file)
    if not list_file.is_file():
        raise DataError(f"{list_file}: list file not found")
    with utf8_text(list_file, newline="") as f:
        header = f.readline()
        delimiter = "\t" if list_file.suffix.lower() == ".tsv" or "\t" in header else ","
        f.seek(0)
        reader = csv.DictReader(f, delimiter=delimiter)
        columns = [c.strip() for c in reader.fieldnames or []]
        for required in ("path", "speaker"):
            if required not in columns:
                raise DataError(f"{list_file}:1: header {columns} has no {required!r} column")
        reader.fieldnames = columns
        rows = []
        for lineno, row in enumerate(reader, 2):
            values = {k: (row.get(k) or "").strip() for k in ("path", "speaker", "utt", "session")}
            for key in ("path", "speaker", *(k for k in ("utt", "session") if k in columns)):
                if not values[key]:
                    raise DataError(f"{list_file}:{lineno}: empty {key!r} field")
            rows.append((lineno, values))
    if not rows:
        raise DataError(f"{list_file}: no rows")
    paths = [
        Path(v["path"]) if Path(v["path"]).is_absolute() else list_file.parent / v["path"]
        for _, v in rows
    ]
    paths = [Path(audio_path(p)) for p in paths]
    common = Path(os.path.commonpath([str(p.parent) for p in paths]))
    items = []
    for (_lineno, values), path in zip(rows, paths):
        spk = sanitize_id(values["speaker"])
        if values["utt"]:
            utt = sanitize_id(values["utt"])
        else:
            *folders, name = path.relative_to(common).parts
            parts = [f for f in folders if sanitize_id(f) != spk] + [Path(name).stem]
            utt = sanitize_id("-".join(parts))
        if not utt.startswith(f"{spk}-"):
            utt = f"{spk}-{utt}"
        session = sanitize_id(values["session"]) if "session" in columns else None
        items.append(Recording(utt, spk, str(path), session))
    return items


def prepare_csv(
    list_file: PathLike, dest: PathLike, options: ImportOptions | None = None
) -> ImportReport:
    """Import the files of a CSV/TSV list (see :func:`list_csv`)."""
    return import_recordings(list_csv(list_file), dest, options)
