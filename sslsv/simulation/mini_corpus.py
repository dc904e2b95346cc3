"""The offline synthetic multi-speaker corpus of ``egs/mini``: its plan, rendering and files.

Each pseudo-speaker is a fixed eSpeak voice (language/accent + ``+variant``) with its own base
pitch, pitch range and speaking rate. Utterances jitter the prosody around the speaker's base,
and pass through a per-session channel (band-pass + peaking EQ, coloured background noise)
with a little per-utterance variation, random gain and random leading/trailing silence.

Layout written by :func:`make_corpus`::

    OUT/wav/SPK/SESSION/SPK-SESSION-NNNN.wav   mono int16 at ``sample_rate``
    OUT/speakers.tsv                           header, then per speaker: speaker voice
                                               variant pitch range rate sessions
    OUT/wav.stamp                              written last: the generation settings

Determinism: eSpeak keeps state between syntheses (:mod:`sslsv.simulation.espeak`), so all
synthesis runs in children forked from a process whose eSpeak is initialised but has never
synthesised: one pool worker per speaker in :func:`make_corpus`. The output then depends only
on the arguments (seed, sizes), not on the worker count or the order of work.

Rate: utterances are rendered at :data:`RENDER_RATE`, the rate the channel model is defined
at (band edges up to 7.8 kHz), and resampled to the corpus's ``sample_rate`` (the experiment
config's ``features.sample_rate``) when that is another: a corpus at 8 kHz is the 16 kHz one
band-limited, the same speakers saying the same things.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile

from sslsv.corpora.rate import DEFAULT_SAMPLE_RATE
from sslsv.fileio import atomic_write
from sslsv.reuse import changes, remove_stamp, stamp_path, write_stamp
from sslsv.simulation.dsp import colored_noise, mix_at_snr, peaking_eq_sos
from sslsv.simulation.espeak import ESpeak, SynthError, process_espeak
from sslsv.simulation.sentences import random_sentence

#: The rate utterances are synthesised and processed at (the generator's, not the corpus's).
RENDER_RATE = 16000
MIN_DURATION_S = 2.5
MAX_DURATION_S = 6.0
# Bump when a change alters the generated audio, so that old corpora are not reused.
GENERATOR_VERSION = 1

# Latin-script eSpeak languages/accents. The text is English; a non-English voice reads it
# with its own letter-to-sound rules and phonemes, i.e. with a strong accent.
LANGUAGES: tuple[str, ...] = (
    "en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
    "en-029", "en-us-nyc", "de", "nl", "af", "fr", "fr-be", "es", "es-419", "it", "pt",
    "pt-br", "ro", "ca", "sv", "da", "nb", "pl", "cs", "fi", "hu", "et",
)  # fmt: skip

# Voice variants (files in espeak-ng-data/voices/!v) that sound like a person. Left out:
# robotic ones (robosoft*, UniRobot, anikaRobot, announcer), heavy echo (Demonic,
# RicishayMax*), unvoiced (whisper, whisperf, caleb), test files (fast) and "Mr serious"
# (a space in the file name).
VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "AnxiousAndy", "Denis", "Diogo", "Gene",
    "Gene2", "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike",
    "Nguyen", "Reed", "Storm", "Tweaky", "adam", "anika", "antonio", "aunty", "belinda",
    "benjamin", "boris", "croak", "david", "ed", "edward", "edward2", "grandma", "grandpa",
    "gustave", "ian", "iven", "iven2", "iven3", "iven4", "john", "kaukovalta", "klatt",
    "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "linda", "marcelo", "max", "michel",
    "miguel", "mike2", "norbert", "pablo", "paul", "pedro", "quincy", "rob", "robert",
    "sandro", "shelby", "steph", "steph2", "steph3", "travis", "victor", "zac",
)  # fmt: skip

# Speaker parameter ranges (eSpeak units: pitch and range 0-100, rate in words per minute).
PITCH_RANGE = (20.0, 80.0)
PITCH_SPAN_RANGE = (15.0, 85.0)
RATE_RANGE = (120.0, 220.0)
# Per-utterance prosody jitter around the speaker's base.
PITCH_JITTER = 4.0
SPAN_JITTER = 8.0
RATE_JITTER = 0.06  # relative
# Channel: per-session settings, per-utterance variation around them.
LOW_CUT_HZ = (60.0, 300.0)
HIGH_CUT_HZ = (3400.0, 7600.0)
EQ_GAIN_DB = 6.0  # each of the EQ peaks gets a gain in [-EQ_GAIN_DB, EQ_GAIN_DB]
EQ_FREQ_HZ = (200.0, 5000.0)
EQ_Q = (0.5, 2.0)
NUM_EQ_PEAKS = 2
SNR_DB = (20.0, 40.0)
NOISE_EXPONENT = (0.0, 2.0)  # noise power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown)
LEVEL_DBFS = (-32.0, -18.0)  # RMS level of the whole utterance
SILENCE_S = (0.05, 0.4)  # leading, and minimum trailing, silence


def _trim(audio: np.ndarray, rel_threshold: float = 0.02) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > rel_threshold * np.max(np.abs(audio)))
    return audio[loud[0] : loud[-1] + 1] if loud.size else audio[:0]


def _cut_quietly(audio: np.ndarray, max_len: int, search: int, sample_rate: int) -> np.ndarray:
    """Cut to at most ``max_len`` samples at the quietest 10 ms frame of the last ``search``."""
    if len(audio) <= max_len:
        return audio
    hop = sample_rate // 100
    start = max(max_len - search, hop)
    frames = np.arange(start, max_len - hop + 1, hop)
    energy = [float(np.sum(audio[f : f + hop] ** 2)) for f in frames]
    cut = int(frames[int(np.argmin(energy))] + hop // 2)
    out = audio[:cut].copy()
    fade = min(hop, cut)
    out[cut - fade :] *= np.linspace(1.0, 0.0, fade)
    return out


@dataclass(frozen=True)
class Channel:
    """A recording channel: band-pass, peaking EQs, coloured background noise."""

    low_cut_hz: float
    high_cut_hz: float
    eq: tuple[tuple[float, float, float], ...]  # (f0_hz, gain_db, q) per peak
    noise_exponent: float
    snr_db: float

    def sos(self, sample_rate: int = RENDER_RATE) -> np.ndarray:
        band = scipy.signal.butter(
            2, [self.low_cut_hz, self.high_cut_hz], btype="bandpass", fs=sample_rate, output="sos"
        )
        peaks = [peaking_eq_sos(f0, g, q, sample_rate) for f0, g, q in self.eq]
        return np.concatenate([band, *peaks])


@dataclass(frozen=True)
class SpeakerSpec:
    speaker_id: str
    language: str
    variant: str
    pitch: float
    pitch_range: float
    rate: float
    sessions: tuple[str, ...]
    channels: tuple[Channel, ...]  # one per session

    @property
    def voice(self) -> str:
        return f"{self.language}+{self.variant}"


@dataclass(frozen=True)
class UtteranceSpec:
    utt_id: str
    session_index: int
    seed: int  # drives text, prosody jitter, channel jitter, noise, gain, silences


def _spread(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    """``n`` values covering [low, high] evenly (one per stratum, random within, shuffled)."""
    strata = (np.arange(n) + rng.uniform(size=n)) / n
    return low + (high - low) * rng.permutation(strata)


def _random_channel(rng: np.random.Generator) -> Channel:
    eq = tuple(
        (
            float(math.exp(rng.uniform(math.log(EQ_FREQ_HZ[0]), math.log(EQ_FREQ_HZ[1])))),
            float(rng.uniform(-EQ_GAIN_DB, EQ_GAIN_DB)),
            float(rng.uniform(*EQ_Q)),
        )
        for _ in range(NUM_EQ_PEAKS)
    )
    return Channel(
        low_cut_hz=float(rng.uniform(*LOW_CUT_HZ)),
        high_cut_hz=float(rng.uniform(*HIGH_CUT_HZ)),
        eq=eq,
        noise_exponent=float(rng.uniform(*NOISE_EXPONENT)),
        snr_db=float(rng.uniform(*SNR_DB)),
    )


def plan_speakers(num_speakers: int, seed: int, prefix: str = "spk") -> list[SpeakerSpec]:
    """Speakers with parameters spread over their ranges, deterministic from ``seed``, named
    ``<prefix>001``... (another prefix keeps a second corpus's ids apart from the first's).

    Variants are dealt round-robin from a shuffled list and languages likewise, shifted by
    one each time the variants wrap around: each is used about equally often, and no
    (language, variant) pair repeats for the first #variants x #languages speakers
    (#variants + 1 and #languages are coprime).
    """
    if num_speakers < 1:
        raise SynthError(f"num_speakers must be >= 1, got {num_speakers}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    languages = rng.permutation(len(LANGUAGES))
    variants = rng.permutation(len(VARIANTS))
    pitches = _spread(rng, num_speakers, *PITCH_RANGE)
    spans = _spread(rng, num_speakers, *PITCH_SPAN_RANGE)
    rates = _spread(rng, num_speakers, *RATE_RANGE)
    width = max(3, len(str(num_speakers)))
    speakers = []
    for i in range(num_speakers):
        num_sessions = int(rng.integers(2, 4))
        speakers.append(
            SpeakerSpec(
                speaker_id=f"{prefix}{i + 1:0{width}d}",
                language=LANGUAGES[languages[(i + i // len(VARIANTS)) % len(LANGUAGES)]],
                variant=VARIANTS[variants[i % len(VARIANTS)]],
                pitch=float(pitches[i]),
                pitch_range=float(spans[i]),
                rate=float(rates[i]),
                sessions=tuple(f"s{k + 1}" for k in range(num_sessions)),
                channels=tuple(_random_channel(rng) for _ in range(num_sessions)),
            )
        )
    return speakers


def plan_utterances(
    speaker: SpeakerSpec, speaker_index: int, utts_per_speaker: int, seed: int
) -> list[UtteranceSpec]:
    """Utterances of one speaker, dealt over its sessions (each session gets at least one
    when there are enough utterances)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1, speaker_index]))
    num_sessions = len(speaker.sessions)
    sessions = rng.permutation(np.arange(utts_per_speaker) % num_sessions)
    seeds = np.random.SeedSequence([seed, 2, speaker_index]).generate_state(utts_per_speaker)
    return [
        UtteranceSpec(
            utt_id=f"{speaker.speaker_id}-{speaker.sessions[s]}-{k + 1:04d}",
            session_index=int(s),
            seed=int(seeds[k]),
        )
        for k, s in enumerate(sessions)
    ]


def _jitter_channel(channel: Channel, rng: np.random.Generator) -> Channel:
    """The session's channel, slightly different for this utterance (microphone moved...)."""
    return Channel(
        low_cut_hz=channel.low_cut_hz * float(rng.uniform(0.95, 1.05)),
        high_cut_hz=min(channel.high_cut_hz * float(rng.uniform(0.95, 1.05)), 7800.0),
        eq=tuple((f0, g + float(rng.uniform(-1.0, 1.0)), q) for f0, g, q in channel.eq),
        noise_exponent=channel.noise_exponent,
        snr_db=float(np.clip(channel.snr_db + rng.uniform(-3.0, 3.0), *SNR_DB)),
    )


@dataclass(frozen=True)
class UtteranceScript:
    """Everything random about one utterance, drawn from its seed."""

    num_samples: int  # total length at RENDER_RATE
    lead_samples: int  # leading silence
    speech_budget: int  # most samples of speech (what is left is trailing silence)
    espeak_params: dict[str, int]
    sentences: tuple[str, ...]  # spoken in turn until the budget is filled
    channel: Channel
    level_dbfs: float
    noise_seed: int


def utterance_script(speaker: SpeakerSpec, utt: UtteranceSpec) -> UtteranceScript:
    rng = np.random.default_rng(utt.seed)
    duration = rng.uniform(MIN_DURATION_S, MAX_DURATION_S)
    lead = rng.uniform(*SILENCE_S)
    min_trail = rng.uniform(*SILENCE_S)
    speech_budget = int((duration - lead - min_trail) * RENDER_RATE)
    rate = round(speaker.rate * rng.uniform(1 - RATE_JITTER, 1 + RATE_JITTER))
    pitch = speaker.pitch + rng.uniform(-PITCH_JITTER, PITCH_JITTER)
    span = speaker.pitch_range + rng.uniform(-SPAN_JITTER, SPAN_JITTER)
    params = {
        "rate": int(rate),
        "pitch": int(round(np.clip(pitch, 0, 100))),
        "range": int(round(np.clip(span, 0, 100))),
        "volume": 100,
    }
    # Text for about twice the budget at this rate; the synthesiser stops once it is filled.
    words_needed = 2.0 * speech_budget / RENDER_RATE * rate / 60.0 + 8
    sentences: list[str] = []
    while sum(len(s.split()) for s in sentences) < words_needed:
        sentences.append(random_sentence(rng))
    return UtteranceScript(
        num_samples=int(duration * RENDER_RATE),
        lead_samples=int(lead * RENDER_RATE),
        speech_budget=speech_budget,
        espeak_params=params,
        sentences=tuple(sentences),
        channel=_jitter_channel(speaker.channels[utt.session_index], rng),
        level_dbfs=float(rng.uniform(*LEVEL_DBFS)),
        noise_seed=int(rng.integers(2**63)),
    )


def render_utterance(
    espeak: ESpeak,
    speaker: SpeakerSpec,
    utt: UtteranceSpec,
    fresh: bool = True,
    sample_rate: int = RENDER_RATE,
) -> np.ndarray:
    """Synthesise one utterance: int16 samples at ``sample_rate``, 2.5-6 s long.

    ``fresh``: as in :meth:`ESpeak.synthesize` (False: depends on what this process
    synthesised before).
    """
    script = utterance_script(speaker, utt)
    budget = script.speech_budget
    min_raw = math.ceil((budget / RENDER_RATE + 0.5) * espeak.sample_rate)
    raw = espeak.synthesize(
        speaker.voice,
        script.sentences,
        script.espeak_params,
        min_raw,
        utt.seed & 0x7FFFFFFF,
        fresh=fresh,
    )
    if raw.size == 0:
        raise SynthError(f"{utt.utt_id}: eSpeak produced no audio for voice {speaker.voice!r}")
    speech = scipy.signal.resample_poly(
        raw.astype(np.float64) / 32768.0, RENDER_RATE, espeak.sample_rate
    )
    speech = _trim(speech)
    if len(speech) < budget // 2:
        raise SynthError(
            f"{utt.utt_id}: eSpeak produced only {len(speech) / RENDER_RATE:.2f} s of speech "
            f"for voice {speaker.voice!r}"
        )
    speech = _cut_quietly(speech, budget, RENDER_RATE // 4, RENDER_RATE)
    signal = np.zeros(script.num_samples)
    signal[script.lead_samples : script.lead_samples + len(speech)] = speech
    channel = script.channel
    noise = colored_noise(
        script.num_samples, channel.noise_exponent, np.random.default_rng(script.noise_seed)
    )
    noisy = mix_at_snr(signal, float(np.mean(speech**2)), noise, channel.snr_db)
    signal = scipy.signal.sosfilt(channel.sos(), noisy)
    level = 10.0 ** (script.level_dbfs / 20.0)
    signal *= level / max(float(np.sqrt(np.mean(signal**2))), 1e-12)
    peak = float(np.max(np.abs(signal)))
    if peak > 0.95:  # a loud level on a peaky voice: give up level, never clip
        signal *= 0.95 / peak
    if sample_rate != RENDER_RATE:
        # The filter's ripple may lift a peak a little: clip rather than wrap around.
        signal = np.clip(scipy.signal.resample_poly(signal, sample_rate, RENDER_RATE), -1, 1)
    return np.round(signal * 32767.0).astype(np.int16)


# ---------------------------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------------------------


def _render_speaker(job: tuple[str, SpeakerSpec, int, int, int, int]) -> float:
    """Write one speaker's wavs (atomically); return the total duration in seconds.

    Runs in a pool worker forked for this speaker alone (``maxtasksperchild=1``) from a
    process that never synthesised: the speaker's utterances, synthesised in turn in the
    worker, depend only on the arguments. (A fork per utterance would cost twice the time.)
    """
    out_dir, speaker, speaker_index, utts_per_speaker, seed, sample_rate = job
    espeak = process_espeak()
    total = 0.0
    for utt in plan_utterances(speaker, speaker_index, utts_per_speaker, seed):
        audio = render_utterance(espeak, speaker, utt, fresh=False, sample_rate=sample_rate)
        path = wav_path(out_dir, speaker, utt)
        with atomic_write(path, "wb") as f:
            soundfile.write(f, audio, sample_rate, subtype="PCM_16", format="WAV")
        total += len(audio) / sample_rate
    return total


def wav_path(out_dir: str | os.PathLike, speaker: SpeakerSpec, utt: UtteranceSpec) -> Path:
    session = speaker.sessions[utt.session_index]
    return Path(out_dir) / "wav" / speaker.speaker_id / session / f"{utt.utt_id}.wav"


def check_voices(espeak: ESpeak, languages: Sequence[str], variants: Sequence[str]) -> None:
    """Fail early, naming the culprit, if a language or variant is missing from the data."""
    for variant in sorted(set(variants)):
        if not espeak.variant_exists(variant):
            raise SynthError(
                f"voice variant {variant!r} not found in {espeak.data_path / 'voices' / '!v'}"
            )
    for language in sorted(set(languages)):
        if espeak.synthesize(language, ["a"], {}).size == 0:
            raise SynthError(f"eSpeak NG voice {language!r} produced no audio")


def _write_speakers_tsv(path: Path, speakers: Sequence[SpeakerSpec]) -> None:
    with atomic_write(path) as f:
        f.write("speaker\tvoice\tvariant\tpitch\trange\trate\tsessions\n")
        for s in speakers:
            f.write(
                f"{s.speaker_id}\t{s.language}\t{s.variant}\t{s.pitch:.1f}\t{s.pitch_range:.1f}\t"
                f"{s.rate:.1f}\t{','.join(s.sessions)}\n"
            )


def make_corpus(
    out_dir: str | os.PathLike,
    num_speakers: int = 100,
    utts_per_speaker: int = 12,
    seed: int = 0,
    nj: int = 2,
    verbose: bool = False,
    speaker_prefix: str = "spk",
    keep_last: int = 0,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
) -> Path:
    """Generate the corpus in ``out_dir`` (see module docstring); return ``out_dir``.

    A finished corpus made with the same settings (its stamp, ``wav.stamp``, says:
    :mod:`sslsv.reuse`) is left as it is. An unfinished one (``.in_progress``), or one made
    with other settings, is removed and generated again; a ``wav/`` folder this function did
    not create is refused rather than deleted.
    """
    if num_speakers < 1:
        raise SynthError(f"num_speakers must be >= 1, got {num_speakers}")
    if utts_per_speaker < 1:
        raise SynthError(f"utts_per_speaker must be >= 1, got {utts_per_speaker}")
    if nj < 1:
        raise SynthError(f"nj must be >= 1, got {nj}")
    if not 0 <= keep_last <= num_speakers:
        raise SynthError(f"keep_last must be in [0, {num_speakers}], got {keep_last}")
    if sample_rate < 1:
        raise SynthError(f"sample_rate must be >= 1, got {sample_rate}")
    if not speaker_prefix.isalnum():
        raise SynthError(f"speaker_prefix must be letters and digits, got {speaker_prefix!r}")
    out = Path(out_dir)
    inputs = {
        "format": f"sslsv-mini-corpus-{GENERATOR_VERSION}",
        "settings": {
            "num_speakers": num_speakers,
            "utts_per_speaker": utts_per_speaker,
            "seed": seed,
            "sample_rate": sample_rate,
            # Recorded only when not the default: corpora made before the option stay valid.
            **({"speaker_prefix": speaker_prefix} if speaker_prefix != "spk" else {}),
            **({"keep_last": keep_last} if keep_last else {}),
        },
    }
    wav, in_progress = out / "wav", out / ".in_progress"
    why = changes(wav, inputs)
    if not why and not in_progress.exists():
        if verbose:
            print(f"{out}: corpus already complete, nothing to do", file=sys.stderr)
        return out
    if wav.exists() and not (stamp_path(wav).exists() or in_progress.exists()):
        raise SynthError(
            f"{wav} exists but was not made by make_corpus (no {stamp_path(wav).name} or "
            f"{in_progress.name}); remove it or choose another --out"
        )
    # keep_last: only the last speakers of the plan are rendered (each with its own index,
    # so its audio is what the full corpus would hold): a held-out set drawn from the plan
    # as a recipe's test speakers are, not spread over the ranges as a small plan would be.
    planned = list(enumerate(plan_speakers(num_speakers, seed, speaker_prefix)))
    planned = planned[-keep_last:] if keep_last else planned
    speakers = [spk for _, spk in planned]
    espeak = process_espeak()  # before touching out_dir: a missing library changes nothing
    if espeak.used:
        raise SynthError("make_corpus needs a process that has not synthesised in-process")
    check_voices(espeak, [s.language for s in speakers], [s.variant for s in speakers])

    if wav.exists() and verbose:
        print(f"{out}: generated again: {'; '.join(why)}", file=sys.stderr)
    remove_stamp(wav)
    with atomic_write(in_progress) as f:
        f.write("generation started; a rerun removes what it left\n")
    shutil.rmtree(wav, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (out / "speakers.tsv").unlink()

    start = time.time()
    jobs = [(str(out), spk, i, utts_per_speaker, seed, sample_rate) for i, spk in planned]
    # fork: workers inherit eSpeak initialised, never used; and callers need no __main__
    # guard. One worker per speaker (see _render_speaker).
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(min(nj, len(jobs)), maxtasksperchild=1) as pool:
        durations = list(pool.imap_unordered(_render_speaker, jobs))
    _write_speakers_tsv(out / "speakers.tsv", speakers)
    write_stamp(wav, inputs)
    in_progress.unlink()
    if verbose:
        print(
            f"{out}: {len(speakers)} speakers x {utts_per_speaker} utterances, "
            f"{sum(durations) / 3600:.2f} h of audio in {time.time() - start:.1f} s",
            file=sys.stderr,
        )
    return out
