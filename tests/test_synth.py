"""Tests for the synthetic mini corpus (eSpeak NG through ctypes)."""

from __future__ import annotations

import ctypes.util
import math
import multiprocessing
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile

from sslsv.bin import make_mini_corpus
from sslsv.simulation import dsp, mini_corpus
from sslsv.simulation import espeak as espeak_ng

SPEAKERS, UTTS = 3, 3


def wav_files(root: Path) -> list[Path]:
    return sorted((root / "wav").rglob("*.wav"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mini_corpus.make_corpus(
        tmp_path_factory.mktemp("mini") / "corpus", SPEAKERS, UTTS, 7, nj=1
    )


def median_f0(audio: np.ndarray, sample_rate: int = 16000) -> float:
    """Median F0 (Hz) of voiced 40 ms frames, by plain normalised autocorrelation."""
    audio = audio.astype(np.float64)
    frame, hop = int(0.04 * sample_rate), int(0.01 * sample_rate)
    min_lag, max_lag = sample_rate // 400, sample_rate // 60
    loudest = np.max(np.abs(audio))
    f0s = []
    for start in range(0, len(audio) - frame - max_lag, hop):
        x = audio[start : start + frame + max_lag]
        if np.max(np.abs(x[:frame])) < 0.2 * loudest:
            continue
        ref = x[:frame]
        corr = [
            np.dot(ref, x[lag : lag + frame])
            / math.sqrt(
                np.dot(ref, ref) * np.dot(x[lag : lag + frame], x[lag : lag + frame]) + 1e-20
            )
            for lag in range(min_lag, max_lag + 1)
        ]
        best = int(np.argmax(corr))
        if corr[best] > 0.7:
            f0s.append(sample_rate / (min_lag + best))
    assert len(f0s) > 20, "too few voiced frames to estimate F0"
    return float(np.median(f0s))


def test_layout_format_and_durations(corpus: Path) -> None:
    files = wav_files(corpus)
    assert len(files) == SPEAKERS * UTTS
    header, *lines = (corpus / "speakers.tsv").read_text(encoding="utf-8").splitlines()
    speakers = [dict(zip(header.split("\t"), x.split("\t"), strict=True)) for x in lines]
    assert [s["speaker"] for s in speakers] == ["spk001", "spk002", "spk003"]
    for row, spec in zip(speakers, mini_corpus.plan_speakers(SPEAKERS, 7), strict=True):
        assert (row["voice"], row["variant"], float(row["rate"])) == (
            spec.language,
            spec.variant,
            round(spec.rate, 1),
        )
    for path in files:
        spk, session = path.parent.parent.name, path.parent.name
        assert re.fullmatch(rf"{spk}-{session}-\d{{4}}\.wav", path.name)
        info = soundfile.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert mini_corpus.MIN_DURATION_S <= info.duration <= mini_corpus.MAX_DURATION_S
        audio, _ = soundfile.read(str(path), dtype="int16")
        assert 0 < np.max(np.abs(audio)) < 32767  # not silent, not clipped
    for row in speakers:
        sessions = row["sessions"].split(",")
        assert 2 <= len(sessions) <= 3
        used = sorted(p.name for p in (corpus / "wav" / row["speaker"]).iterdir())
        assert used == sorted(sessions)[: len(used)] and len(used) == min(UTTS, len(sessions))
    assert (corpus / "wav.stamp").is_file() and not (corpus / ".in_progress").exists()


def test_same_seed_is_byte_identical_across_worker_counts(corpus: Path, tmp_path: Path) -> None:
    again = mini_corpus.make_corpus(tmp_path / "again", SPEAKERS, UTTS, 7, nj=2)
    for a, b in zip(wav_files(corpus), wav_files(again), strict=True):
        assert a.relative_to(corpus) == b.relative_to(again)
        assert a.read_bytes() == b.read_bytes(), a.name
    assert (corpus / "speakers.tsv").read_bytes() == (again / "speakers.tsv").read_bytes()
    other = mini_corpus.make_corpus(tmp_path / "other", 1, 1, 8, nj=1)
    assert wav_files(other)[0].read_bytes() != wav_files(corpus)[0].read_bytes()


def test_rerun_skips_and_partial_run_is_redone(corpus: Path, tmp_path: Path) -> None:
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in wav_files(corpus)}
    mini_corpus.make_corpus(corpus, SPEAKERS, UTTS, 7, nj=1)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in wav_files(corpus)} == before

    # A run killed half way: marker left, stamp missing, a stray temporary file.
    partial = tmp_path / "partial"
    mini_corpus.make_corpus(partial, 2, 2, 7, nj=1)
    (partial / "wav.stamp").rename(partial / ".in_progress")
    stray = partial / "wav" / "spk001" / ".spk001-s1-0001.wav.x.tmp"
    stray.write_bytes(b"junk")
    first = wav_files(partial)
    first[0].unlink()
    mini_corpus.make_corpus(partial, 2, 2, 7, nj=1)
    assert not stray.exists() and (partial / "wav.stamp").is_file()
    assert len(wav_files(partial)) == 4

    # Other settings in the same directory: regenerated, not skipped.
    mini_corpus.make_corpus(partial, 1, 2, 7, nj=1)
    assert len(wav_files(partial)) == 2
    assert '"num_speakers": 1' in (partial / "wav.stamp").read_text()


def test_refuses_to_delete_a_foreign_wav_dir(tmp_path: Path) -> None:
    (tmp_path / "wav").mkdir()
    (tmp_path / "wav" / "precious.wav").write_bytes(b"x")
    with pytest.raises(espeak_ng.SynthError, match="not made by make_corpus"):
        mini_corpus.make_corpus(tmp_path, 1, 1, 0, nj=1)
    assert (tmp_path / "wav" / "precious.wav").exists()


def test_all_listed_voices_exist() -> None:
    mini_corpus.check_voices(
        espeak_ng.process_espeak(), mini_corpus.LANGUAGES, mini_corpus.VARIANTS
    )
    with pytest.raises(espeak_ng.SynthError, match="variant 'nobody' not found"):
        mini_corpus.check_voices(espeak_ng.process_espeak(), ["en-us"], ["m3", "nobody"])


def test_voice_and_pitch_change_f0() -> None:
    espeak = espeak_ng.process_espeak()
    text = ["We carried a lantern across the quiet meadow at dawn, said Anna."]

    def f0(voice: str, pitch: int) -> float:
        raw = espeak.synthesize(voice, text, {"pitch": pitch, "range": 50, "rate": 160})
        return median_f0(scipy.signal.resample_poly(raw / 32768.0, 16000, espeak.sample_rate))

    male, female = f0("en-us+m3", 50), f0("en-us+f2", 50)
    assert female > 1.4 * male
    assert f0("en-us+m3", 85) > 1.3 * f0("en-us+m3", 20)
    # Same arguments, same samples (every call starts from a fresh synthesiser state).
    a = espeak.synthesize("de+klatt3", text, {"pitch": 40})
    b = espeak.synthesize("de+klatt3", text, {"pitch": 40})
    assert a.size > 16000 and np.array_equal(a, b)


def _synthesize_twice_in_process(queue: multiprocessing.Queue) -> None:
    espeak = espeak_ng.process_espeak()
    text = ["Hello there, how are you today my friend?"]
    first = espeak.synthesize("en-us+f2", text, {}, fresh=False)
    second = espeak.synthesize("en-us+f2", text, {}, fresh=False)
    try:
        espeak.synthesize("en-us+f2", text, {})
        message = "no error"
    except espeak_ng.SynthError as e:
        message = str(e)
    queue.put((first.size, np.array_equal(first, second), message))


def test_in_process_synthesis_is_not_fresh_and_forbids_fresh_calls() -> None:
    """Why the forks: eSpeak state left by one synthesis changes the next one."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    worker = ctx.Process(target=_synthesize_twice_in_process, args=(queue,))
    worker.start()
    size, identical, message = queue.get(timeout=60)
    worker.join()
    assert size > 0 and not identical
    assert "synthesised in-process" in message


def test_rendered_speakers_differ_in_f0() -> None:
    """Through the whole pipeline (jitter, channel, noise): voice differences survive."""
    channel = mini_corpus.Channel(80.0, 7000.0, ((1000.0, 3.0, 1.0),), 1.0, 30.0)

    def speaker(variant: str, pitch: float) -> mini_corpus.SpeakerSpec:
        return mini_corpus.SpeakerSpec(
            "spk001", "en-us", variant, pitch, 50.0, 170.0, ("s1",), (channel,)
        )

    espeak = espeak_ng.process_espeak()
    f0s = {}
    for variant, pitch in (("m3", 30.0), ("m3", 75.0), ("f2", 40.0)):
        spk = speaker(variant, pitch)
        utts = [mini_corpus.UtteranceSpec(f"spk001-s1-{k:04d}", 0, 1000 + k) for k in range(3)]
        f0s[variant, pitch] = [
            median_f0(mini_corpus.render_utterance(espeak, spk, u)) for u in utts
        ]
    means = sorted(np.mean(v) for v in f0s.values())
    spread = max(np.std(v) for v in f0s.values())
    assert min(np.diff(means)) > 3 * spread, f0s
    assert np.mean(f0s["m3", 75.0]) > 1.3 * np.mean(f0s["m3", 30.0])


def test_plan_is_spread_deterministic_and_texts_differ() -> None:
    speakers = mini_corpus.plan_speakers(100, 0)
    assert speakers == mini_corpus.plan_speakers(100, 0)
    assert speakers != mini_corpus.plan_speakers(100, 1)
    assert len({s.speaker_id for s in speakers}) == 100
    # Pairs stay unique for #variants x #languages speakers only if these are coprime.
    assert math.gcd(len(mini_corpus.VARIANTS) + 1, len(mini_corpus.LANGUAGES)) == 1
    assert len({(s.language, s.variant) for s in speakers}) == 100
    assert len({s.variant for s in speakers}) == len(mini_corpus.VARIANTS)
    for values, (low, high) in (
        ([s.pitch for s in speakers], mini_corpus.PITCH_RANGE),
        ([s.pitch_range for s in speakers], mini_corpus.PITCH_SPAN_RANGE),
        ([s.rate for s in speakers], mini_corpus.RATE_RANGE),
    ):
        # One value per 1/100 of the range: covers it evenly, no clumps.
        strata = np.floor((np.array(values) - low) / (high - low) * 100 - 1e-9).astype(int)
        assert sorted(strata) == list(range(100))
    texts = []
    for i, speaker in enumerate(speakers[:10]):
        utts = mini_corpus.plan_utterances(speaker, i, 12, 0)
        assert sorted(u.session_index for u in utts) == sorted(
            k % len(speaker.sessions) for k in range(12)
        )
        texts += [mini_corpus.utterance_script(speaker, u).sentences for u in utts]
    assert len(set(texts)) == len(texts)


def test_peaking_eq_matches_its_definition() -> None:
    for f0, gain_db, q in ((1000.0, 6.0, 1.0), (300.0, -4.5, 0.7), (5000.0, 3.0, 2.0)):
        sos = dsp.peaking_eq_sos(f0, gain_db, q, 16000)
        freqs = np.array([0.0, f0, 8000.0])
        _, response = scipy.signal.sosfreqz(sos, worN=freqs, fs=16000)
        db = 20 * np.log10(np.abs(response))
        np.testing.assert_allclose(db, [0.0, gain_db, 0.0], atol=1e-6)
        # The peak of the magnitude response is at f0 (a boost) / the dip is (a cut).
        grid = np.linspace(20, 7900, 4000)
        _, dense = scipy.signal.sosfreqz(sos, worN=grid, fs=16000)
        extreme = grid[np.argmax(np.abs(dense) if gain_db > 0 else -np.abs(dense))]
        assert abs(math.log(extreme / f0)) < 0.02


def test_colored_noise_slope_and_snr() -> None:
    rng = np.random.default_rng(0)
    for exponent in (0.0, 1.0, 2.0):
        noise = dsp.colored_noise(64000, exponent, rng)
        assert abs(np.sqrt(np.mean(noise**2)) - 1) < 1e-9 and abs(noise.mean()) < 1e-9
        freqs, psd = scipy.signal.welch(noise, fs=16000, nperseg=1024)
        band = (freqs > 100) & (freqs < 6000)
        slope = np.polyfit(np.log(freqs[band]), np.log(psd[band]), 1)[0]
        assert abs(slope + exponent) < 0.15, (exponent, slope)
    speech = np.sin(np.linspace(0, 300, 8000))
    noise = rng.standard_normal(8000)
    mixed = dsp.mix_at_snr(speech, float(np.mean(speech**2)), noise, 25.0)
    snr = 10 * np.log10(np.mean(speech**2) / np.mean((mixed - speech) ** 2))
    assert abs(snr - 25.0) < 1e-9


def test_missing_library_or_data_is_a_clear_error(tmp_path: Path) -> None:
    lib, data = espeak_ng.espeak_paths()
    with pytest.raises(espeak_ng.SynthError, match="cannot load the eSpeak NG library.*nope.so"):
        espeak_ng.ESpeak(library_path=tmp_path / "nope.so", data_path=data)
    with pytest.raises(espeak_ng.SynthError, match="data directory not found"):
        espeak_ng.ESpeak(library_path=lib, data_path=tmp_path / "no-data")
    libm = ctypes.util.find_library("m")
    with pytest.raises(espeak_ng.SynthError, match="not a usable eSpeak NG library"):
        espeak_ng.ESpeak(library_path=libm, data_path=data)
    with pytest.raises(espeak_ng.SynthError, match="no voice 'xx-nowhere'"):
        espeak_ng.process_espeak().synthesize("xx-nowhere", ["hello"], {})


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        make_mini_corpus.main(["--help"])
    assert exit_info.value.code == 0 and "--num-speakers" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        make_mini_corpus.main(["--out", str(tmp_path), "--nj", "0"])
    assert exit_info.value.code == 2 and "--nj: 0: must be at least 1" in capsys.readouterr().err
    out = tmp_path / "c"
    args = ["--out", str(out), "--num-speakers", "1", "--utts-per-speaker", "2", "--nj", "1"]
    assert make_mini_corpus.main(args) == 0
    assert len(wav_files(out)) == 2 and (out / "wav.stamp").is_file()


def test_keep_last_renders_the_last_planned_speakers_as_the_full_corpus_does(
    corpus: Path, tmp_path: Path
) -> None:
    """A held-out set drawn as a recipe's test speakers are: the last speakers of the same
    plan, each rendered exactly as in the full corpus; another prefix renames them only."""
    last = mini_corpus.make_corpus(tmp_path / "last", SPEAKERS, UTTS, 7, nj=1, keep_last=1)
    full = {p.relative_to(corpus): p.read_bytes() for p in wav_files(corpus)}
    kept = wav_files(last)
    assert kept and {p.relative_to(last).parts[1] for p in kept} == {f"spk{SPEAKERS:03d}"}
    for p in kept:
        assert p.read_bytes() == full[p.relative_to(last)]
    dev = mini_corpus.make_corpus(
        tmp_path / "dev", SPEAKERS, UTTS, 7, nj=1, keep_last=1, speaker_prefix="dev"
    )
    renamed = wav_files(dev)
    assert [p.name.replace("dev", "spk") for p in renamed] == [p.name for p in kept]
    with pytest.raises(mini_corpus.SynthError, match="keep_last"):
        mini_corpus.make_corpus(tmp_path / "x", SPEAKERS, UTTS, 7, keep_last=SPEAKERS + 1)
