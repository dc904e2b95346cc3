"""A corpus' audio files -> a validated Kaldi data dir, in named steps.

Every importer (one module per corpus family in this package) lists the corpus' audio files
as :class:`Recording` rows (utterance ids start with the speaker id, so ``LC_ALL=C`` orders of
``utt2spk`` and ``spk2utt`` agree) and hands them to :func:`import_recordings`, which runs:

1. **select**: sort, check ids, check that trial lists name only known utterances, apply the
   speaker selection;
2. **probe**: read every file's header (in parallel), or take durations from a table;
3. **filter**: exclude unreadable, empty and too-short files, apply the sample-rate and
   bad-fraction policies;
4. **tabulate**: the rows of ``wav.scp``, ``utt2spk``, ``utt2dur`` (plus ``utt2session``,
   ``utt2sr``, ``segments`` for virtual chunks) and the kept trials;
5. **write**: the data dir, built in a temporary folder and swapped in at the end (a failed
   import leaves any previous one untouched), checked by reading it back.

Audio policy (header level, fast):
- unreadable, or zero samples: excluded and counted as *bad*; the import fails when more than
  ``max_bad_fraction`` of the files are bad.
- shorter than ``min_duration``: excluded (not bad).
- sample rate other than ``sample_rate``: an error naming the files, unless ``allow_resample``;
  then ``utt2sr`` records every file's rate and readers resample.
- more than one channel: kept; readers use the first channel; the count is logged.
- every excluded file is listed in ``DEST/excluded.txt`` as ``utt<TAB>reason<TAB>path``.
- ``check_audio=False`` opens no file: durations come from a given table (the rules above
  that need only a duration still apply) or ``utt2dur`` is left out, with a log line.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Collection, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import soundfile as sf

from sslsv.audio import (
    AudioInfo,
    default_jobs,
    is_silent,
    probe_audio_files,
    read_audio,
    report_silent,
)
from sslsv.corpora.rate import DEFAULT_SAMPLE_RATE
from sslsv.datadir.io import PathLike, format_seconds, spk2utt_from_utt2spk, write_trials
from sslsv.datadir.tools import check_replaceable
from sslsv.datadir.validate import validate_data_dir
from sslsv.errors import DataError
from sslsv.fileio import atomic_dir, atomic_write, write_table

log = logging.getLogger(__name__)

Trial = tuple[str, str, bool]
#: Trial file name -> (the list it came from, its trials).
TrialLists = dict[str, tuple[Path, list[Trial]]]


def audio_path(path: PathLike) -> str:
    """Absolute path as it goes into wav.scp; refuses what a text table cannot hold."""
    text = os.path.abspath(path)
    if "\n" in text or text != text.strip():
        raise DataError(f"{text!r}: a path with a newline or edge whitespace cannot go in wav.scp")
    return text


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
    #: The rate the audio is expected at: the experiment's ``features.sample_rate``.
    sample_rate: int = DEFAULT_SAMPLE_RATE
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
    #: Decode every kept file and list the digitally silent ones in ``DEST/silent.txt``
    #: (a warning; with ``on_silence`` "error", the import fails). Off by default: headers
    #: are cheap to read, decoding a corpus is not.
    check_silence: bool = False
    on_silence: str = "warn"


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


# ----------------------------------------------------------------------------- 1. select


def _check_ids(items: list[Recording]) -> None:
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


def _check_trial_lists(items: list[Recording], trial_lists: TrialLists) -> None:
    known = {r.utt for r in items}
    for name, (source, trials) in trial_lists.items():
        for lineno, (enroll, test, _) in enumerate(trials, 1):
            for utt in (enroll, test):
                if utt not in known:
                    raise DataError(
                        f"{source}:{lineno}: utterance {utt!r} (for {name}) is not in the "
                        "corpus being imported; does the list belong to another part of it?"
                    )


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


def select(
    items: Iterable[Recording], dest: Path, options: ImportOptions, trial_lists: TrialLists
) -> list[Recording]:
    """The recordings to import, sorted by utterance id, after every id check."""
    # Plain str order is code point order = the UTF-8 byte order of LC_ALL=C (kaldi_sort_key),
    # and much cheaper for a million ids.
    items = sorted(items, key=lambda r: r.utt)
    if not items:
        raise DataError(f"{dest}: no audio files found to import")
    _check_ids(items)
    check_replaceable(dest)
    _check_trial_lists(items, trial_lists)
    items = _select_speakers(items, options)
    if not items:
        raise DataError(f"{dest}: no utterance left after speaker selection")
    return [_readable_name(r) for r in items]


def _readable_name(r: Recording) -> Recording:
    """A file whose name is not UTF-8 (a Latin-1 name on a UTF-8 system) cannot go in
    wav.scp, a UTF-8 table: it is excluded as bad, its name shown with the odd bytes
    escaped (``caf\\xe9.wav``)."""
    try:
        r.path.encode("utf-8")
        return r
    except UnicodeEncodeError:
        shown = os.fsencode(r.path).decode("utf-8", "backslashreplace")
        why = "file name is not UTF-8; rename it (e.g. convmv -f latin1 -t utf8)"
        return r._replace(path=shown, error=why)


# ----------------------------------------------------------------------------- 2. probe


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


def probe(
    items: list[Recording], dest: Path, options: ImportOptions, chunk_seconds: float
) -> list[AudioInfo]:
    """One :class:`AudioInfo` per recording: its header, or what the duration table says."""
    if not options.check_audio:
        return _unchecked_infos(items, options, dest, chunk_seconds)
    to_probe = [r for r in items if r.error is None]
    probed = iter(probe_audio_files([r.path for r in to_probe], nj=options.nj))
    return [AudioInfo(error=r.error) if r.error else next(probed) for r in items]


# ----------------------------------------------------------------------------- 3. filter


@dataclass
class Filtered:
    """What the audio policy keeps and leaves out."""

    kept: list[tuple[Recording, AudioInfo]]
    excluded: list[tuple[str, str, str]]  # (utt, reason, path)
    wrong_rate: list[tuple[str, int]]  # (path, rate), among the kept
    bad: int
    multichannel: int


def filter_audio(
    items: list[Recording], infos: list[AudioInfo], dest: Path, options: ImportOptions
) -> Filtered:
    """Apply the audio policy (module docstring); raises when it refuses the import."""
    with_durations = options.check_audio or options.durations is not None
    out = Filtered([], [], [], 0, 0)
    for r, info in zip(items, infos):
        if info.error:
            out.excluded.append((r.utt, f"unreadable: {info.error}", r.path))
            out.bad += 1
        elif info.frames == 0:
            out.excluded.append((r.utt, "empty: 0 samples", r.path))
            out.bad += 1
        elif with_durations and info.duration < options.min_duration:
            why = f"too short: {info.duration:.3f} s < min-duration {options.min_duration} s"
            out.excluded.append((r.utt, why, r.path))
        else:
            if info.sample_rate != options.sample_rate:
                out.wrong_rate.append((r.path, info.sample_rate))
            if info.channels > 1:
                out.multichannel += 1
            out.kept.append((r, info))

    if out.wrong_rate and not options.allow_resample:
        shown = "; ".join(f"{p}: {sr} Hz" for p, sr in out.wrong_rate[:10])
        raise DataError(
            f"{len(out.wrong_rate)} files are not {options.sample_rate} Hz ({shown}); resample "
            "the corpus, or pass --allow-resample to record rates in utt2sr and resample on read"
        )
    if out.wrong_rate:
        log.warning(
            "%d files are not %d Hz (e.g. %s: %d Hz); rates recorded in utt2sr",
            len(out.wrong_rate),
            options.sample_rate,
            *out.wrong_rate[0],
        )
    if out.multichannel:
        example = next(r.path for r, i in out.kept if i.channels > 1)
        log.warning(
            "%d files have more than one channel (e.g. %s); readers use the first channel",
            out.multichannel,
            example,
        )
    if out.bad > options.max_bad_fraction * len(items):
        report = dest.parent / f"{dest.name}.bad_audio.txt"
        with atomic_write(report) as f:
            f.writelines(f"{u}\t{why}\t{p}\n" for u, why, p in out.excluded)
        broken = [(p, why) for _, why, p in out.excluded if why.startswith(("unreadable", "empty"))]
        shown = "\n  ".join(f"{p}: {why}" for p, why in broken[:10])
        raise DataError(
            f"{out.bad} of {len(items)} files are unreadable or empty, more than "
            f"--max-bad-fraction {options.max_bad_fraction}; nothing written to {dest}. All "
            f"excluded files are listed in {report}:\n  {shown}"
        )
    if not out.kept:
        raise DataError(
            f"{dest}: every file was excluded ({len(out.excluded)}); see the reasons above"
        )
    return out


def _silent_file(path: str) -> bool:
    try:
        return is_silent(read_audio(path, sample_rate=sf.info(path).samplerate))
    except (DataError, sf.LibsndfileError, RuntimeError):
        return False  # unreadable files were excluded by the header check already


def silent_recordings(filtered: Filtered, options: ImportOptions) -> list[str]:
    """Utterance ids (recordings) of the kept files whose audio is digitally silent."""
    paths = [r.path for r, _ in filtered.kept]
    with ProcessPoolExecutor(max_workers=options.nj) as pool:
        flags = list(pool.map(_silent_file, paths, chunksize=64))
    return [r.utt for (r, _), silent in zip(filtered.kept, flags) if silent]


# ----------------------------------------------------------------------------- 4. tabulate


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


def tabulate(
    filtered: Filtered, options: ImportOptions, chunk_seconds: float
) -> dict[str, list[tuple[str, str]]]:
    """The rows of every per-utterance (and, with chunks, per-recording) file, unsorted.

    ``chunk_seconds > 0`` makes virtual chunks: ``wav.scp`` keyed by recording (= the item's
    utt id) and ``segments`` with one utterance ``<recording>-NNNN`` per chunk.
    """
    # Lists, not dicts: a million-entry import holds several of them at once.
    tables: dict[str, list[tuple[str, str]]] = {"wav.scp": [], "utt2spk": []}
    if options.check_audio or options.durations is not None:
        tables["utt2dur"] = []
    if all(r.session is not None for r, _ in filtered.kept):
        tables["utt2session"] = []
    if options.allow_resample and filtered.wrong_rate:
        tables["utt2sr"] = []
    if chunk_seconds > 0:
        tables["segments"] = []
    for r, info in filtered.kept:
        tables["wav.scp"].append((r.utt, r.path))
        rate = info.sample_rate
        if chunk_seconds > 0:
            spans = _chunk(info.frames, rate, chunk_seconds, options.min_duration)
            width = max(4, len(str(len(spans) - 1)))
            units = [(f"{r.utt}-{i:0{width}d}", s, e) for i, (s, e) in enumerate(spans)]
        else:
            units = [(r.utt, 0, info.frames)]
        for utt, start, end in units:
            tables["utt2spk"].append((utt, r.speaker))
            if "utt2dur" in tables:
                seconds = (end - start) / rate if chunk_seconds > 0 else info.duration
                tables["utt2dur"].append((utt, format_seconds(seconds)))
            if "segments" in tables:
                times = f"{format_seconds(start / rate)} {format_seconds(end / rate)}"
                tables["segments"].append((utt, f"{r.utt} {times}"))
            if "utt2session" in tables:
                tables["utt2session"].append((utt, r.session))
            if "utt2sr" in tables:
                tables["utt2sr"].append((utt, str(rate)))
    return tables


def keep_trials(
    trial_lists: TrialLists, utts: Collection[str]
) -> tuple[dict[str, list[Trial]], list[str]]:
    """(the trials of each list whose two sides were kept, the dropped lines as text)."""
    kept: dict[str, list[Trial]] = {}
    dropped: list[str] = []
    for name, (_, trials) in trial_lists.items():
        kept[name] = []
        for lineno, trial in enumerate(trials, 1):
            if trial[0] in utts and trial[1] in utts:
                kept[name].append(trial)
            else:
                label = "target" if trial[2] else "nontarget"
                dropped.append(f"{name} {lineno} {trial[0]} {trial[1]} {label}\n")
    return kept, dropped


# ----------------------------------------------------------------------------- 5. write


def write(
    dest: Path,
    tables: dict[str, list[tuple[str, str]]],
    utt2spk: dict[str, str],
    trials: dict[str, list[Trial]],
    excluded: list[tuple[str, str, str]],
    dropped_trials: list[str],
) -> int:
    """Write the data dir (atomically, read back and validated); returns the speaker count.

    ``tables`` and ``utt2spk`` are emptied once written, so that the read-back check of a
    million-entry import does not hold them too.
    """
    with atomic_dir(dest) as tmp:
        for name, rows in tables.items():
            # Sorting (key, value) pairs whose keys are unique sorts by key, in plain str order
            # (= LC_ALL=C); near-free when the rows already are in order (no chunks).
            rows.sort()
            write_table(tmp / name, rows, sort=False)
        tables.clear()
        spk2utt = spk2utt_from_utt2spk(utt2spk)
        utt2spk.clear()
        num_spk = len(spk2utt)
        write_table(tmp / "spk2utt", [(s, " ".join(u)) for s, u in spk2utt.items()], sort=False)
        del spk2utt
        for name, kept in trials.items():
            write_trials(tmp / name, kept)
        with atomic_write(tmp / "excluded.txt") as f:
            f.writelines(f"{u}\t{why}\t{p}\n" for u, why, p in excluded)
        if dropped_trials:
            with atomic_write(tmp / "excluded_trials.txt") as f:
                f.writelines(dropped_trials)
        # Independent check of what was written, read back from the files.
        validate_data_dir(tmp, check_wav_exists=False)
    return num_spk


def import_recordings(
    items: Iterable[Recording],
    dest: PathLike,
    options: ImportOptions | None = None,
    chunk_seconds: float = 0.0,
    trial_lists: TrialLists | None = None,
) -> ImportReport:
    """Check the audio of ``items`` and write the data dir ``dest`` (see the module docstring).

    ``trial_lists``: trial file name -> (source list, trials); every utterance they name must
    be among ``items`` (an error otherwise); trials naming an excluded utterance are dropped
    and written to ``excluded_trials.txt``.
    """
    options = options or ImportOptions()
    dest = Path(dest)
    trial_lists = trial_lists or {}
    items = select(items, dest, options, trial_lists)
    filtered = filter_audio(items, probe(items, dest, options, chunk_seconds), dest, options)
    del items
    silent = silent_recordings(filtered, options) if options.check_silence else None
    tables = tabulate(filtered, options, chunk_seconds)
    utt2spk = dict(tables["utt2spk"])
    trials, dropped = keep_trials(trial_lists, utt2spk)
    if dropped:
        log.warning(
            "%d trials name an excluded utterance and were dropped; listed in %s",
            len(dropped),
            dest / "excluded_trials.txt",
        )
    num_files, excluded = len(filtered.kept), filtered.excluded
    bad, multichannel = filtered.bad, filtered.multichannel
    del filtered
    num_utts = len(utt2spk)
    num_spk = write(dest, tables, utt2spk, trials, excluded, dropped)
    if silent is not None:
        report_silent(silent, dest / "silent.txt", options.on_silence)

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
        trials={name: len(t) for name, t in trials.items()},
    )
