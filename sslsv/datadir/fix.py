"""Making a data dir consistent (Kaldi's ``fix_data_dir.sh``)."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from sslsv.datadir.io import (
    SPK_FILES,
    PathLike,
    present_files,
    recording_files,
    spk2utt_from_utt2spk,
    trial_files,
    utterance_files,
)
from sslsv.datadir.validate import check_value, validate_data_dir
from sslsv.errors import DataError
from sslsv.fileio import atomic_write, kaldi_sort_key, utf8_text, write_table

log = logging.getLogger(__name__)


def _read_tolerant(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(good rows, bad ids -> why) of a table; bad = malformed, bad value, or conflicting dup."""
    rows: dict[str, str] = {}
    bad: dict[str, str] = {}
    with utf8_text(path) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").split(maxsplit=1)
            if not parts:
                continue
            key = parts[0]
            value = parts[1].strip() if len(parts) > 1 else ""
            problem = "no value" if not value else check_value(path.name, value)
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
    present = [*names, *rec_tables, *present_files(data_dir, ("spk2utt", *SPK_FILES))]
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
    for name in present_files(data_dir, SPK_FILES):
        rows, bad = _read_tolerant(data_dir / name)
        other += [("speaker", spk, why) for spk, why in bad.items()]
        unused = sorted(rows.keys() - spk2utt.keys(), key=kaldi_sort_key)
        other += [("speaker", spk, f"{name}: speaker has no kept utterance") for spk in unused]
        write_table(data_dir / name, {s: v for s, v in rows.items() if s in spk2utt})

    trials_dropped = {}
    for name in trial_files(data_dir):
        kept_lines, dropped_lines = [], 0
        with utf8_text(data_dir / name) as f:
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
