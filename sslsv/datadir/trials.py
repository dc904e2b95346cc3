"""Trial lists for corpora without official ones (LibriSpeech, folders, CSV lists)."""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

from sslsv.errors import DataError
from sslsv.fileio import kaldi_sort_key

log = logging.getLogger(__name__)

Trial = tuple[str, str, bool]


class TrialCounts(NamedTuple):
    """What a trial list holds; ``cross_session_target`` is 0 when sessions are unknown."""

    trials: int
    target: int
    cross_session_target: int
    speakers: int
    utterances: int

    def describe(self, sessions_known: bool) -> str:
        """``N trials: T target (X across sessions (utt2session)), M non-target``, or
        ``(sessions unknown)`` for a list made without ``utt2session``."""
        across = (
            f"{self.cross_session_target} across sessions (utt2session)"
            if sessions_known
            else "sessions unknown"
        )
        return (
            f"{self.trials} trials: {self.target} target ({across}), "
            f"{self.trials - self.target} non-target"
        )


def count_trials(
    trials: list[Trial], utt2spk: dict[str, str], utt2session: dict[str, str] | None = None
) -> TrialCounts:
    """Count trials, targets, targets whose two sides come from different sessions, and the
    speakers and utterances the list uses. Every utterance must be in ``utt2spk``."""
    used: set[str] = set()
    target = cross = 0
    for enroll, test, is_target in trials:
        used.add(enroll)
        used.add(test)
        if is_target:
            target += 1
            if utt2session is not None and utt2session[enroll] != utt2session[test]:
                cross += 1
    unknown = sorted(u for u in used if u not in utt2spk)
    if unknown:
        raise DataError(f"trials name {len(unknown)} utterances not in utt2spk, e.g. {unknown[:3]}")
    return TrialCounts(len(trials), target, cross, len({utt2spk[u] for u in used}), len(used))


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def make_trials(
    utt2spk: dict[str, str],
    utt2session: dict[str, str] | None = None,
    trials_per_utt: int = 10,
    target_fraction: float = 0.5,
    seed: int = 0,
) -> list[Trial]:
    """Draw about ``trials_per_utt`` trials with each utterance as enrollment.

    Targets pair different utterances of one speaker, from different sessions when sessions
    are known (a speaker with a single session falls back to different utterances of it, and
    is logged). Non-targets pair different speakers. No unordered pair appears twice. Over all
    utterances ``round(N * trials_per_utt * target_fraction)`` targets are asked for; when a
    speaker has too few candidates the shortfall is logged, not filled with non-targets.
    Deterministic given ``seed``; returned sorted by (enroll, test) in ``LC_ALL=C`` order.
    """
    if trials_per_utt < 1:
        raise DataError(f"trials_per_utt must be >= 1, got {trials_per_utt}")
    if not 0.0 <= target_fraction <= 1.0:
        raise DataError(f"target_fraction must be in [0, 1], got {target_fraction}")
    utts = sorted(utt2spk, key=kaldi_sort_key)
    if not utts:
        raise DataError("make_trials: no utterances")
    if utt2session is not None:
        missing = [u for u in utts if u not in utt2session]
        if missing:
            raise DataError(
                f"utt2session: no session for {len(missing)} utterances, e.g. {missing[:3]}"
            )

    spk_sessions: dict[str, dict[str, list[str]]] = {}
    for utt in utts:
        session = utt2session[utt] if utt2session is not None else utt
        spk_sessions.setdefault(utt2spk[utt], {}).setdefault(session, []).append(utt)
    single_session = sorted(
        (s for s, sessions in spk_sessions.items() if len(sessions) == 1 and utt2session),
        key=kaldi_sort_key,
    )
    if single_session:
        log.info(
            "make_trials: %d speakers have one session (e.g. %s); their target trials pair "
            "different utterances of that session",
            len(single_session),
            single_session[:3],
        )
    if len(spk_sessions) < 2 and target_fraction < 1:
        raise DataError("make_trials: non-target trials need at least two speakers")

    rng = np.random.default_rng(seed)
    n = len(utts)
    total = trials_per_utt * target_fraction
    # Exact total, spread evenly: the utterance at position k of a random order gets
    # round((k+1)*total) - round(k*total) targets.
    order = rng.permutation(n)
    num_targets = np.empty(n, dtype=np.int64)
    for k, i in enumerate(order):
        num_targets[i] = round((k + 1) * total) - round(k * total)

    used: set[tuple[str, str]] = set()
    trials: list[Trial] = []
    short_targets = short_nontargets = 0
    for i, utt in enumerate(utts):
        spk = utt2spk[utt]
        sessions = spk_sessions[spk]
        if utt2session is not None and len(sessions) > 1:
            candidates = [v for s, vs in sessions.items() if s != utt2session[utt] for v in vs]
        else:
            candidates = [v for vs in sessions.values() for v in vs if v != utt]
        candidates = [v for v in candidates if _pair(utt, v) not in used]
        want = int(num_targets[i])
        chosen = [candidates[j] for j in rng.permutation(len(candidates))[:want]]
        short_targets += want - len(chosen)
        for v in chosen:
            used.add(_pair(utt, v))
            trials.append((utt, v, True))

        want = trials_per_utt - want
        picked: list[str] = []
        # Rejection sampling: cheap while most utterances are valid non-target partners.
        for _ in range(20 * want + 50):
            if len(picked) == want:
                break
            v = utts[int(rng.integers(n))]
            if utt2spk[v] != spk and _pair(utt, v) not in used:
                used.add(_pair(utt, v))
                picked.append(v)
        if len(picked) < want:
            rest = [v for v in utts if utt2spk[v] != spk and _pair(utt, v) not in used]
            extra = [rest[j] for j in rng.permutation(len(rest))[: want - len(picked)]]
            for v in extra:
                used.add(_pair(utt, v))
            picked += extra
        short_nontargets += want - len(picked)
        trials += [(utt, v, False) for v in picked]

    if short_targets or short_nontargets:
        log.warning(
            "make_trials: %d target and %d non-target trials could not be drawn (too few "
            "distinct partners); lists are shorter than asked",
            short_targets,
            short_nontargets,
        )
    # Debug level: the command line (sslsv.bin.make_trials) counts and reports the trials
    # once, with the data dir and the output file; counting here again is only for debugging.
    if log.isEnabledFor(logging.DEBUG):
        counts = count_trials(trials, utt2spk, utt2session)
        log.debug(
            "make_trials: %d speakers (%d utterances) -> %s",
            len(spk_sessions),
            n,
            counts.describe(utt2session is not None),
        )
    trials.sort(key=lambda t: (kaldi_sort_key(t[0]), kaldi_sort_key(t[1])))
    return trials
