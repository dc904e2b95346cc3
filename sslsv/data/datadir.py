"""Kaldi data directories: ``wav.scp``, ``utt2spk``, ``spk2utt``, ``utt2dur``, ``trials``.

Besides the readers and writers, this module holds the data-dir tools (Kaldi's ``utils/``
scripts as plain functions over paths): :func:`validate_data_dir`, :func:`fix_data_dir`,
:func:`combine_data_dirs`, :func:`subset_data_dir`, :func:`split_data_dir` and
:func:`compute_utt2dur`.

File roles
- per-utterance files (:data:`UTT_FILES`), keyed by utterance id; all must list exactly the
  utterances of ``utt2spk``.
- ``segments`` (``utt recording start end``, seconds): when present, ``wav.scp`` and
  :data:`RECORDING_FILES` are keyed by recording id instead, and each utterance is the span
  ``[start, end)`` of its recording. Use :func:`read_audio_sources` / :func:`read_source_audio`
  to read utterances the same way whether or not a data dir has ``segments``.
- per-speaker files (:data:`SPK_FILES`, plus ``spk2utt``), keyed by speaker id.
- trial lists: ``trials`` and ``trials_<name>`` (no dot in the name), each line
  ``enroll test target|nontarget``; kept in their own order, never sorted.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sslsv.fileio import DataError, atomic_write, kaldi_sort_key, read_dict, read_table, write_table

log = logging.getLogger(__name__)

#: Files keyed by utterance id (``wav.scp`` only when there is no ``segments`` file).
UTT_FILES: tuple[str, ...] = (
    "utt2spk",
    "wav.scp",
    "segments",
    "utt2dur",
    "utt2num_frames",
    "feats.scp",
    "vad.scp",
    "utt2session",
    "utt2sr",
    "utt2lang",
    "text",
)
#: Files keyed by recording id when ``segments`` exists (``wav.scp`` too, then).
RECORDING_FILES: tuple[str, ...] = ("reco2dur",)
#: Files keyed by speaker id, besides ``spk2utt`` (which is always rebuilt from ``utt2spk``).
SPK_FILES: tuple[str, ...] = ("spk2gender",)

_TRIALS_NAME = re.compile(r"trials(_[^.\s]+)?")
_TOKEN = re.compile(r"\S+")

PathLike = str | os.PathLike


# ----------------------------------------------------------------------------- readers/writers


def spk2utt_from_utt2spk(utt2spk: dict[str, str]) -> dict[str, list[str]]:
    """Group utterances by speaker, both levels in ``LC_ALL=C`` order."""
    spk2utt: dict[str, list[str]] = {}
    # Plain str order is code point order, i.e. the UTF-8 byte order of kaldi_sort_key.
    for utt in sorted(utt2spk):
        spk2utt.setdefault(utt2spk[utt], []).append(utt)
    return dict(sorted(spk2utt.items()))


def write_spk2utt(data_dir: PathLike) -> None:
    """Write ``spk2utt`` from ``utt2spk`` (Kaldi's ``utt2spk_to_spk2utt.pl``)."""
    data_dir = Path(data_dir)
    spk2utt = spk2utt_from_utt2spk(read_dict(data_dir / "utt2spk"))
    write_table(data_dir / "spk2utt", {s: " ".join(u) for s, u in spk2utt.items()})


def read_wav_scp(path: PathLike) -> dict[str, str]:
    """Read ``wav.scp`` (``utt path``; paths may contain spaces).

    Piped entries (``cmd |``) are refused: this toolkit never executes data it reads.
    """
    wavs = read_dict(path)
    for utt, value in wavs.items():
        if value.endswith("|"):
            raise DataError(
                f"{path}: utterance {utt!r} is a command pipe ({value!r}); convert the audio "
                "to files first (stage 0 does this for VoxCeleb2 m4a)"
            )
    return wavs


def read_trials(path: PathLike) -> list[tuple[str, str, bool]]:
    """Read a Kaldi trial list: ``enroll_utt test_utt target|nontarget`` per line."""
    trials = []
    for lineno, (enroll, rest) in enumerate(read_table(path), 1):
        fields = rest.split()
        if len(fields) != 2 or fields[1] not in ("target", "nontarget"):
            raise DataError(
                f"{path}:{lineno}: expected 'enroll test target|nontarget', got {enroll} {rest!r}"
            )
        trials.append((enroll, fields[0], fields[1] == "target"))
    return trials


def write_trials(path: PathLike, trials: list[tuple[str, str, bool]]) -> None:
    """Write a Kaldi trial list in the given order."""
    write_table(
        path,
        [(e, f"{t} {'target' if y else 'nontarget'}") for e, t, y in trials],
        sort=False,
    )


class Segment(NamedTuple):
    """One line of a Kaldi ``segments`` file; times in seconds, ``end`` None = end of file."""

    recording: str
    start: float
    end: float | None


def _parse_segment(value: str) -> Segment:
    fields = value.split()
    if len(fields) != 3:
        raise ValueError(f"expected 'recording start end', got {value!r}")
    try:
        start, end = float(fields[1]), float(fields[2])
    except ValueError:
        raise ValueError(
            f"start and end must be numbers, got {fields[1]!r} {fields[2]!r}"
        ) from None
    # Kaldi writes end -1 for "to the end of the recording".
    if end == -1 and 0.0 <= start < np.inf:
        return Segment(fields[0], start, None)
    if not (0.0 <= start < end < np.inf):
        raise ValueError(f"need 0 <= start < end (or end -1), got {fields[1]} {fields[2]}")
    return Segment(fields[0], start, end)


def read_segments(path: PathLike) -> dict[str, Segment]:
    """Read a Kaldi ``segments`` file: ``utt recording start end`` (seconds) per line."""
    out: dict[str, Segment] = {}
    for lineno, (utt, value) in enumerate(read_table(path), 1):
        if utt in out:
            raise DataError(f"{path}:{lineno}: duplicate utterance {utt!r}")
        try:
            out[utt] = _parse_segment(value)
        except ValueError as e:
            raise DataError(f"{path}:{lineno}: utterance {utt!r}: {e}") from None
    return out


@dataclass(frozen=True)
class AudioSource:
    """Where an utterance's audio lives: a file, optionally a ``[start, end)`` span (seconds)."""

    path: str
    start: float = 0.0
    end: float | None = None


def read_audio_sources(data_dir: PathLike) -> dict[str, AudioSource]:
    """Utterance id -> :class:`AudioSource`, honouring ``segments`` when present."""
    data_dir = Path(data_dir)
    wavs = read_wav_scp(data_dir / "wav.scp")
    if not (data_dir / "segments").exists():
        return {utt: AudioSource(path) for utt, path in wavs.items()}
    sources = {}
    for utt, seg in read_segments(data_dir / "segments").items():
        if seg.recording not in wavs:
            raise DataError(
                f"{data_dir}/segments: utterance {utt!r} refers to recording "
                f"{seg.recording!r}, which is not in wav.scp"
            )
        sources[utt] = AudioSource(wavs[seg.recording], seg.start, seg.end)
    return sources


def read_source_audio(source: AudioSource, utt: str = "") -> tuple[np.ndarray, int]:
    """Read an utterance: (first channel as float32, sample rate)."""
    import soundfile as sf

    try:
        with sf.SoundFile(source.path) as f:
            rate = f.samplerate
            start = round(source.start * rate)
            stop = f.frames if source.end is None else min(f.frames, round(source.end * rate))
            f.seek(min(start, f.frames))
            audio = f.read(max(0, stop - start), dtype="float32", always_2d=True)[:, 0]
    except (sf.LibsndfileError, RuntimeError) as e:
        raise DataError(f"utterance {utt!r}: cannot read {source.path}: {e}") from None
    return audio, rate


# ----------------------------------------------------------------------------- helpers


def _present(data_dir: Path, names: Iterable[str]) -> list[str]:
    return [n for n in names if (data_dir / n).is_file()]


def utterance_files(data_dir: PathLike) -> list[str]:
    """Names of the per-utterance files present in ``data_dir``."""
    data_dir = Path(data_dir)
    names = _present(data_dir, UTT_FILES)
    if "segments" in names:
        names.remove("wav.scp")
    return names


def recording_files(data_dir: PathLike) -> list[str]:
    """Names of the per-recording files present (only meaningful with ``segments``)."""
    data_dir = Path(data_dir)
    if not (data_dir / "segments").is_file():
        return []
    return _present(data_dir, ("wav.scp", *RECORDING_FILES))


def trial_files(data_dir: PathLike) -> list[str]:
    """Names of the trial lists in ``data_dir`` (``trials``, ``trials_<name>``), sorted."""
    data_dir = Path(data_dir)
    return sorted(
        p.name for p in data_dir.iterdir() if p.is_file() and _TRIALS_NAME.fullmatch(p.name)
    )


_VALUE_CHECKED = frozenset(
    ("utt2spk", "utt2session", "utt2lang", "spk2gender", "utt2dur", "reco2dur")
    + ("utt2num_frames", "utt2sr", "segments", "wav.scp")
)


def _check_value(name: str, value: str) -> str | None:
    """Why ``value`` is not a valid value for file ``name``, or None."""
    if name in ("utt2spk", "utt2session", "utt2lang", "spk2gender"):
        if len(value.split()) != 1:
            return f"expected one token, got {value!r}"
    elif name in ("utt2dur", "reco2dur"):
        try:
            seconds = float(value)
            ok = seconds > 0 and math.isfinite(seconds)
        except ValueError:
            ok = False
        if not ok:
            return f"expected a positive duration in seconds, got {value!r}"
    elif name in ("utt2num_frames", "utt2sr"):
        if not value.isdigit() or int(value) <= 0:
            return f"expected a positive integer, got {value!r}"
    elif name == "segments":
        try:
            _parse_segment(value)
        except ValueError as e:
            return str(e)
    elif name == "wav.scp" and value.endswith("|"):
        return f"command pipe {value!r} (convert the audio to files first)"
    return None


class _Errors:
    """Collects validation errors; raises them together (at most ``shown`` listed)."""

    def __init__(self, data_dir: Path, shown: int = 30) -> None:
        self.data_dir, self.shown, self.messages = data_dir, shown, []

    def add(self, message: str) -> None:
        self.messages.append(message)

    def raise_if_any(self) -> None:
        if not self.messages:
            return
        n = len(self.messages)
        body = "\n  ".join(self.messages[: self.shown])
        more = f"\n  ... and {n - self.shown} more" if n > self.shown else ""
        raise DataError(f"data dir {self.data_dir} is not valid ({n} problems):\n  {body}{more}")


def _read_keyed(path: Path, errors: _Errors, check_sorted: bool = True) -> dict[str, str]:
    """Read a Kaldi table, reporting bad lines, duplicates and sort order to ``errors``."""
    out: dict[str, str] = {}
    prev = None
    name = path.name
    # _check_value has nothing to say about the values of other files: skip the call.
    unchecked = name not in _VALUE_CHECKED
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").split(maxsplit=1)
            if len(parts) < 2 or not parts[1].strip():
                what = "empty line" if not parts else f"id {parts[0]!r} has no value"
                errors.add(f"{path}:{lineno}: {what}")
                continue
            key, value = parts[0], parts[1].strip()
            bad = None if unchecked else _check_value(name, value)
            if bad:
                errors.add(f"{path}:{lineno}: id {key!r}: {bad}")
            if key in out:
                errors.add(
                    f"{path}:{lineno}: duplicate id {key!r} (first on line "
                    f"{_first_line_of(path, key)})"
                )
                continue
            # Python orders str by code point, which for UTF-8 text is the byte order of
            # LC_ALL=C (kaldi_sort_key), without encoding every key.
            if check_sorted and prev is not None and key < prev:
                errors.add(
                    f"{path}:{lineno}: id {key!r} comes after {prev!r}: not sorted in "
                    "LC_ALL=C order (fix_data_dir re-sorts)"
                )
            out[key], prev = value, key
    return out


def _first_line_of(path: Path, key: str) -> int:
    """Line number of the first line of ``path`` with id ``key`` (only for error messages, so
    that reading a table need not remember every line number)."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.split(maxsplit=1)[:1] == [key]:
                return lineno
    return 0


def _compare_keys(
    errors: _Errors, path: Path, keys: dict[str, str], expected: set[str], what: str
) -> None:
    """Report ids of ``path`` that are not in ``expected`` and vice versa."""
    if keys.keys() == expected:  # the usual case, settled by one set comparison
        return
    extra = [k for k in keys if k not in expected]
    missing = sorted(expected.difference(keys), key=kaldi_sort_key)
    for k in extra[:5]:
        errors.add(f"{path}: id {k!r} is not a known {what}")
    if len(extra) > 5:
        errors.add(f"{path}: ... {len(extra)} ids in all that are not known {what}s")
    if missing:
        shown = ", ".join(repr(k) for k in missing[:5])
        errors.add(f"{path}: {len(missing)} {what}s are missing, e.g. {shown}")


def _trial_problems(path: Path, known: set[str]) -> list[str]:
    problems = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if len(fields) != 3 or fields[2] not in ("target", "nontarget"):
                problems.append(
                    f"{path}:{lineno}: expected 'enroll test target|nontarget', got {line!r}"
                )
                continue
            for utt in fields[:2]:
                if utt not in known:
                    problems.append(f"{path}:{lineno}: utterance {utt!r} is not in utt2spk")
    return problems


# ----------------------------------------------------------------------------- validate


def validate_data_dir(path: PathLike, check_wav_exists: bool = True) -> list[str]:
    """Check a data dir for consistency (Kaldi's ``validate_data_dir.sh``).

    Raises :class:`DataError` listing every problem found (file, line, id); returns warnings
    (things that are legal but usually a mistake).
    """
    data_dir = Path(path)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: no such data dir")
    errors = _Errors(data_dir)
    warnings: list[str] = []
    for required in ("utt2spk", "spk2utt"):
        if not (data_dir / required).is_file():
            errors.add(f"{data_dir}/{required}: missing")
    if not _present(data_dir, ("wav.scp", "feats.scp")):
        errors.add(f"{data_dir}: has neither wav.scp nor feats.scp")
    errors.raise_if_any()

    utt2spk = _read_keyed(data_dir / "utt2spk", errors)
    utts = set(utt2spk)
    if not utts:
        errors.add(f"{data_dir}/utt2spk: no utterances")

    tables = {"utt2spk": utt2spk}
    for name in utterance_files(data_dir):
        if name != "utt2spk":
            table = _read_keyed(data_dir / name, errors)
            _compare_keys(errors, data_dir / name, table, utts, "utterance")
            # Keep only the tables needed below: a million-line data dir is large.
            if name == "segments" or (name == "wav.scp" and check_wav_exists):
                tables[name] = table
            del table

    recordings: set[str] = set()
    if "segments" in tables:
        for value in tables["segments"].values():
            fields = value.split()
            if fields:
                recordings.add(fields[0])
        for name in recording_files(data_dir):
            tables[name] = _read_keyed(data_dir / name, errors)
            _compare_keys(errors, data_dir / name, tables[name], recordings, "recording")

    # spk2utt must be exactly utt2spk inverted, both levels sorted.
    spk2utt = _read_keyed(data_dir / "spk2utt", errors)
    expected = spk2utt_from_utt2spk(utt2spk)
    for spk, value in spk2utt.items():
        listed = value.split()
        if spk not in expected:
            errors.add(f"{data_dir}/spk2utt: speaker {spk!r} has no utterance in utt2spk")
        elif listed != expected[spk]:
            diff = set(listed).symmetric_difference(expected[spk])
            why = f"differs on {sorted(diff)[:3]}" if diff else "is not sorted"
            errors.add(f"{data_dir}/spk2utt: utterance list of speaker {spk!r} {why}")
    for spk in expected:
        if spk not in spk2utt:
            errors.add(f"{data_dir}/spk2utt: speaker {spk!r} of utt2spk is missing")
    for name in _present(data_dir, SPK_FILES):
        table = _read_keyed(data_dir / name, errors)
        _compare_keys(errors, data_dir / name, table, set(expected), "speaker")

    for name in trial_files(data_dir):
        for problem in _trial_problems(data_dir / name, utts):
            errors.add(problem)

    if check_wav_exists and "wav.scp" in _present(data_dir, ("wav.scp",)):
        wavs = tables["wav.scp"]
        missing = [(k, v) for k, v in wavs.items() if not v.endswith("|") and not Path(v).is_file()]
        for key, wav in missing[:10]:
            errors.add(f"{data_dir}/wav.scp: {key!r}: audio file {wav!r} does not exist")
        if len(missing) > 10:
            errors.add(f"{data_dir}/wav.scp: {len(missing)} audio files in all do not exist")
    errors.raise_if_any()

    # Kaldi tools assume utt2spk sorted by utterance is also sorted by speaker, which holds
    # when utterance ids start with their speaker id.
    unprefixed = [u for u, s in utt2spk.items() if not u.startswith(s)]
    if unprefixed:
        warnings.append(
            f"{data_dir}/utt2spk: {len(unprefixed)} utterance ids do not start with their "
            f"speaker id (e.g. {unprefixed[0]!r}); Kaldi sort orders may disagree"
        )
    speakers_in_order = list(utt2spk.values())
    if any(a > b for a, b in zip(speakers_in_order, speakers_in_order[1:])):  # byte order
        warnings.append(f"{data_dir}/utt2spk: not sorted by speaker as well as by utterance")
    for w in warnings:
        log.warning(w)
    return warnings


# ----------------------------------------------------------------------------- fix


def _read_tolerant(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(good rows, bad ids -> why) of a table; bad = malformed, bad value, or conflicting dup."""
    rows: dict[str, str] = {}
    bad: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").split(maxsplit=1)
            if not parts:
                continue
            key = parts[0]
            value = parts[1].strip() if len(parts) > 1 else ""
            problem = "no value" if not value else _check_value(path.name, value)
            if problem:
                bad.setdefault(key, f"{path.name} line {lineno}: {problem}")
            elif key in rows and rows[key] != value:
                bad.setdefault(key, f"{path.name} line {lineno}: conflicting duplicate")
            else:
                rows[key] = value
    for key in bad:
        rows.pop(key, None)
    return rows, bad


def fix_data_dir(path: PathLike) -> dict:
    """Make a data dir consistent (Kaldi's ``fix_data_dir.sh``); report what was dropped.

    Keeps only utterances present (and well formed) in every per-utterance file, re-sorts all
    files, rebuilds ``spk2utt``, filters per-speaker and per-recording files and trial lists.
    Originals are copied to ``DIR/.backup/``; dropped utterances are written, with the reason,
    to ``DIR/.backup/dropped`` (``utt reason``), and dropped recordings or speakers to
    ``DIR/.backup/dropped_other`` (``recording|speaker id reason``). Returns a summary:
    ``kept``, ``dropped`` (utterances), ``reasons`` (reason -> count), ``other_dropped``
    (recordings and speakers), ``trials_dropped`` (file -> lines), ``backup`` (folder).
    """
    data_dir = Path(path)
    if not (data_dir / "utt2spk").is_file():
        raise DataError(f"{data_dir}/utt2spk: missing; cannot fix a data dir without it")
    names = utterance_files(data_dir)
    tables: dict[str, dict[str, str]] = {}
    reasons: dict[str, list[str]] = {}  # utterance -> why it is dropped
    other: list[tuple[str, str, str]] = []  # (kind, id, why) for recordings and speakers
    for name in names:
        rows, bad = _read_tolerant(data_dir / name)
        tables[name] = rows
        for key, why in bad.items():
            reasons.setdefault(key, []).append(why)
    all_ids = set().union(*tables.values(), reasons)
    for utt in all_ids:
        # A malformed line already explains why the id is missing from that file.
        malformed_in = {why.split(" line ")[0] for why in reasons.get(utt, [])}
        for name in names:
            if utt not in tables[name] and name not in malformed_in:
                reasons.setdefault(utt, []).append(f"not in {name}")

    rec_tables: dict[str, dict[str, str]] = {}
    if "segments" in tables:
        for name in recording_files(data_dir):
            rec_tables[name], bad = _read_tolerant(data_dir / name)
            other += [("recording", rec, why) for rec, why in bad.items()]
        for utt, value in tables["segments"].items():
            rec = value.split()[0]
            missing = [n for n, t in rec_tables.items() if rec not in t]
            if missing:
                reasons.setdefault(utt, []).append(f"recording {rec!r} not in {missing[0]}")
    keep = all_ids.difference(reasons)

    backup = data_dir / ".backup"
    backup.mkdir(exist_ok=True)
    present = [*names, *rec_tables, *_present(data_dir, ("spk2utt", *SPK_FILES))]
    for name in present + trial_files(data_dir):
        shutil.copy2(data_dir / name, backup / name)

    for name, rows in tables.items():
        write_table(data_dir / name, {u: v for u, v in rows.items() if u in keep})
    used_recordings = {tables["segments"][u].split()[0] for u in keep} if rec_tables else set()
    for name, rows in rec_tables.items():
        unused = sorted(rows.keys() - used_recordings, key=kaldi_sort_key)
        other += [("recording", rec, f"{name}: no kept segment refers to it") for rec in unused]
        write_table(data_dir / name, {r: v for r, v in rows.items() if r in used_recordings})
    utt2spk = {u: s for u, s in tables["utt2spk"].items() if u in keep}
    spk2utt = spk2utt_from_utt2spk(utt2spk)
    write_table(data_dir / "spk2utt", {s: " ".join(u) for s, u in spk2utt.items()})
    for name in _present(data_dir, SPK_FILES):
        rows, bad = _read_tolerant(data_dir / name)
        other += [("speaker", spk, why) for spk, why in bad.items()]
        unused = sorted(rows.keys() - spk2utt.keys(), key=kaldi_sort_key)
        other += [("speaker", spk, f"{name}: speaker has no kept utterance") for spk in unused]
        write_table(data_dir / name, {s: v for s, v in rows.items() if s in spk2utt})

    trials_dropped = {}
    for name in trial_files(data_dir):
        kept_lines, dropped_lines = [], 0
        with open(data_dir / name, encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                ok = len(fields) == 3 and fields[2] in ("target", "nontarget")
                if ok and fields[0] in keep and fields[1] in keep:
                    kept_lines.append(" ".join(fields) + "\n")
                else:
                    dropped_lines += 1
        trials_dropped[name] = dropped_lines
        if dropped_lines:
            with atomic_write(data_dir / name) as f:
                f.writelines(kept_lines)

    with atomic_write(backup / "dropped") as f:
        for utt in sorted(reasons, key=kaldi_sort_key):
            f.write(f"{utt} {'; '.join(reasons[utt])}\n")
    with atomic_write(backup / "dropped_other") as f:
        for kind, key, why in other:
            f.write(f"{kind} {key} {why}\n")
    counts: dict[str, int] = {}
    for why in reasons.values():
        label = re.sub(r" line \d+", "", why[0])
        counts[label] = counts.get(label, 0) + 1
    summary = {
        "kept": len(keep),
        "dropped": len(reasons),
        "reasons": counts,
        "other_dropped": len(other),
        "trials_dropped": trials_dropped,
        "backup": str(backup),
    }
    level = logging.WARNING if reasons or other or any(trials_dropped.values()) else logging.INFO
    log.log(
        level,
        "fix_data_dir %s: kept %d utterances, dropped %d %s, dropped %d recordings/speakers, "
        "dropped trial lines %s; details in %s",
        data_dir,
        len(keep),
        len(reasons),
        counts,
        len(other),
        trials_dropped,
        backup,
    )
    if not keep:
        raise DataError(f"fix_data_dir {data_dir}: no utterance is consistent across {names}")
    validate_data_dir(data_dir, check_wav_exists=False)
    return summary


# ----------------------------------------------------------------------------- copy helpers


def _replace_dir(tmp: Path, dest: Path) -> None:
    """Move the finished directory ``tmp`` to ``dest``, replacing any old ``dest``."""
    if dest.exists():
        old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.old-"))
        os.replace(dest, old / dest.name)
        os.replace(tmp, dest)
        shutil.rmtree(old)
    else:
        os.replace(tmp, dest)


def _new_tmp_dir(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))


def _check_replaceable(dest: Path) -> None:
    """Refuse to replace a non-empty directory that does not look like a data dir."""
    if dest.is_file():
        raise DataError(f"{dest}: exists and is a file, not a data dir")
    if dest.is_dir() and any(dest.iterdir()):
        if not _present(dest, ("utt2spk", "wav.scp", "feats.scp")):
            raise DataError(
                f"{dest}: exists, is not empty and does not look like a data dir "
                "(no utt2spk/wav.scp); refusing to replace it"
            )


def _write_filtered(src: Path, dest: Path, keep: set[str], with_trials: bool) -> None:
    """Write the files of ``src`` restricted to utterances ``keep`` into ``dest``."""
    utt2spk = {u: s for u, s in read_dict(src / "utt2spk").items() if u in keep}
    for name in utterance_files(src):
        rows = read_dict(src / name)
        write_table(dest / name, {u: v for u, v in rows.items() if u in keep})
    if (src / "segments").is_file():
        segments = read_dict(src / "segments")
        recordings = {segments[u].split()[0] for u in keep}
        for name in recording_files(src):
            rows = read_dict(src / name)
            write_table(dest / name, {r: v for r, v in rows.items() if r in recordings})
    spk2utt = spk2utt_from_utt2spk(utt2spk)
    write_table(dest / "spk2utt", {s: " ".join(u) for s, u in spk2utt.items()})
    for name in _present(src, SPK_FILES):
        rows = read_dict(src / name)
        write_table(dest / name, {s: v for s, v in rows.items() if s in spk2utt})
    if with_trials:
        for name in trial_files(src):
            trials = [t for t in read_trials(src / name) if t[0] in keep and t[1] in keep]
            if trials:
                write_trials(dest / name, trials)


def _read_id_list(ids: Iterable[str] | PathLike, what: str) -> list[str]:
    """Ids from an iterable, or from the first column of a file."""
    if isinstance(ids, (str, os.PathLike)):
        path = Path(ids)
        if not path.is_file():
            raise DataError(f"{path}: {what} list not found")
        with open(path, encoding="utf-8") as f:
            return [line.split()[0] for line in f if line.strip()]
    return list(ids)


# ----------------------------------------------------------------------------- combine/subset


def combine_data_dirs(dest: PathLike, srcs: list[PathLike]) -> list[str]:
    """Concatenate data dirs (Kaldi's ``combine_data.sh``); duplicate utterance ids are errors.

    A per-utterance file is combined when every source has it; a file only some sources have
    is left out, with a warning (returned). Trial lists are not combined.
    """
    dest = Path(dest)
    srcs = [Path(s) for s in srcs]
    if not srcs:
        raise DataError("combine_data_dirs: no source data dirs given")
    for src in srcs:
        if src.resolve() == dest.resolve():
            raise DataError(f"combine_data_dirs: destination {dest} is also a source")
        validate_data_dir(src, check_wav_exists=False)
    with_segments = [(s / "segments").is_file() for s in srcs]
    if any(with_segments) and not all(with_segments):
        raise DataError(
            "combine_data_dirs: some sources have a segments file and some do not: "
            + ", ".join(
                f"{s} ({'segments' if w else 'no segments'})" for s, w in zip(srcs, with_segments)
            )
        )
    _check_replaceable(dest)
    warnings = []
    file_sets = [
        set(utterance_files(s)) | set(recording_files(s)) | set(_present(s, SPK_FILES))
        for s in srcs
    ]
    common = set.intersection(*file_sets)
    for name in sorted(set.union(*file_sets) - common):
        have = [str(s) for s, fs in zip(srcs, file_sets) if name in fs]
        warnings.append(f"combine_data_dirs: {name} left out: only in {', '.join(have)}")
    keyed_by = {n: "utterance" for n in UTT_FILES}
    keyed_by.update({n: "recording" for n in RECORDING_FILES})
    if any(with_segments):
        keyed_by["wav.scp"] = "recording"
    keyed_by.update({n: "speaker" for n in SPK_FILES})

    tmp = _new_tmp_dir(dest)
    try:
        for name in sorted(common):
            merged: dict[str, str] = {}
            origin: dict[str, Path] = {}
            for src in srcs:
                for key, value in read_dict(src / name).items():
                    if key in merged and (keyed_by[name] == "utterance" or merged[key] != value):
                        raise DataError(
                            f"combine_data_dirs: {keyed_by[name]} id {key!r} is in both "
                            f"{origin[key]}/{name} and {src}/{name}"
                        )
                    merged[key], origin[key] = value, src
            write_table(tmp / name, merged)
        spk2utt = spk2utt_from_utt2spk(read_dict(tmp / "utt2spk"))
        write_table(tmp / "spk2utt", {s: " ".join(u) for s, u in spk2utt.items()})
        validate_data_dir(tmp, check_wav_exists=False)
        _replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if any(trial_files(s) for s in srcs):
        warnings.append("combine_data_dirs: trial lists of the sources are not combined")
    for w in warnings:
        log.warning(w)
    return warnings


def subset_data_dir(
    src: PathLike,
    dest: PathLike,
    utt_list: Iterable[str] | PathLike | None = None,
    spk_list: Iterable[str] | PathLike | None = None,
    first: int | None = None,
) -> Path:
    """Copy part of a data dir (Kaldi's ``subset_data_dir.sh``); give exactly one selector.

    ``utt_list``/``spk_list``: ids, or a file whose first column holds them; an id that is not
    in ``src`` is an error. ``first``: the first N utterances in sorted order. Trial lists are
    kept, restricted to trials whose two utterances are both in the subset.
    """
    src, dest = Path(src), Path(dest)
    if sum(x is not None for x in (utt_list, spk_list, first)) != 1:
        raise DataError("subset_data_dir: give exactly one of utt_list, spk_list, first")
    if src.resolve() == dest.resolve():
        raise DataError(f"subset_data_dir: source and destination are both {src}")
    validate_data_dir(src, check_wav_exists=False)
    utt2spk = read_dict(src / "utt2spk")
    if utt_list is not None:
        wanted = _read_id_list(utt_list, "utterance")
        unknown = [u for u in wanted if u not in utt2spk]
        if unknown:
            raise DataError(
                f"subset_data_dir: {len(unknown)} utterances of the list are not in "
                f"{src}/utt2spk, e.g. {unknown[:5]}"
            )
        keep = set(wanted)
    elif spk_list is not None:
        wanted = set(_read_id_list(spk_list, "speaker"))
        unknown = sorted(wanted.difference(utt2spk.values()))
        if unknown:
            raise DataError(
                f"subset_data_dir: {len(unknown)} speakers of the list are not in "
                f"{src}/utt2spk, e.g. {unknown[:5]}"
            )
        keep = {u for u, s in utt2spk.items() if s in wanted}
    else:
        if first is None or first <= 0:
            raise DataError(f"subset_data_dir: first must be a positive number, got {first}")
        if first > len(utt2spk):
            raise DataError(f"subset_data_dir: first={first} but {src} has {len(utt2spk)} utts")
        keep = set(sorted(utt2spk, key=kaldi_sort_key)[:first])
    if not keep:
        raise DataError("subset_data_dir: the selection is empty")
    _check_replaceable(dest)
    tmp = _new_tmp_dir(dest)
    try:
        _write_filtered(src, tmp, keep, with_trials=True)
        validate_data_dir(tmp, check_wav_exists=False)
        _replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("subset_data_dir: %d of %d utterances of %s -> %s", len(keep), len(utt2spk), src, dest)
    return dest


# ----------------------------------------------------------------------------- split


def _split_fingerprint(data_dir: Path, n: int, per_speaker: bool) -> str:
    digest = hashlib.sha256(f"split n={n} per_speaker={per_speaker}\n".encode())
    names = [*utterance_files(data_dir), *recording_files(data_dir)]
    for name in sorted([*names, *_present(data_dir, SPK_FILES)]):
        digest.update(f"\0{name}\0".encode())
        with open(data_dir / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def split_data_dir(path: PathLike, n: int, per_speaker: bool = False) -> list[Path]:
    """Split a data dir into ``n`` parts ``DIR/split{n}/{1..n}`` (or ``DIR/split{n}spk/...``).

    Per utterance (default): contiguous blocks of the sorted utterances whose sizes differ by
    at most one. ``per_speaker``: each speaker's utterances stay in one part; speakers go,
    largest first, to the part with the fewest utterances so far (ties: lowest index).
    An existing split made from identical files is reused. Returns the part directories.
    """
    data_dir = Path(path)
    if n < 1:
        raise DataError(f"split_data_dir: number of parts must be >= 1, got {n}")
    validate_data_dir(data_dir, check_wav_exists=False)
    split_dir = data_dir / (f"split{n}spk" if per_speaker else f"split{n}")
    parts = [split_dir / str(i) for i in range(1, n + 1)]
    fingerprint = _split_fingerprint(data_dir, n, per_speaker)
    stamp = split_dir / ".fingerprint"
    if stamp.is_file() and stamp.read_text().strip() == fingerprint:
        if all((p / "utt2spk").is_file() for p in parts):
            log.info("split_data_dir: %s is up to date, reusing it", split_dir)
            return parts

    utt2spk = read_dict(data_dir / "utt2spk")
    utts = sorted(utt2spk, key=kaldi_sort_key)
    if per_speaker:
        spk2utt = spk2utt_from_utt2spk(utt2spk)
        if n > len(spk2utt):
            raise DataError(
                f"split_data_dir: cannot split {len(spk2utt)} speakers of {data_dir} into {n} parts"
            )
        groups: list[set[str]] = [set() for _ in range(n)]
        # Stable sort: equal-size speakers keep their sorted order, so the result is deterministic.
        for _spk, spk_utts in sorted(spk2utt.items(), key=lambda kv: -len(kv[1])):
            target = min(range(n), key=lambda i: (len(groups[i]), i))
            groups[target].update(spk_utts)
    else:
        if n > len(utts):
            raise DataError(
                f"split_data_dir: cannot split {len(utts)} utterances of {data_dir} into {n} parts"
            )
        base, extra = divmod(len(utts), n)
        groups, begin = [], 0
        for i in range(n):
            size = base + (1 if i < extra else 0)
            groups.append(set(utts[begin : begin + size]))
            begin += size

    tmp = _new_tmp_dir(split_dir)
    try:
        for i, group in enumerate(groups, 1):
            (tmp / str(i)).mkdir()
            _write_filtered(data_dir, tmp / str(i), group, with_trials=False)
        with atomic_write(tmp / ".fingerprint") as f:
            f.write(fingerprint + "\n")
        _replace_dir(tmp, split_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    sizes = [len(g) for g in groups]
    log.info(
        "split_data_dir: %s -> %d parts of %d..%d utterances", data_dir, n, min(sizes), max(sizes)
    )
    return parts


# ----------------------------------------------------------------------------- utt2dur


def format_seconds(seconds: float) -> str:
    """Seconds as text that reads back as the same float (Kaldi tables are text)."""
    return repr(float(seconds))


def compute_utt2dur(path: PathLike, nj: int = 1) -> dict[str, float]:
    """Write ``utt2dur`` (seconds) from audio headers, ``nj`` processes; return it.

    With ``segments``, durations are ``end - start`` (no audio is opened, as in Kaldi) except for
    segments ending at ``-1`` (end of file).
    """
    from sslsv.data.audio_check import probe_audio_files

    data_dir = Path(path)
    sources = read_audio_sources(data_dir)
    durations: dict[str, float] = {}
    to_probe = []
    for utt, source in sources.items():
        if source.end is not None:
            durations[utt] = source.end - source.start
        else:
            to_probe.append(utt)
    infos = probe_audio_files([sources[u].path for u in to_probe], nj=nj)
    for utt, info in zip(to_probe, infos):
        source = sources[utt]
        if info.error:
            raise DataError(
                f"{data_dir}: utterance {utt!r}: cannot read {source.path}: {info.error}"
            )
        durations[utt] = info.duration - source.start
        if durations[utt] <= 0:
            raise DataError(
                f"{data_dir}: utterance {utt!r}: {source.path} is {info.duration} s long, "
                f"nothing after start {source.start} s"
            )
    write_table(data_dir / "utt2dur", {u: format_seconds(d) for u, d in durations.items()})
    return durations
