"""Checking a data dir for consistency (Kaldi's ``validate_data_dir.sh``)."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from pathlib import Path

from sslsv.audio import default_jobs, probe_audio_files
from sslsv.datadir.io import (
    SPK_FILES,
    PathLike,
    parse_segment,
    present_files,
    recording_files,
    spk2utt_from_utt2spk,
    trial_files,
    utterance_files,
)
from sslsv.errors import DataError
from sslsv.fileio import kaldi_sort_key, utf8_text

log = logging.getLogger(__name__)

#: The characters of an utterance, speaker or recording id, in words (docs/DATA.md).
ID_CHARS = "printable ASCII other than space and '/'"
# Kaldi forbids only whitespace, but Python's str.split() splits on more (no-break space,
# ...) than Kaldi and kaldiio do, non-ASCII look-alikes and zero-width characters make ids
# that print alike but differ, and ids become file names (augmentation chunks): "/" would
# make a folder of one. The corpus importers write ids of A-Za-z0-9_.- only.
_BAD_ID_CHAR = re.compile(r"[^!-.0-~]")

#: How far (seconds) a segment may end past the end of its recording: training's tolerance
#: (sslsv.train.dataset.SEGMENT_OVERSHOOT, not imported here as it would import torch; a
#: test keeps the two equal).
SEGMENT_OVERSHOOT = 0.05
#: Problems of one kind listed in a validation error; the count says how many in all.
SHOWN = 10

_VALUE_CHECKED = frozenset(
    ("utt2spk", "utt2session", "utt2lang", "spk2gender", "utt2dur", "reco2dur")
    + ("utt2num_frames", "utt2sr", "segments", "wav.scp")
)


def check_value(name: str, value: str) -> str | None:
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
            parse_segment(value)
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


def bad_ids(ids: Iterable[str]) -> list[str]:
    """The ids with a character outside :data:`ID_CHARS`, in their order."""
    ids = list(ids)
    # One search over all of them: a million ids cost one pass, not a million calls.
    if not _BAD_ID_CHAR.search("".join(ids)):
        return []
    return [i for i in ids if _BAD_ID_CHAR.search(i)]


def _check_ids(errors: _Errors, path: Path, ids: Iterable[str], what: str) -> None:
    """Report the ids of ``path`` (its first column) outside :data:`ID_CHARS`."""
    bad = bad_ids(ids)
    for key in bad[:SHOWN]:
        char = _BAD_ID_CHAR.search(key).group()
        errors.add(
            f"{path}:{_first_line_of(path, key)}: {what} id {key!r} has {char!r}: ids are "
            f"{ID_CHARS}"
        )
    if len(bad) > SHOWN:
        errors.add(f"{path}: {len(bad)} {what} ids in all have characters outside {ID_CHARS}")


def _read_keyed(path: Path, errors: _Errors, check_sorted: bool = True) -> dict[str, str]:
    """Read a Kaldi table, reporting bad lines, duplicates and sort order to ``errors``."""
    out: dict[str, str] = {}
    prev = None
    name = path.name
    # check_value has nothing to say about the values of other files: skip the call.
    unchecked = name not in _VALUE_CHECKED
    with utf8_text(path) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").split(maxsplit=1)
            if len(parts) < 2 or not parts[1].strip():
                what = "empty line" if not parts else f"id {parts[0]!r} has no value"
                errors.add(f"{path}:{lineno}: {what}")
                continue
            key, value = parts[0], parts[1].strip()
            bad = None if unchecked else check_value(name, value)
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
    with utf8_text(path) as f:
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
    with utf8_text(path) as f:
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


def _segment_problems(
    data_dir: Path, segments: dict[str, str], durations: dict[str, float | str], source: str
) -> list[str]:
    """Segments that start at or after the end of their recording, or end more than
    :data:`SEGMENT_OVERSHOOT` past it (training leaves their utterances out: better said
    here, once). ``durations``: recording -> seconds, or why its header cannot be read."""
    problems = []
    for lineno, (utt, value) in enumerate(segments.items(), 1):  # valid: one line per id
        segment = parse_segment(value)
        duration = durations.get(segment.recording)
        where = f"{data_dir}/segments:{lineno}: utterance {utt!r}"
        if isinstance(duration, str):
            problems.append(f"{where}: recording {segment.recording!r}: {duration}")
        elif duration is None:
            continue  # a recording missing from wav.scp or reco2dur: reported already
        elif segment.start >= duration:
            problems.append(
                f"{where} starts at {segment.start:g} s, after its recording "
                f"{segment.recording!r} ends ({duration:g} s, {source})"
            )
        elif segment.end is not None and segment.end > duration + SEGMENT_OVERSHOOT:
            problems.append(
                f"{where} ends at {segment.end:g} s, past the end of its recording "
                f"{segment.recording!r} ({duration:g} s, {source}; tolerance "
                f"{SEGMENT_OVERSHOOT:g} s)"
            )
    return problems


def _recording_durations(
    data_dir: Path, tables: dict[str, dict[str, str]], check_wav_exists: bool
) -> tuple[dict[str, float | str], str]:
    """Recording -> duration (seconds, or why it is unknown) and where it comes from: the
    audio headers when audio is checked, else reco2dur when the data dir has one."""
    if check_wav_exists and "wav.scp" in tables:
        wavs = tables["wav.scp"]
        infos = probe_audio_files(list(wavs.values()), default_jobs())
        durations: dict[str, float | str] = {
            r: f"cannot read {path}: {info.error}" if info.error else info.duration
            for (r, path), info in zip(wavs.items(), infos)
        }
        return durations, "its header"
    if "reco2dur" in tables:
        return {r: float(d) for r, d in tables["reco2dur"].items()}, "reco2dur"
    return {}, ""


def validate_data_dir(path: PathLike, check_wav_exists: bool = True) -> list[str]:
    """Check a data dir for consistency (Kaldi's ``validate_data_dir.sh``).

    Beyond Kaldi's checks: utterance, speaker and recording ids use :data:`ID_CHARS`, and
    with ``segments`` every segment lies within its recording (to :data:`SEGMENT_OVERSHOOT`),
    by the audio headers when ``check_wav_exists``, else by ``reco2dur`` when present.

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
    if not present_files(data_dir, ("wav.scp", "feats.scp")):
        errors.add(f"{data_dir}: has neither wav.scp nor feats.scp")
    errors.raise_if_any()

    utt2spk = _read_keyed(data_dir / "utt2spk", errors)
    utts = set(utt2spk)
    if not utts:
        errors.add(f"{data_dir}/utt2spk: no utterances")
    _check_ids(errors, data_dir / "utt2spk", utt2spk, "utterance")

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
        if "wav.scp" in tables:  # keyed by recording here
            _check_ids(errors, data_dir / "wav.scp", tables["wav.scp"], "recording")

    # spk2utt must be exactly utt2spk inverted, both levels sorted.
    spk2utt = _read_keyed(data_dir / "spk2utt", errors)
    _check_ids(errors, data_dir / "spk2utt", spk2utt, "speaker")
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
    for name in present_files(data_dir, SPK_FILES):
        table = _read_keyed(data_dir / name, errors)
        _compare_keys(errors, data_dir / name, table, set(expected), "speaker")

    for name in trial_files(data_dir):
        for problem in _trial_problems(data_dir / name, utts):
            errors.add(problem)

    if check_wav_exists and "wav.scp" in present_files(data_dir, ("wav.scp",)):
        wavs = tables["wav.scp"]
        missing = [(k, v) for k, v in wavs.items() if not v.endswith("|") and not Path(v).is_file()]
        for key, wav in missing[:10]:
            errors.add(f"{data_dir}/wav.scp: {key!r}: audio file {wav!r} does not exist")
        if len(missing) > 10:
            errors.add(f"{data_dir}/wav.scp: {len(missing)} audio files in all do not exist")
    errors.raise_if_any()

    # Only once the files agree (every segment's recording in wav.scp, every audio file
    # present): headers of missing files would only repeat the errors above.
    if "segments" in tables:
        durations, source = _recording_durations(data_dir, tables, check_wav_exists)
        if durations:
            problems = _segment_problems(data_dir, tables["segments"], durations, source)
            for problem in problems[:SHOWN]:
                errors.add(problem)
            if len(problems) > SHOWN:
                errors.add(f"{data_dir}/segments: {len(problems)} segments in all")
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
