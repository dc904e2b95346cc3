"""Corpus importers: a corpus on disk -> a validated Kaldi data dir.

Every importer lists the corpus' audio files as :class:`Recording` rows (utterance ids start
with the speaker id, so ``LC_ALL=C`` orders of ``utt2spk`` and ``spk2utt`` agree) and hands
them to :func:`import_recordings`, which checks every file's header and writes ``wav.scp``,
``utt2spk``, ``spk2utt``, ``utt2dur`` (plus ``utt2session``, ``segments``, trial lists when the
corpus has them) and ``excluded.txt``.

Audio policy (header level, fast, parallel):
- unreadable, or zero samples: excluded and counted as *bad*; the import fails when more than
  ``max_bad_fraction`` of the files are bad.
- shorter than ``min_duration``: excluded (not bad).
- sample rate other than ``sample_rate``: an error naming the files, unless ``allow_resample``;
  then ``utt2sr`` records every file's rate and readers must resample.
- more than one channel: kept; readers use the first channel; the count is logged.
- every excluded file is listed in ``DEST/excluded.txt`` as ``utt<TAB>reason<TAB>path``.
- ``check_audio=False`` opens no file: durations come from a given table (the rules above
  that need only a duration still apply) or ``utt2dur`` is left out, with a log line.

The destination is built in a temporary folder and swapped in at the end, so a failed import
leaves any previous ``DEST`` untouched.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import logging
import math
import os
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from sslsv.data.audio_check import AudioInfo, default_jobs, probe_audio_files
from sslsv.data.datadir import (
    _check_replaceable,
    _new_tmp_dir,
    _replace_dir,
    format_seconds,
    spk2utt_from_utt2spk,
    validate_data_dir,
    write_trials,
)
from sslsv.fileio import DataError, atomic_write, read_table, write_table

log = logging.getLogger(__name__)

PathLike = str | os.PathLike
Trial = tuple[str, str, bool]

_ODD_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def sanitize_id(text: str) -> str:
    """An id safe for Kaldi tables: runs of characters other than ``A-Za-z0-9_.-`` -> ``_``."""
    return _ODD_CHARS.sub("_", text)


class Recording(NamedTuple):
    """One audio file of a corpus, as an importer found it (a tuple: cheap by the million)."""

    utt: str
    speaker: str
    path: str
    session: str | None = None
    #: Set when the file is known to be bad before any header is read (failed conversion).
    error: str | None = None


@dataclass
class ImportOptions:
    """Audio checks and speaker selection shared by all importers."""

    min_duration: float = 0.5
    max_bad_fraction: float = 0.01
    sample_rate: int = 16000
    allow_resample: bool = False
    nj: int = field(default_factory=default_jobs)
    #: Keep only these speakers (an unknown one is an error).
    speakers: Collection[str] | None = None
    #: Drop these speakers (one that is not in the corpus is only logged).
    exclude_speakers: Collection[str] | None = None
    #: False: open no audio file (paths need not exist). Durations then come from
    #: ``durations`` (utterance id -> seconds; every utterance must have one) or, without it,
    #: no ``utt2dur`` is written; rates and channels are taken on trust.
    check_audio: bool = True
    durations: Mapping[str, float] | None = None


@dataclass
class ImportReport:
    """What an import wrote and left out."""

    dest: Path
    utterances: int
    speakers: int
    excluded: list[tuple[str, str, str]]  # (utt, reason, path)
    bad: int
    multichannel: int
    trials: dict[str, int] = field(default_factory=dict)  # file name -> lines written


def read_id_file(path: PathLike) -> list[str]:
    """First column of each non-empty line (speaker lists)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: list file not found")
    with open(path, encoding="utf-8") as f:
        return [line.split()[0] for line in f if line.strip()]


def read_durations(path: PathLike) -> dict[str, float]:
    """A ``utt2dur``-style table (``utt seconds``); bad lines are errors naming file and line."""
    durations: dict[str, float] = {}
    for lineno, (utt, value) in enumerate(read_table(path), 1):
        try:
            seconds = float(value)
        except ValueError:
            seconds = float("nan")
        if not 0 <= seconds < float("inf"):
            raise DataError(f"{path}:{lineno}: utterance {utt!r}: bad duration {value!r}")
        if utt in durations:
            raise DataError(f"{path}:{lineno}: duplicate utterance {utt!r}")
        durations[utt] = seconds
    return durations


def _audio_path(path: PathLike) -> str:
    """Absolute path as it goes into wav.scp; refuses what a text table cannot hold."""
    text = os.path.abspath(path)
    if "\n" in text or text != text.strip():
        raise DataError(f"{text!r}: a path with a newline or edge whitespace cannot go in wav.scp")
    return text


def _select_speakers(items: list[Recording], options: ImportOptions) -> list[Recording]:
    present = {r.speaker for r in items}
    if options.speakers is not None:
        wanted = set(options.speakers)
        unknown = sorted(wanted - present)
        if unknown:
            raise DataError(
                f"--speakers: {len(unknown)} speakers not in the corpus: {unknown[:10]}"
            )
        items = [r for r in items if r.speaker in wanted]
    if options.exclude_speakers is not None:
        excluded = set(options.exclude_speakers)
        absent = sorted(excluded - present)
        if absent:
            log.info("exclude-speakers: %d listed speakers are not in this corpus", len(absent))
        before = len(items)
        items = [r for r in items if r.speaker not in excluded]
        log.info("exclude-speakers: dropped %d utterances", before - len(items))
    return items


def _check_unique(items: list[Recording]) -> None:
    seen: dict[str, str] = {}
    for r in items:
        for what, value in (("utterance", r.utt), ("speaker", r.speaker)):
            if not value or value.split() != [value]:
                raise DataError(f"{r.path}: bad {what} id {value!r} (empty or with whitespace)")
        if r.session is not None and (not r.session or r.session.split() != [r.session]):
            raise DataError(f"{r.path}: bad session id {r.session!r}")
        if not r.utt.startswith(r.speaker):
            raise DataError(f"{r.path}: utterance id {r.utt!r} must start with {r.speaker!r}")
        if r.utt in seen:
            raise DataError(
                f"utterance id {r.utt!r} names two files: {seen[r.utt]!r} and {r.path!r} "
                "(ids drop the extension and map odd characters to '_'; rename one, or import "
                "a CSV list with an explicit utt column)"
            )
        seen[r.utt] = r.path


def _chunk(
    frames: int, rate: int, chunk_seconds: float, min_seconds: float
) -> list[tuple[int, int]]:
    """[start, end) sample spans of ``chunk_seconds``; a tail under ``min_seconds`` joins the
    previous chunk, so no chunk is shorter than that unless the whole file is."""
    size = max(1, round(chunk_seconds * rate))
    spans = [(s, min(s + size, frames)) for s in range(0, frames, size)]
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] < max(1, round(min_seconds * rate)):
        tail = spans.pop()
        spans[-1] = (spans[-1][0], tail[1])
    return spans


def _unchecked_infos(
    items: list[Recording], options: ImportOptions, dest: Path, chunk_seconds: float
) -> list[AudioInfo]:
    """What the audio checks would have found, without opening a file (``check_audio`` off).

    With ``durations``, a file's frame count is its duration at ``sample_rate`` (so the
    min-duration rule and chunking still apply); without, every file passes as one frame long
    and no ``utt2dur`` is written.
    """
    rate = options.sample_rate
    if options.durations is None:
        if chunk_seconds > 0:
            raise DataError(
                f"{dest}: cutting into chunks needs durations: give them (--utt2dur FILE) or "
                "check the audio"
            )
        log.info(
            "%s: audio checks off and no durations given: no utt2dur written and no "
            "min-duration rule applied (compute utt2dur later with utils/data/get_utt2dur.sh)",
            dest,
        )
        return [AudioInfo(error=r.error) if r.error else AudioInfo(1, rate, 1) for r in items]
    unused = len(options.durations) - sum(r.utt in options.durations for r in items)
    if unused:
        log.info("%s: %d entries of the duration table name no utterance here", dest, unused)
    durations = options.durations
    missing = [r.utt for r in items if r.error is None and r.utt not in durations]
    if missing:
        raise DataError(
            f"{dest}: the duration table has no entry for {len(missing)} of {len(items)} "
            f"utterances, e.g. {missing[:5]}; every utterance needs one when audio checks are off"
        )
    bad = [r.utt for r in items if r.error is None and not 0 <= durations[r.utt] < math.inf]
    if bad:
        raise DataError(f"{dest}: utterance {bad[0]!r}: bad duration {durations[bad[0]]!r}")
    # A million infos are built here: tuple.__new__ skips the NamedTuple constructor's
    # argument handling, most of its cost (the tuples below have every field, in order).
    # A positive duration that rounds to no sample is still not empty.
    make = functools.partial(tuple.__new__, AudioInfo)
    infos = [
        make((0, 0, 0, r.error, None))
        if r.error is not None
        else make((max(1, round(s * rate)) if s > 0 else 0, rate, 1, None, s))
        for r in items
        for s in (durations.get(r.utt, 0.0),)
    ]
    log.info("%s: audio checks off: durations from the given table", dest)
    return infos


def import_recordings(
    items: Iterable[Recording],
    dest: PathLike,
    options: ImportOptions | None = None,
    chunk_seconds: float = 0.0,
    trial_lists: dict[str, tuple[Path, list[Trial]]] | None = None,
) -> ImportReport:
    """Check the audio of ``items`` and write the data dir ``dest`` (see the module docstring).

    ``chunk_seconds > 0`` writes virtual chunks: ``wav.scp`` keyed by recording (= the item's
    utt id) and a ``segments`` file with one utterance ``<recording>-NNNN`` per chunk.
    ``trial_lists``: trial file name -> (source list, trials); every utterance they name must
    be among ``items`` (an error otherwise); trials naming an excluded utterance are dropped
    and written to ``excluded_trials.txt``.
    """
    options = options or ImportOptions()
    dest = Path(dest)
    # Plain str order is code point order = the UTF-8 byte order of LC_ALL=C (kaldi_sort_key),
    # and much cheaper for a million ids.
    items = sorted(items, key=lambda r: r.utt)
    if not items:
        raise DataError(f"{dest}: no audio files found to import")
    _check_unique(items)
    _check_replaceable(dest)
    known = {r.utt for r in items}
    for name, (source, trials) in (trial_lists or {}).items():
        for lineno, (enroll, test, _) in enumerate(trials, 1):
            for utt in (enroll, test):
                if utt not in known:
                    raise DataError(
                        f"{source}:{lineno}: utterance {utt!r} (for {name}) is not in the "
                        "corpus being imported; does the list belong to another part of it?"
                    )
    items = _select_speakers(items, options)
    if not items:
        raise DataError(f"{dest}: no utterance left after speaker selection")

    if options.check_audio:
        to_probe = [r for r in items if r.error is None]
        probed = iter(probe_audio_files([r.path for r in to_probe], nj=options.nj))
        infos = [AudioInfo(error=r.error) if r.error else next(probed) for r in items]
    else:
        infos = _unchecked_infos(items, options, dest, chunk_seconds)

    with_durations = options.check_audio or options.durations is not None
    kept: list[tuple[Recording, AudioInfo]] = []
    excluded: list[tuple[str, str, str]] = []
    wrong_rate: list[tuple[str, int]] = []
    bad = multichannel = 0
    for r, info in zip(items, infos):
        if info.error:
            excluded.append((r.utt, f"unreadable: {info.error}", r.path))
            bad += 1
        elif info.frames == 0:
            excluded.append((r.utt, "empty: 0 samples", r.path))
            bad += 1
        elif with_durations and info.duration < options.min_duration:
            why = f"too short: {info.duration:.3f} s < min-duration {options.min_duration} s"
            excluded.append((r.utt, why, r.path))
        else:
            if info.sample_rate != options.sample_rate:
                wrong_rate.append((r.path, info.sample_rate))
            if info.channels > 1:
                multichannel += 1
            kept.append((r, info))

    if wrong_rate and not options.allow_resample:
        shown = "; ".join(f"{p}: {sr} Hz" for p, sr in wrong_rate[:10])
        raise DataError(
            f"{len(wrong_rate)} files are not {options.sample_rate} Hz ({shown}); resample the "
            "corpus, or pass --allow-resample to record rates in utt2sr and resample on read"
        )
    if wrong_rate:
        log.warning(
            "%d files are not %d Hz (e.g. %s: %d Hz); rates recorded in utt2sr",
            len(wrong_rate),
            options.sample_rate,
            *wrong_rate[0],
        )
    if multichannel:
        example = next(r.path for r, i in kept if i.channels > 1)
        log.warning(
            "%d files have more than one channel (e.g. %s); readers use the first channel",
            multichannel,
            example,
        )
    if bad > options.max_bad_fraction * len(items):
        report = dest.parent / f"{dest.name}.bad_audio.txt"
        with atomic_write(report) as f:
            f.writelines(f"{u}\t{why}\t{p}\n" for u, why, p in excluded)
        broken = [(p, why) for _, why, p in excluded if why.startswith(("unreadable", "empty"))]
        shown = "\n  ".join(f"{p}: {why}" for p, why in broken[:10])
        raise DataError(
            f"{bad} of {len(items)} files are unreadable or empty, more than --max-bad-fraction "
            f"{options.max_bad_fraction}; nothing written to {dest}. All excluded files are "
            f"listed in {report}:\n  {shown}"
        )
    if not kept:
        raise DataError(f"{dest}: every file was excluded ({len(excluded)}); see the reasons above")

    # Rows are appended in utterance order; lists, not dicts, because a million-entry import
    # holds several of them at once.
    tables: dict[str, list[tuple[str, str]]] = {"wav.scp": [], "utt2spk": []}
    if with_durations:
        tables["utt2dur"] = []
    if all(r.session is not None for r, _ in kept):
        tables["utt2session"] = []
    if options.allow_resample and wrong_rate:
        tables["utt2sr"] = []
    if chunk_seconds > 0:
        tables["segments"] = []
    for r, info in kept:
        tables["wav.scp"].append((r.utt, r.path))
        if chunk_seconds > 0:
            spans = _chunk(info.frames, info.sample_rate, chunk_seconds, options.min_duration)
            width = max(4, len(str(len(spans) - 1)))
            units = [(f"{r.utt}-{i:0{width}d}", s, e) for i, (s, e) in enumerate(spans)]
        else:
            units = [(r.utt, 0, info.frames)]
        for utt, start, end in units:
            rate = info.sample_rate
            tables["utt2spk"].append((utt, r.speaker))
            if with_durations:
                seconds = (end - start) / rate if chunk_seconds > 0 else info.duration
                tables["utt2dur"].append((utt, format_seconds(seconds)))
            if "segments" in tables:
                times = f"{format_seconds(start / rate)} {format_seconds(end / rate)}"
                tables["segments"].append((utt, f"{r.utt} {times}"))
            if "utt2session" in tables:
                tables["utt2session"].append((utt, r.session))
            if "utt2sr" in tables:
                tables["utt2sr"].append((utt, str(rate)))
    num_files = len(kept)
    del kept, infos, items

    utt2spk = dict(tables["utt2spk"])
    written_trials: dict[str, list[Trial]] = {}
    dropped_trials: list[str] = []
    for name, (_, trials) in (trial_lists or {}).items():
        written_trials[name] = []
        for lineno, trial in enumerate(trials, 1):
            if trial[0] in utt2spk and trial[1] in utt2spk:
                written_trials[name].append(trial)
            else:
                label = "target" if trial[2] else "nontarget"
                dropped_trials.append(f"{name} {lineno} {trial[0]} {trial[1]} {label}\n")
    if dropped_trials:
        log.warning(
            "%d trials name an excluded utterance and were dropped; listed in %s",
            len(dropped_trials),
            dest / "excluded_trials.txt",
        )

    num_utts = len(utt2spk)
    tmp = _new_tmp_dir(dest)
    try:
        for name, rows in tables.items():
            # Sorting (key, value) pairs whose keys are unique sorts by key, in plain str order
            # (= LC_ALL=C); near-free when the rows already are in order (no chunks).
            rows.sort()
            write_table(tmp / name, rows, sort=False)
        del tables
        spk2utt = spk2utt_from_utt2spk(utt2spk)
        num_spk = len(spk2utt)
        del utt2spk
        write_table(tmp / "spk2utt", [(s, " ".join(u)) for s, u in spk2utt.items()], sort=False)
        del spk2utt
        for name, trials in written_trials.items():
            write_trials(tmp / name, trials)
        trial_counts = {name: len(t) for name, t in written_trials.items()}
        del written_trials
        with atomic_write(tmp / "excluded.txt") as f:
            f.writelines(f"{u}\t{why}\t{p}\n" for u, why, p in excluded)
        if dropped_trials:
            with atomic_write(tmp / "excluded_trials.txt") as f:
                f.writelines(dropped_trials)
        # Independent check of what was written, read back from the files.
        validate_data_dir(tmp, check_wav_exists=False)
        _replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    reasons: dict[str, int] = {}
    for _, why, _ in excluded:
        key = why.split(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    summary = ", ".join(f"{n} {why}" for why, n in reasons.items())
    log.info(
        "%s: %d utterances of %d speakers from %d files; %s",
        dest,
        num_utts,
        num_spk,
        num_files,
        f"excluded {len(excluded)} files ({summary}), listed in {dest / 'excluded.txt'}"
        if excluded
        else "no file excluded",
    )
    return ImportReport(
        dest=dest,
        utterances=num_utts,
        speakers=num_spk,
        excluded=excluded,
        bad=bad,
        multichannel=multichannel,
        trials=trial_counts,
    )


# ----------------------------------------------------------------------------- LibriSpeech


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
        items.append(
            Recording(sanitize_id(flac.stem), sanitize_id(spk), _audio_path(flac), chapter)
        )
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


# ----------------------------------------------------------------------------- folder


_AUDIO_EXTENSIONS = (".wav", ".flac")


def _walk_audio(folder: Path) -> list[Path]:
    """Audio files under ``folder`` (following links, each real folder once), hidden skipped."""
    found, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames.clear()
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and name.lower().endswith(_AUDIO_EXTENSIONS):
                found.append(Path(dirpath) / name)
    return found


def list_folder(root: PathLike) -> list[Recording]:
    """``ROOT/SPEAKER/**/*.{wav,flac}``; session = first sub-folder when every file has one."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    items, sessions = [], []
    loose = [
        p for p in root.iterdir() if p.is_file() and p.name.lower().endswith(_AUDIO_EXTENSIONS)
    ]
    if loose:
        log.warning(
            "%s: %d audio files directly in the root are ignored (no speaker folder), e.g. %s",
            root,
            len(loose),
            loose[0].name,
        )
    for spk_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        spk = sanitize_id(spk_dir.name)
        for path in _walk_audio(spk_dir):
            rel = path.relative_to(spk_dir)
            rel_id = sanitize_id("-".join([*rel.parts[:-1], path.stem]))
            sessions.append(sanitize_id(rel.parts[0]) if len(rel.parts) > 1 else None)
            items.append(Recording(f"{spk}-{rel_id}", spk, _audio_path(path)))
    if not items:
        raise DataError(f"{root}: no SPEAKER/**/*.wav or *.flac files")
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
    """Import any ``SPEAKER/**/*.{wav,flac}`` tree."""
    return import_recordings(list_folder(root), dest, options)


# ----------------------------------------------------------------------------- CSV


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
    with open(list_file, encoding="utf-8", newline="") as f:
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
    paths = [Path(_audio_path(p)) for p in paths]
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


# ----------------------------------------------------------------------------- VoxCeleb


def voxceleb_utt_id(speaker: str, video: str, stem: str) -> str:
    """``idXXXXX-VIDEO-NNNNN``: the id of ``idXXXXX/VIDEO/NNNNN.{wav,m4a}``."""
    return sanitize_id(f"{speaker}-{video}-{stem}")


def _voxceleb_files(base: Path, extension: str) -> list[tuple[str, str, Path]]:
    files = []
    for path in sorted(base.glob(f"*/*/*{extension}")):
        files.append((path.parent.parent.name, path.parent.name, path))
    return files


def _find_first(candidates: list[Path], what: str, extension: str) -> Path:
    for folder in candidates:
        if folder.is_dir() and any(folder.glob(f"*/*/*{extension}")):
            return folder
    raise DataError(
        f"no {what} (SPEAKER/VIDEO/*{extension}) in any of {[str(c) for c in candidates]}"
    )


def list_voxceleb1(root: PathLike) -> list[Recording]:
    """``ROOT/wav/idXXXXX/VIDEO/NNNNN.wav`` (or ``ROOT/idXXXXX/...``); session = video."""
    root = Path(root)
    base = _find_first([root / "wav", root], "VoxCeleb1 wav files", ".wav")
    return [
        Recording(
            voxceleb_utt_id(spk, video, p.stem),
            sanitize_id(spk),
            _audio_path(p),
            sanitize_id(video),
        )
        for spk, video, p in _voxceleb_files(base, ".wav")
    ]


#: Trial kind -> (Kaldi trial file, official cleaned VoxCeleb1 list, prepare_data flag).
VOXCELEB1_TRIAL_LISTS = {
    "O": ("trials_O", "veri_test2.txt", "--veri-test"),
    "E": ("trials_E", "list_test_all2.txt", "--list-test-all"),
    "H": ("trials_H", "list_test_hard2.txt", "--list-test-hard"),
}


#: Where the VoxCeleb authors publish the cleaned lists, and their MD5 sums. The sums are the
#: ones other open recipes check the same files against (PaddleSpeech's VoxCeleb1 preparation
#: and the Avignon mirror list of the kiwano toolkit agree on all three); MD5 is only an
#: integrity check here, against truncated or altered downloads.
VOXCELEB1_META_URL = "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/"
VOXCELEB1_TRIAL_MD5 = {
    "veri_test2.txt": "b73110731c9223c1461fe49cb48dddfc",
    "list_test_all2.txt": "a53e059deb562ffcfc092bf5d90d9f3a",
    "list_test_hard2.txt": "857790e09d579a68eb2e339a090343c8",
}


def file_md5(path: PathLike) -> str:
    """Hex MD5 of a file, read in blocks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(url: str, dest: PathLike, md5: str, timeout: float = 60.0) -> Path:
    """Fetch ``url`` (HTTPS only) to ``dest``, atomically, checking its MD5.

    ``dest`` appears only when the whole file arrived and its checksum matches; any failure
    (offline, HTTP error, wrong checksum) is a :class:`DataError` naming the URL.
    """
    dest = Path(dest)
    if not url.startswith("https://"):
        raise DataError(f"{url}: refusing to download over anything but HTTPS")
    log.info("downloading %s -> %s", url, dest)
    digest = hashlib.md5(usedforsecurity=False)
    with atomic_write(dest, "wb") as out:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                for block in iter(lambda: response.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
        except OSError as e:  # URLError, HTTPError, timeouts and resets are all OSErrors
            plain_url_error = isinstance(e, urllib.error.URLError) and not isinstance(
                e, urllib.error.HTTPError
            )
            raise DataError(
                f"cannot download {url}: {e.reason if plain_url_error else e} (is this machine "
                f"online?); nothing written. Fetch the file elsewhere and put it at {dest}, or "
                "pass its path"
            ) from None
        if digest.hexdigest() != md5:
            raise DataError(
                f"{url}: MD5 {digest.hexdigest()} does not match the published {md5}; nothing "
                f"written to {dest} (a partial or changed download?)"
            )
    return dest


def download_voxceleb1_trial_list(kind: str, folder: PathLike) -> Path:
    """The official list of trial kind ``O``/``E``/``H`` in ``folder``, downloaded when absent
    or when the copy there does not match the published checksum."""
    file_name = VOXCELEB1_TRIAL_LISTS[kind][1]
    dest = Path(folder) / file_name
    md5 = VOXCELEB1_TRIAL_MD5[file_name]
    if dest.is_file():
        if file_md5(dest) == md5:
            log.info("%s: already downloaded, checksum OK", dest)
            return dest
        log.warning("%s: checksum differs from the published one; downloading it again", dest)
    return download_file(VOXCELEB1_META_URL + file_name, dest, md5)


def read_voxceleb_trial_list(path: PathLike) -> list[Trial]:
    """An official list (``1|0 id/video/file.wav id/video/file.wav``) as Kaldi trials, in order."""
    path = Path(path)
    trials = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if len(fields) != 3 or fields[0] not in ("0", "1"):
                raise DataError(
                    f"{path}:{lineno}: expected '1|0 id/video/file.wav id/video/file.wav'"
                )
            utts = []
            for rel in fields[1:]:
                parts = rel.split("/")
                if len(parts) != 3 or not parts[2].endswith(".wav"):
                    raise DataError(f"{path}:{lineno}: {rel!r} is not SPEAKER/VIDEO/FILE.wav")
                utts.append(voxceleb_utt_id(parts[0], parts[1], parts[2][: -len(".wav")]))
            trials.append((utts[0], utts[1], fields[0] == "1"))
    if not trials:
        raise DataError(f"{path}: empty trial list")
    return trials


def find_voxceleb1_trial_list(
    kind: str,
    roots: list[Path],
    given: PathLike | None = None,
    download_dir: PathLike | None = None,
) -> Path:
    """The official list for trial kind ``O``/``E``/``H``: ``given``, else next to the corpus,
    else (only when ``download_dir`` is set) downloaded into ``download_dir``."""
    trials_name, file_name, flag = VOXCELEB1_TRIAL_LISTS[kind]
    if given is not None:
        if not Path(given).is_file():
            raise DataError(f"{trials_name}: official list {given} not found")
        return Path(given)
    places = []
    for root in roots:
        places += [root, root / "meta", root.parent, root.parent / "meta"]
    for place in places:
        if (place / file_name).is_file():
            return place / file_name
    if download_dir is not None:
        return download_voxceleb1_trial_list(kind, download_dir)
    raise DataError(
        f"{trials_name} needs the official list {file_name}, not found in "
        f"{sorted({str(p) for p in places})}; pass its path ({flag} FILE), put it next to the "
        f"corpus, or let stage 0 download it ({VOXCELEB1_META_URL}{file_name}) with "
        "--download true (prepare_data: --download)"
    )


def prepare_voxceleb1(
    roots: PathLike | list[PathLike],
    dest: PathLike,
    trials: Iterable[str] = ("O",),
    trial_list_files: dict[str, PathLike] | None = None,
    options: ImportOptions | None = None,
    download_dir: PathLike | None = None,
) -> ImportReport:
    """Import VoxCeleb1 (one or more roots, e.g. dev and test) and convert official trial lists.

    ``trials``: which of ``O`` (veri_test2), ``E`` (list_test_all2), ``H`` (list_test_hard2) to
    write as ``trials_O``/``trials_E``/``trials_H``, line for line; ``trial_list_files`` gives
    their paths, else they are looked for next to the corpus, else downloaded (checksummed)
    into ``download_dir`` when it is given.
    """
    roots = [Path(r) for r in ([roots] if isinstance(roots, (str, os.PathLike)) else roots)]
    items = [r for root in roots for r in list_voxceleb1(root)]
    lists = {}
    for kind in trials:
        if kind not in VOXCELEB1_TRIAL_LISTS:
            raise DataError(f"unknown VoxCeleb1 trial list {kind!r}; choose from O, E, H")
        source = find_voxceleb1_trial_list(
            kind, roots, (trial_list_files or {}).get(kind), download_dir
        )
        lists[VOXCELEB1_TRIAL_LISTS[kind][0]] = (source, read_voxceleb_trial_list(source))
    return import_recordings(items, dest, options, trial_lists=lists)


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


def prepare_voxceleb2(
    root: PathLike,
    dest: PathLike,
    wav_cache: PathLike,
    options: ImportOptions | None = None,
    subset: str = "dev",
) -> ImportReport:
    """Import VoxCeleb2 ``ROOT/{subset}/aac/idXXXXX/VIDEO/NNNNN.m4a``, decoded once to
    ``WAV_CACHE/idXXXXX/VIDEO/NNNNN.wav`` (16 kHz mono); session = video."""
    options = options or ImportOptions()
    root, cache = Path(root), Path(wav_cache)
    base = _find_first([root / subset / "aac", root / "aac", root], "VoxCeleb2 m4a files", ".m4a")
    files = _voxceleb_files(base, ".m4a")
    jobs = [(m4a, cache / spk / video / f"{m4a.stem}.wav") for spk, video, m4a in files]
    errors = convert_to_wav(jobs, nj=options.nj, sample_rate=options.sample_rate)
    items = [
        Recording(
            voxceleb_utt_id(spk, video, m4a.stem),
            sanitize_id(spk),
            _audio_path(wav),
            sanitize_id(video),
            error=errors.get(m4a),
        )
        for (spk, video, m4a), (_, wav) in zip(files, jobs)
    ]
    return import_recordings(items, dest, options)


# ----------------------------------------------------------------------------- MUSAN, RIRs


MUSAN_CATEGORIES = ("noise", "speech", "music")


def list_musan(root: PathLike, category: str) -> list[Recording]:
    """``ROOT/{category}/<subset>/*.wav``; each file is its own speaker."""
    folder = Path(root) / category
    if not folder.is_dir():
        raise DataError(f"{folder}: MUSAN {category} folder not found (expected ROOT/{category}/)")
    items = []
    for path in _walk_audio(folder):
        rec = sanitize_id(path.stem)
        items.append(Recording(rec, rec, _audio_path(path)))
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
    :func:`sslsv.data.datadir.read_audio_sources`. ``chunk_seconds=0``: whole files, no segments.
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
            items.append(Recording(utt, spk, _audio_path(path)))
    if include_real:
        real = root / "real_rirs_isotropic_noises"
        if not real.is_dir():
            raise DataError(f"{real}: not found (needed for the real RIRs)")
        for path in sorted(real.glob("*rir*.wav")):
            utt = sanitize_id(f"real-{path.stem}")
            items.append(Recording(utt, utt, _audio_path(path)))
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
