"""Data-dir tools, Kaldi's ``utils/`` scripts as functions over paths: combine, subset,
split, and ``utt2dur``. Every result is built in a temporary folder and swapped in whole."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from sslsv import cli
from sslsv.audio import probe_audio_files
from sslsv.datadir.io import (
    RECORDING_FILES,
    SPK_FILES,
    UTT_FILES,
    PathLike,
    format_seconds,
    present_files,
    read_audio_sources,
    read_id_list,
    read_trials,
    recording_files,
    spk2utt_from_utt2spk,
    trial_files,
    utterance_files,
    write_trials,
)
from sslsv.datadir.validate import validate_data_dir
from sslsv.errors import DataError
from sslsv.fileio import atomic_dir, kaldi_sort_key, read_dict, write_table
from sslsv.reuse import changes, remove_stamp, text_digest, write_stamp

log = logging.getLogger(__name__)


def check_replaceable(dest: Path) -> None:
    """Refuse to replace a non-empty directory that does not look like a data dir."""
    if dest.is_file():
        raise DataError(f"{dest}: exists and is a file, not a data dir")
    if dest.is_dir() and any(dest.iterdir()):
        if not present_files(dest, ("utt2spk", "wav.scp", "feats.scp")):
            raise DataError(
                f"{dest}: exists, is not empty and does not look like a data dir "
                "(no utt2spk/wav.scp); refusing to replace it"
            )


def write_filtered(src: Path, dest: Path, keep: set[str], with_trials: bool) -> None:
    """Write the files of ``src`` restricted to utterances ``keep`` into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
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
    for name in present_files(src, SPK_FILES):
        rows = read_dict(src / name)
        write_table(dest / name, {s: v for s, v in rows.items() if s in spk2utt})
    if with_trials:
        for name in trial_files(src):
            trials = [t for t in read_trials(src / name) if t[0] in keep and t[1] in keep]
            if trials:
                write_trials(dest / name, trials)


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
        validate_data_dir(src, check_wav_exists=False)
    # DEST is replaced whole: neither a source nor a folder above one.
    cli.check_io({f"SRC{i}": s for i, s in enumerate(srcs, 1)}, folders={"DEST": dest})
    with_segments = [(s / "segments").is_file() for s in srcs]
    if any(with_segments) and not all(with_segments):
        raise DataError(
            "combine_data_dirs: some sources have a segments file and some do not: "
            + ", ".join(
                f"{s} ({'segments' if w else 'no segments'})" for s, w in zip(srcs, with_segments)
            )
        )
    check_replaceable(dest)
    warnings = []
    file_sets = [
        set(utterance_files(s)) | set(recording_files(s)) | set(present_files(s, SPK_FILES))
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

    with atomic_dir(dest) as tmp:
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
    if any(trial_files(s) for s in srcs):
        warnings.append("combine_data_dirs: trial lists of the sources are not combined")
    for w in warnings:
        log.warning(w)
    return warnings


def _ids(ids: Iterable[str] | PathLike, what: str) -> list[str]:
    """Ids given as an iterable, or as the first column of a file."""
    if isinstance(ids, (str, os.PathLike)):
        return read_id_list(ids, what)
    return list(ids)


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
    validate_data_dir(src, check_wav_exists=False)
    lists = {"--utt-list": utt_list, "--spk-list": spk_list}
    named = {k: v for k, v in lists.items() if isinstance(v, (str, os.PathLike))}
    cli.check_io({"SRC": src, **named}, folders={"DEST": dest})  # DEST is replaced whole
    utt2spk = read_dict(src / "utt2spk")
    if utt_list is not None:
        wanted = _ids(utt_list, "utterance")
        unknown = [u for u in wanted if u not in utt2spk]
        if unknown:
            raise DataError(
                f"subset_data_dir: {len(unknown)} utterances of the list are not in "
                f"{src}/utt2spk, e.g. {unknown[:5]}"
            )
        keep = set(wanted)
    elif spk_list is not None:
        wanted = set(_ids(spk_list, "speaker"))
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
    check_replaceable(dest)
    with atomic_dir(dest) as tmp:
        write_filtered(src, tmp, keep, with_trials=True)
        validate_data_dir(tmp, check_wav_exists=False)
    log.info("subset_data_dir: %d of %d utterances of %s -> %s", len(keep), len(utt2spk), src, dest)
    return dest


# ----------------------------------------------------------------------------- split


def _split_inputs(data_dir: Path, n: int, per_speaker: bool) -> dict:
    """What a split is made from (see :mod:`sslsv.reuse`): every file it copies from."""
    names = [*utterance_files(data_dir), *recording_files(data_dir)]
    names = sorted([*names, *present_files(data_dir, SPK_FILES)])
    return {
        "format": "sslsv-split-1",
        "settings": {"parts": n, "per_speaker": per_speaker},
        "files": text_digest(*(data_dir / name for name in names)),
    }


def split_data_dir(
    path: PathLike, n: int, per_speaker: bool = False, dest: PathLike | None = None
) -> list[Path]:
    """Split a data dir into ``n`` parts ``DIR/split{n}/{1..n}`` (or ``DIR/split{n}spk/...``),
    or ``DEST/{1..n}`` (a stage that only reads the data dir splits it beside its output).

    Per utterance (default): contiguous blocks of the sorted utterances whose sizes differ by
    at most one, so that a change to one utterance changes one part. ``per_speaker``: each
    speaker's utterances stay in one part; speakers go, largest first, to the part with the
    fewest utterances so far (ties: lowest index). An existing split made from identical files
    is reused. Returns the part directories.
    """
    data_dir = Path(path)
    if n < 1:
        raise DataError(f"split_data_dir: number of parts must be >= 1, got {n}")
    validate_data_dir(data_dir, check_wav_exists=False)
    default = data_dir / (f"split{n}spk" if per_speaker else f"split{n}")
    split_dir = Path(dest) if dest is not None else default
    parts = [split_dir / str(i) for i in range(1, n + 1)]
    inputs = _split_inputs(data_dir, n, per_speaker)
    if not changes(split_dir, inputs) and all((p / "utt2spk").is_file() for p in parts):
        log.info("split_data_dir: %s is up to date, reusing it", split_dir)
        return parts
    # The split dir is replaced whole: a DEST that is the data dir or holds it would lose it.
    # (After the reuse: an up-to-date split of a read-only data dir is still used.)
    cli.check_io({"DIR": data_dir}, folders={"split dir": split_dir})
    remove_stamp(split_dir)

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

    with atomic_dir(split_dir) as tmp:
        for i, group in enumerate(groups, 1):
            write_filtered(data_dir, tmp / str(i), group, with_trials=False)
    write_stamp(split_dir, inputs)
    sizes = [len(g) for g in groups]
    log.info(
        "split_data_dir: %s -> %d parts of %d..%d utterances", data_dir, n, min(sizes), max(sizes)
    )
    return parts


# ----------------------------------------------------------------------------- utt2dur


def compute_utt2dur(path: PathLike, nj: int = 1) -> dict[str, float]:
    """Write ``utt2dur`` (seconds) from audio headers, ``nj`` processes; return it.

    With ``segments``, durations are ``end - start`` (no audio is opened, as in Kaldi) except for
    segments ending at ``-1`` (end of file).
    """
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
