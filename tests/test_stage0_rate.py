"""Stage 0 works at the experiment config's features.sample_rate (--config CONF), the schema's
default without one: imports expect it, VoxCeleb2 is decoded to it, the augmentation sets and
the synthetic corpus are written at it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sslsv.bin import make_aug_sets, make_mini_corpus, prepare_data
from sslsv.config.schema import FeaturesConfig
from sslsv.fileio import read_dict

RATE = 8000


@pytest.fixture
def config_8k(tmp_path: Path) -> Path:
    path = tmp_path / "conf" / "8k.yaml"
    path.parent.mkdir()
    path.write_text(f"features:\n  sample_rate: {RATE}\n  f_max: 3800\n")
    return path


def noise_wav(path: Path, seconds: float, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = 0.1 * np.random.default_rng(0).standard_normal(round(seconds * rate))
    sf.write(path, data.astype(np.float32), rate)


def rates_of(data_dir: Path) -> set[int]:
    return {sf.info(p).samplerate for p in read_dict(data_dir / "wav.scp").values()}


def test_the_default_rate_is_the_schemas() -> None:
    for parser in (
        prepare_data.build_parser().parse_args(["folder", "r", "d"]),
        make_aug_sets.build_parser().parse_args(["--out", "o"]),
        make_mini_corpus.build_parser().parse_args(["--out", "o"]),
    ):
        assert parser.config is None
    from sslsv.corpora.rate import DEFAULT_SAMPLE_RATE, sample_rate_of

    assert DEFAULT_SAMPLE_RATE == FeaturesConfig().sample_rate
    args = prepare_data.build_parser().parse_args(["folder", "r", "d"])
    assert sample_rate_of(args) == FeaturesConfig().sample_rate


def test_prepare_data_expects_the_configs_rate(tmp_path: Path, config_8k: Path, capsys) -> None:
    corpus = tmp_path / "corpus"
    for spk in ("a", "b"):
        for utt, seconds in (("1", 0.75), ("2", 1.25)):
            noise_wav(corpus / spk / f"{utt}.wav", seconds, RATE)
    # Without a config: the schema's 16 kHz, and the 8 kHz files are refused.
    assert prepare_data.main(["folder", str(corpus), str(tmp_path / "d16"), "--nj", "1"]) == 1
    assert "4 files are not 16000 Hz" in capsys.readouterr().err
    dest = tmp_path / "data"
    argv = ["folder", str(corpus), str(dest), "--nj", "1", "--config", str(config_8k)]
    assert prepare_data.main(argv) == 0
    assert not (dest / "utt2sr").exists()  # every file at the experiment's rate
    assert rates_of(dest) == {RATE}
    durations = {u: float(d) for u, d in read_dict(dest / "utt2dur").items()}
    assert durations == {"a-1": 0.75, "a-2": 1.25, "b-1": 0.75, "b-2": 1.25}
    # A 16 kHz file is now the odd one out: refused, or kept with its rate in utt2sr.
    noise_wav(corpus / "b" / "3.wav", 1.0, 16000)
    assert prepare_data.main(argv) == 1
    assert "1 files are not 8000 Hz" in capsys.readouterr().err
    assert prepare_data.main(argv + ["--allow-resample"]) == 0
    assert read_dict(dest / "utt2sr") == {**dict.fromkeys(durations, str(RATE)), "b-3": "16000"}
    # --sample-rate alone still works; contradicting the config is refused, agreeing is not.
    assert prepare_data.main(argv[:5] + ["--sample-rate", str(RATE), "--allow-resample"]) == 0
    assert prepare_data.main(argv + ["--sample-rate", "16000"]) == 1
    err = capsys.readouterr().err
    assert "--sample-rate 16000" in err and "features.sample_rate 8000" in err, err
    assert prepare_data.main(argv + ["--sample-rate", str(RATE), "--allow-resample"]) == 0


def test_prepare_data_refuses_a_bad_config(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("features:\n  sample_rate: 100\n")
    argv = ["folder", str(tmp_path), str(tmp_path / "d"), "--config", str(bad)]
    assert prepare_data.main(argv) == 1
    assert "features.sample_rate" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed: m4a not tested")
def test_voxceleb2_is_decoded_at_the_configs_rate(tmp_path: Path, config_8k: Path, capsys) -> None:
    src = tmp_path / "src.wav"
    noise_wav(src, 0.8, 44100)
    m4a = tmp_path / "vox2" / "dev" / "aac" / "id00012" / "21Uxsk56VDQ" / "00001.m4a"
    m4a.parent.mkdir(parents=True)
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(src), "-c:a", "aac", str(m4a)]
    subprocess.run(cmd, check=True)
    dest, cache = tmp_path / "data", tmp_path / "cache"
    argv = ["voxceleb2", str(tmp_path / "vox2"), str(dest), "--wav-cache", str(cache)]
    assert prepare_data.main(argv + ["--nj", "1", "--config", str(config_8k)]) == 0
    assert rates_of(dest) == {RATE} and not (dest / "utt2sr").exists()
    assert abs(float(read_dict(dest / "utt2dur")["id00012-21Uxsk56VDQ-00001"]) - 0.8) < 0.05
    # The cache holds 8 kHz wavs: a run at 16 kHz is refused, not given a cache of two rates.
    assert prepare_data.main(argv + ["--nj", "1"]) == 1
    assert "decoded at 8000 Hz, not 16000: the wav cache" in capsys.readouterr().err


def test_make_aug_sets_writes_at_the_configs_rate(tmp_path: Path, config_8k: Path) -> None:
    noise = tmp_path / "noise" / "hum.wav"
    noise_wav(noise, 6.0, 16000)  # resampled to the experiment's rate
    out = tmp_path / "aug"
    argv = ["--out", str(out), "--num-rirs", "2", "--rir-method", "exp-decay", "--jobs", "1"]
    argv += ["--noise-files", str(noise), "--num-colored", "1", "--config", str(config_8k)]
    assert make_aug_sets.main(argv) == 0
    for name in ("rirs", "noise"):
        assert rates_of(out / name) == {RATE}, name
        stamp = json.loads((out / f"{name}.stamp").read_text())
        assert stamp["settings"]["sample_rate"] == RATE, stamp
    durations = read_dict(out / "noise" / "utt2dur")
    assert float(durations["noise-hum-000"]) == 5.0  # --chunk-seconds, at any rate


def test_make_mini_corpus_writes_at_the_configs_rate(tmp_path: Path, config_8k: Path) -> None:
    out = tmp_path / "corpus"
    argv = ["--out", str(out), "--num-speakers", "1", "--utts-per-speaker", "1", "--nj", "1"]
    assert make_mini_corpus.main(argv + ["--config", str(config_8k)]) == 0
    (wav,) = sorted((out / "wav").rglob("*.wav"))
    info = sf.info(str(wav))
    assert (info.samplerate, info.channels, info.subtype) == (RATE, 1, "PCM_16")
    assert 2.5 <= info.duration <= 6.0
    assert '"sample_rate": 8000' in (out / "wav.stamp").read_text()
    # The same utterance as at 16 kHz, resampled: same length in seconds.
    full = tmp_path / "full"
    assert make_mini_corpus.main(["--out", str(full)] + argv[2:]) == 0
    (wav16,) = sorted((full / "wav").rglob("*.wav"))
    assert sf.info(str(wav16)).samplerate == 16000
    assert abs(sf.info(str(wav16)).duration - info.duration) < 1e-3
