"""Score files (``enroll test score`` per line) and their alignment with trial lists.

Trials and scores are matched by (enroll, test) pair, never by line number: a score file in
another order, or with a pair missing or extra, is handled or named.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sslsv.datadir.io import read_trials
from sslsv.errors import DataError
from sslsv.fileio import atomic_write, utf8_text


def write_scores(
    path: str | os.PathLike, enrolls: Sequence[str], tests: Sequence[str], scores: np.ndarray
) -> None:
    """Write ``enroll test score`` lines atomically (9 significant digits: float32-exact)."""
    block = 1 << 20
    with atomic_write(path) as f:
        for start in range(0, len(scores), block):
            stop = start + block
            f.write(
                "".join(
                    f"{e} {t} {s:.9g}\n"
                    for e, t, s in zip(
                        enrolls[start:stop], tests[start:stop], scores[start:stop].tolist()
                    )
                )
            )


def read_scores(path: str | os.PathLike) -> tuple[list[str], list[str], np.ndarray]:
    """Read ``enroll test score`` lines: ``(enrolls, tests, scores)`` in file order."""
    if not Path(path).is_file():
        raise DataError(f"{path}: file not found")
    enrolls, tests, values = [], [], []
    with utf8_text(path) as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if len(fields) != 3:
                raise DataError(f"{path}:{lineno}: expected 'enroll test score', got {line!r}")
            try:
                value = float(fields[2])
            except ValueError:
                raise DataError(f"{path}:{lineno}: score {fields[2]!r} is not a number") from None
            if not math.isfinite(value):
                raise DataError(f"{path}:{lineno}: score {fields[2]!r} is not finite")
            enrolls.append(fields[0])
            tests.append(fields[1])
            values.append(value)
    return enrolls, tests, np.asarray(values, dtype=np.float64)


def id_codes(ids: Sequence[str], vocab: dict[str, int]) -> np.ndarray:
    """Utterance ids as int64 codes; ``vocab`` (id -> code, in first-seen order) is
    extended in place, so codes from one ``vocab`` are comparable."""
    return np.fromiter(
        (vocab.setdefault(u, len(vocab)) for u in ids), dtype=np.int64, count=len(ids)
    )


def pair_codes(enroll_codes: np.ndarray, test_codes: np.ndarray) -> np.ndarray:
    """One int64 per (enroll, test) pair of id codes (fewer than 2**31 distinct ids), so
    pairs compare and sort as integers."""
    return enroll_codes * (1 << 31) + test_codes


def _first_duplicates(codes: np.ndarray, n: int = 3) -> np.ndarray:
    """Positions of the first ``n`` entries whose code also occurs earlier."""
    order = np.argsort(codes, kind="stable")
    repeated = np.flatnonzero(codes[order][1:] == codes[order][:-1]) + 1
    return np.sort(order[repeated])[:n]


def _pair_list(enrolls: Sequence[str], tests: Sequence[str], positions: np.ndarray) -> str:
    return ", ".join(f"({enrolls[i]} {tests[i]})" for i in positions)


def check_unique_pairs(
    path: str | os.PathLike, enrolls: Sequence[str], tests: Sequence[str], codes: np.ndarray
) -> None:
    """Refuse a list naming a pair twice: matching by (enroll, test) would be ambiguous."""
    ordered = np.sort(codes)  # (a plain sort beats np.unique's hashing here)
    if np.any(ordered[1:] == ordered[:-1]):
        dup = _first_duplicates(codes)
        raise DataError(
            f"{path}: duplicate (enroll test) pair(s), e.g. line(s) "
            f"{', '.join(str(i + 1) for i in dup)}: {_pair_list(enrolls, tests, dup)}"
        )


def scores_for_trials(
    trials_path: str | os.PathLike, scores_path: str | os.PathLike
) -> tuple[np.ndarray, np.ndarray]:
    """Read a trial list and a score file; return ``(scores, labels)`` in trial order.

    A score line is matched to a trial by (enroll, test). A trial with no score, a score
    with no trial and a pair named twice in either file are errors naming the first few.
    """
    trials = read_trials(trials_path)
    t_enroll = [t[0] for t in trials]
    t_test = [t[1] for t in trials]
    labels = np.fromiter((t[2] for t in trials), dtype=bool, count=len(trials))
    del trials
    s_enroll, s_test, values = read_scores(scores_path)
    vocab: dict[str, int] = {}
    trial_codes = pair_codes(id_codes(t_enroll, vocab), id_codes(t_test, vocab))
    score_codes = pair_codes(id_codes(s_enroll, vocab), id_codes(s_test, vocab))
    check_unique_pairs(trials_path, t_enroll, t_test, trial_codes)
    check_unique_pairs(scores_path, s_enroll, s_test, score_codes)
    if np.array_equal(trial_codes, score_codes):  # the usual case: same order
        return values, labels
    order = np.argsort(score_codes)
    sorted_codes = score_codes[order]
    if len(sorted_codes):
        pos = np.minimum(np.searchsorted(sorted_codes, trial_codes), len(sorted_codes) - 1)
        found = sorted_codes[pos] == trial_codes
    else:
        pos, found = np.zeros(len(trial_codes), np.int64), np.zeros(len(trial_codes), bool)
    if not found.all():
        missing = np.flatnonzero(~found)
        raise DataError(
            f"{scores_path}: {len(missing)} trial(s) of {trials_path} have no score, e.g. "
            f"{_pair_list(t_enroll, t_test, missing[:3])}"
        )
    if len(score_codes) != len(trial_codes):
        extra = np.flatnonzero(~np.isin(score_codes, trial_codes))
        raise DataError(
            f"{scores_path}: {len(extra)} score(s) match no trial of {trials_path}, e.g. "
            f"{_pair_list(s_enroll, s_test, extra[:3])}"
        )
    return values[order[pos]], labels
