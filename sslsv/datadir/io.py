"""Kaldi data directories: the files, their roles, and reading and writing them.

File roles
- per-utterance files (:data:`UTT_FILES`), keyed by utterance id; all must list exactly the
  utterances of ``utt2spk``.
- ``segments`` (``utt recording start end``, seconds): when present, ``wav.scp`` and
  :data:`RECORDING_FILES` are keyed by recording id instead, and each utterance is the span
  ``[start, end)`` of its recording. :func:`read_audio_sources` gives every utterance's
  :class:`sslsv.audio.AudioSource` the same way whether or not a data dir has ``segments``;
  every stage reads utterances through it.
- per-speaker files (:data:`SPK_FILES`, plus ``spk2utt``), keyed by speaker id.
- trial lists: ``trials`` and ``trials_<name>`` (no dot in the name), each line
  ``enroll test target|nontarget``; kept in their own order, never sorted.

The data-dir tools (Kaldi's ``utils/`` scripts as functions) are in
:mod:`sslsv.datadir.validate`, :mod:`sslsv.datadir.fix` and :mod:`sslsv.datadir.tools`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from sslsv.audio import AudioSource
from sslsv.errors import DataError
from sslsv.fileio import read_dict, read_table, utf8_text, write_table

PathLike = str | os.PathLike

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
_ODD_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def sanitize_id(text: str) -> str:
    """An id safe for Kaldi tables: runs of characters other than ``A-Za-z0-9_.-`` -> ``_``."""
    return _ODD_CHARS.sub("_", text)


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
                "to files first (data preparation does this for VoxCeleb2 m4a)"
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


def parse_segment(value: str) -> Segment:
    """One ``segments`` value (``recording start end``); ValueError says what is wrong."""
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
    if end == -1 and 0.0 <= start < math.inf:
        return Segment(fields[0], start, None)
    if not (0.0 <= start < end < math.inf):
        raise ValueError(f"need 0 <= start < end (or end -1), got {fields[1]} {fields[2]}")
    return Segment(fields[0], start, end)


def read_segments(path: PathLike) -> dict[str, Segment]:
    """Read a Kaldi ``segments`` file: ``utt recording start end`` (seconds) per line."""
    out: dict[str, Segment] = {}
    for lineno, (utt, value) in enumerate(read_table(path), 1):
        if utt in out:
            raise DataError(f"{path}:{lineno}: duplicate utterance {utt!r}")
        try:
            out[utt] = parse_segment(value)
        except ValueError as e:
            raise DataError(f"{path}:{lineno}: utterance {utt!r}: {e}") from None
    return out


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


def present_files(data_dir: PathLike, names: Iterable[str]) -> list[str]:
    """The files of ``names`` that exist in ``data_dir``, in the given order."""
    return [n for n in names if (Path(data_dir) / n).is_file()]


def utterance_files(data_dir: PathLike) -> list[str]:
    """Names of the per-utterance files present in ``data_dir``."""
    data_dir = Path(data_dir)
    names = present_files(data_dir, UTT_FILES)
    if "segments" in names:
        names.remove("wav.scp")
    return names


def recording_files(data_dir: PathLike) -> list[str]:
    """Names of the per-recording files present (only meaningful with ``segments``)."""
    data_dir = Path(data_dir)
    if not (data_dir / "segments").is_file():
        return []
    return present_files(data_dir, ("wav.scp", *RECORDING_FILES))


def trial_files(data_dir: PathLike) -> list[str]:
    """Names of the trial lists in ``data_dir`` (``trials``, ``trials_<name>``), sorted."""
    data_dir = Path(data_dir)
    return sorted(
        p.name for p in data_dir.iterdir() if p.is_file() and _TRIALS_NAME.fullmatch(p.name)
    )


def read_id_list(path: PathLike, what: str = "id") -> list[str]:
    """First column of each non-empty line of ``path`` (utterance or speaker lists)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} list not found")
    with utf8_text(path) as f:
        return [line.split()[0] for line in f if line.strip()]


def read_durations(path: PathLike) -> dict[str, float]:
    """A ``utt2dur``-style table (``utt seconds``); bad lines are errors naming file and line."""
    durations: dict[str, float] = {}
    for lineno, (utt, value) in enumerate(read_table(path), 1):
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not 0 <= seconds < math.inf:
            raise DataError(f"{path}:{lineno}: utterance {utt!r}: bad duration {value!r}")
        if utt in durations:
            raise DataError(f"{path}:{lineno}: duplicate utterance {utt!r}")
        durations[utt] = seconds
    return durations


def format_seconds(seconds: float) -> str:
    """Seconds as text that reads back as the same float (Kaldi tables are text)."""
    return repr(float(seconds))
