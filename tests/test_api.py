"""sslsv.load_model and the embed / verify / package commands: equal to stage 5, inputs of
every kind, calibration tied to its model, bad input named, nothing executed from files."""

import dataclasses
import json
import pickle
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import make_tone_data_dir

import sslsv
from sslsv.bin import embed as embed_cli
from sslsv.bin import extract as extract_cli
from sslsv.bin import package as package_cli
from sslsv.bin import verify as verify_cli
from sslsv.calibration import fit_calibration
from sslsv.config.load import config_from_dict
from sslsv.datadir.io import write_spk2utt
from sslsv.devices import DeviceError
from sslsv.errors import DataError, UserError
from sslsv.models.embedding import EmbeddingModel
from sslsv.train.checkpoint import model_fingerprint, model_payload, save_atomic

SMALL = {"channels": [8, 8, 16, 16], "blocks": [1, 1, 1, 1], "embed_dim": 24}


def write_model(path: Path, seed: int = 0, extract: dict | None = None, **scoring) -> Path:
    torch.manual_seed(seed)
    cfg = config_from_dict(
        {
            "encoder": {"name": "resnet", "args": SMALL},
            "extract": extract or {},
            "scoring": scoring,
        }
    )
    model = EmbeddingModel(cfg)
    save_atomic(model_payload(dataclasses.asdict(cfg), model.state_dict()), path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_tone_data_dir(tmp_path_factory.mktemp("api"), speakers=3, utts=3)


def wav_paths(data: Path) -> dict[str, str]:
    return dict(line.split(maxsplit=1) for line in (data / "wav.scp").read_text().splitlines())


def stage5(ckpt: Path, data: Path, out: Path, *flags: str) -> dict[str, np.ndarray]:
    args = ["--checkpoint", str(ckpt), "--data", str(data), "--output", str(out), *flags]
    assert extract_cli.main(args) == 0
    return dict(kaldiio.load_scp(str(out / "embeddings.scp")))


@pytest.mark.parametrize("protocol", [[], ["--crop-seconds", "1.0", "--num-crops", "3"]])
def test_api_and_embed_command_equal_stage5(tmp_path, data, protocol):
    ckpt = write_model(tmp_path / "final.pt")
    expected = stage5(ckpt, data, tmp_path / "stage5", *protocol)
    kwargs = {"crop_seconds": 1.0, "num_crops": 3} if protocol else {}
    model = sslsv.load_model(ckpt)
    wavs = wav_paths(data)
    raw = model.embed(list(wavs.values()), raw=True, **kwargs)
    for row, utt in zip(raw, wavs):
        np.testing.assert_allclose(row, expected[utt], atol=1e-5)
    # The default embeddings: unit length, the cosine of two is their dot product.
    x = model.embed(list(wavs.values()), **kwargs)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1, atol=1e-6)
    assert model.score(x[0], x[1]) == pytest.approx(float(x[0] @ x[1]), abs=1e-6)
    # The command, from a list of 'id path' lines: ark/scp, then npy + ids.
    listing = tmp_path / "list"
    listing.write_text("".join(f"{u} {p}\n" for u, p in wavs.items()))
    out = tmp_path / "cmd"
    args = ["--checkpoint", str(ckpt), "--list", str(listing), "--output", str(out), *protocol]
    assert embed_cli.main(args) == 0
    got = dict(kaldiio.load_scp(str(out / "embeddings.scp")))
    assert list(got) == list(wavs)
    for utt in wavs:
        np.testing.assert_allclose(got[utt], expected[utt], atol=1e-5)
    assert embed_cli.main([*args, "--format", "npy", "--normalize"]) == 0
    assert (out / "ids.txt").read_text().split() == list(wavs)
    np.testing.assert_allclose(np.load(out / "embeddings.npy"), x, atol=1e-5)
    # A data dir gives the same.
    out2 = tmp_path / "cmd2"
    assert (
        embed_cli.main(
            ["--checkpoint", str(ckpt), "--data", str(data), "--output", str(out2), *protocol]
        )
        == 0
    )
    got2 = dict(kaldiio.load_scp(str(out2 / "embeddings.scp")))
    for utt in wavs:
        np.testing.assert_allclose(got2[utt], expected[utt], atol=1e-5)


def test_inputs_of_every_kind(tmp_path, data):
    model = sslsv.load_model(write_model(tmp_path / "final.pt"))
    path = next(iter(wav_paths(data).values()))
    wave, rate = sf.read(path, dtype="float32")
    by_path = model.embed(path)
    assert by_path.shape == (24,)
    np.testing.assert_allclose(model.embed(wave), by_path, atol=1e-6)
    np.testing.assert_allclose(model.embed(torch.from_numpy(wave)), by_path, atol=1e-6)
    # Equal lengths share a batch: the same embeddings as one at a time.
    both = model.embed([wave, wave[::-1].copy(), wave])
    np.testing.assert_allclose(both[0], by_path, atol=1e-5)
    np.testing.assert_allclose(both[2], by_path, atol=1e-5)
    # An 8 kHz array is resampled as the reader resamples an 8 kHz file.
    f8 = tmp_path / "8k.wav"
    sf.write(f8, wave[::2], 8000, subtype="FLOAT")
    np.testing.assert_allclose(model.embed(wave[::2].copy(), 8000), model.embed(f8), atol=1e-6)
    # Stereo file: the first channel.
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.stack([wave, np.zeros_like(wave)], axis=1), rate, subtype="FLOAT")
    np.testing.assert_allclose(model.embed(stereo), by_path, atol=1e-4)
    # (channels, samples): the first channel, as files are read; 3-D is no waveform.
    np.testing.assert_allclose(model.embed(np.stack([wave, wave * 0])), by_path, atol=1e-6)
    with pytest.raises(DataError, match="1-D"):
        model.embed(np.zeros((2, 2, 1000), dtype=np.float32))


def test_bad_inputs_are_named_and_nothing_is_executed(tmp_path, capsys):
    ckpt = write_model(tmp_path / "final.pt")
    model = sslsv.load_model(ckpt)
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not audio at all\n")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    silent_len0 = tmp_path / "zero.wav"
    sf.write(silent_len0, np.zeros(0, dtype=np.float32), 16000)
    for bad in (not_audio, empty):
        with pytest.raises(DataError, match=bad.name):
            model.embed(bad)
    with pytest.raises(DataError, match="zero.wav: no audio samples"):
        model.embed(silent_len0)
    # The command: one line, exit status 1.
    out = tmp_path / "out"
    assert embed_cli.main(["--checkpoint", str(ckpt), str(not_audio), "--output", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "notes.wav" in err[0]
    listing = tmp_path / "list"
    listing.write_text("a x.wav\nb sox c.wav - |\n")
    assert (
        embed_cli.main(["--checkpoint", str(ckpt), "--list", str(listing), "--output", str(out)])
        == 1
    )
    assert f"{listing}:2" in capsys.readouterr().err
    # A model file that would run code when unpickled: refused, the code never runs.
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"config": {}, "model": Payload()}, f)
    torch.save({"config": {}, "model": Payload()}, tmp_path / "evil2.pt")
    for path in (evil, tmp_path / "evil2.pt", not_audio):
        with pytest.raises(DataError, match="not a readable sslsv checkpoint"):
            sslsv.load_model(path)
    assert not marker.exists()
    code = verify_cli.main(["--checkpoint", str(evil), str(not_audio), str(not_audio)])
    assert code == 1 and not marker.exists()
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(DataError, match="holds no 'config' and 'model'"):
        sslsv.load_model(tmp_path / "foreign.pt")


def calibration_for(model_path: Path, tmp_path: Path, **scoring) -> Path:
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(0.6, 0.1, 200), rng.normal(0.1, 0.1, 2000)])
    labels = np.arange(len(scores)) < 200
    model = sslsv.load_model(model_path)
    cal = fit_calibration(scores, labels, 0.01, model=model.fingerprint, scoring=scoring)
    path = tmp_path / f"cal_{model_path.stem}.json"
    cal.to_json(path)
    return path


def test_verify_with_calibration_and_package(tmp_path, data, capsys):
    ckpt = write_model(tmp_path / "final.pt", subtract_mean=False)
    other = write_model(tmp_path / "other.pt", seed=1, subtract_mean=False)
    cfg_scoring = dataclasses.asdict(sslsv.load_model(ckpt).cfg.scoring)
    cal = calibration_for(ckpt, tmp_path, **cfg_scoring)
    wavs = list(wav_paths(data).values())
    assert (
        verify_cli.main(["--checkpoint", str(ckpt), wavs[0], wavs[1], "--calibration", str(cal)])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("score: ") and lines[1].startswith("llr: ")
    assert lines[2].startswith("decision: ")
    score, llr = float(lines[0].split()[1]), float(lines[1].split()[1])
    c = json.loads(cal.read_text())
    assert llr == pytest.approx(c["score_weight"] * score + c["bias"], abs=1e-3)
    # Without calibration: the score, no decision; with --threshold: a decision.
    assert verify_cli.main(["--checkpoint", str(ckpt), wavs[0], wavs[1]]) == 0
    assert "decision: none" in capsys.readouterr().out
    assert verify_cli.main(["--checkpoint", str(ckpt), wavs[0], wavs[0], "--threshold", "0.5"]) == 0
    assert "decision: same speaker" in capsys.readouterr().out
    # A calibration of another model is refused, by the API and the command.
    with pytest.raises(DataError, match="made for model"):
        sslsv.load_model(other, calibration=cal)
    assert (
        verify_cli.main(["--checkpoint", str(other), wavs[0], wavs[1], "--calibration", str(cal)])
        == 1
    )
    assert "made for model" in capsys.readouterr().err
    # The package carries the calibration and the card; load_model uses them.
    pkg = tmp_path / "model.pt"
    results = tmp_path / "RESULTS"
    results.write_text("ssl test_trials EER: 1.0000% minDCF(p=0.01): 0.1000\n")
    args = ["--checkpoint", str(ckpt), "--output", str(pkg), "--calibration", str(cal)]
    assert package_cli.main([*args, "--results", str(results), "--train-data", "data/train"]) == 0
    packaged = sslsv.load_model(pkg)
    assert packaged.calibration is not None and packaged.fingerprint == model_fingerprint(
        sslsv.load_model(ckpt).model.state_dict()
    )
    assert "EER: 1.0000%" in packaged.card and "data/train" in packaged.card
    assert (tmp_path / "model.card.md").read_text() == packaged.card
    result = packaged.verify(wavs[0], wavs[1])
    assert result.llr == pytest.approx(llr, abs=1e-3)
    # Packaging another model's calibration is refused.
    assert (
        package_cli.main(
            [
                "--checkpoint",
                str(other),
                "--output",
                str(tmp_path / "m2.pt"),
                "--calibration",
                str(cal),
            ]
        )
        == 1
    )
    assert "made for model" in capsys.readouterr().err


def test_package_with_training_mean(tmp_path, data):
    ckpt = write_model(tmp_path / "final.pt", subtract_mean=True)
    train = stage5(ckpt, data, tmp_path / "train")
    pkg = tmp_path / "model.pt"
    base = ["--checkpoint", str(ckpt), "--output", str(pkg)]
    assert package_cli.main(base) == 1  # the mean is needed
    assert (
        package_cli.main([*base, "--train-embeddings", str(tmp_path / "train" / "embeddings.scp")])
        == 0
    )
    model = sslsv.load_model(pkg)
    x = np.stack(list(train.values())).astype(np.float64)
    np.testing.assert_allclose(model.backend.mean, x.mean(axis=0), rtol=1e-9, atol=1e-9)
    expected = x[:2] - x.mean(axis=0)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    # float32, as stage 6 scores (the subtraction cancels digits of these large raw vectors)
    np.testing.assert_allclose(model.prepare(x[:2]), expected, atol=1e-4)


def test_calibration_of_other_scoring_is_refused(tmp_path):
    ckpt = write_model(tmp_path / "final.pt", subtract_mean=False)
    cal = calibration_for(ckpt, tmp_path, backend="cosine", norm="none", subtract_mean=True)
    with pytest.raises(DataError, match="subtract_mean True"):
        sslsv.load_model(ckpt, calibration=cal)


def test_devices_are_checked_and_the_file_is_read_to_cpu(tmp_path, data, monkeypatch, capsys):
    """A device (cuda, cuda:1) is checked against the visible GPUs first: one line naming
    it (before: torch's own error, a traceback). The file is read into CPU memory and only
    the model moves (the meta device stands in for a GPU)."""
    ckpt = write_model(tmp_path / "final.pt")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="'cuda': CUDA is not available"):
        sslsv.load_model(ckpt, device="cuda")
    wav = next(iter(wav_paths(data).values()))
    assert verify_cli.main(["--checkpoint", str(ckpt), wav, wav, "--device", "cuda:0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'cuda:0': CUDA is not available" in err[0]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(DeviceError, match=r"'cuda:1': only 1 CUDA device\(s\) visible"):
        sslsv.load_model(ckpt, device="cuda:1")
    with pytest.raises(DeviceError, match="'gpu1': not a device"):
        sslsv.load_model(ckpt, device="gpu1")
    locations: list = []
    real_load = torch.load

    def load_spy(*args, **kwargs):
        locations.append(kwargs.get("map_location"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", load_spy)
    on_meta = sslsv.load_model(ckpt, device="meta")
    assert locations == ["cpu"] and on_meta.device == torch.device("meta")
    assert {p.device.type for p in on_meta.model.parameters()} == {"meta"}
    assert on_meta.fingerprint == sslsv.load_model(ckpt).fingerprint


# ------------------------------------------------------------- issue 22: inputs at the edges


def write_stats_model(path: Path) -> Path:
    """The ``stats`` baseline: level-sensitive (no per-utterance normalisation)."""
    cfg = config_from_dict({"encoder": {"name": "stats", "args": {"n_mfcc": 20}}})
    save_atomic(model_payload(dataclasses.asdict(cfg), EmbeddingModel(cfg).state_dict()), path)
    return path


def test_int16_arrays_embed_as_their_recording(tmp_path, data):
    """The same 16-bit recording as float and as int16 is the same speaker (before: int16
    used unscaled, score 0.33 with the level-sensitive ``stats`` model)."""
    model = sslsv.load_model(write_stats_model(tmp_path / "stats.pt"))
    path = next(iter(wav_paths(data).values()))  # PCM_16
    as_float, _ = sf.read(path, dtype="float32")
    as_int16, _ = sf.read(path, dtype="int16")
    expected = model.embed(path)
    np.testing.assert_allclose(model.embed(as_int16), expected, atol=1e-6)
    np.testing.assert_allclose(model.embed(torch.from_numpy(as_int16)), expected, atol=1e-6)
    assert model.verify(as_float, as_int16).score == pytest.approx(1, abs=1e-6)


def test_silent_inputs_are_refused_not_the_same_speaker(tmp_path, capsys):
    """Two digitally silent files: refused, naming the file (before: score 0.9986, "same
    speaker" with a calibration); stage 5's rule (RMS below -70 dBFS)."""
    ckpt = write_model(tmp_path / "final.pt")
    model = sslsv.load_model(ckpt)
    a, b = tmp_path / "quiet_a.wav", tmp_path / "quiet_b.wav"
    for path in (a, b):
        sf.write(path, np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(DataError, match=r"quiet_a.wav: digitally silent \(RMS below -70 dBFS"):
        model.verify(a, b)
    with pytest.raises(DataError, match="input 0: digitally silent"):
        model.embed(np.zeros(16000, dtype=np.int16))
    assert verify_cli.main(["--checkpoint", str(ckpt), str(a), str(b), "--threshold", "0.5"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "quiet_a.wav: digitally silent" in err[0]
    # on_silence "warn": embedded anyway (stage 5's default), the warning names it.
    assert model.embed(a, on_silence="warn").shape == (24,)


def test_audio_shorter_than_a_window_is_named(tmp_path, data, capsys):
    """Under one front-end window (400 samples at 16 kHz), or crops that short: one line
    naming the input, file, crop length or utterance (before: torch's padding traceback)."""
    ckpt = write_model(tmp_path / "final.pt")
    model = sslsv.load_model(ckpt)
    noise = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    with pytest.raises(DataError, match=r"input 1: 100 samples \(6.25 ms\) .* window \(400"):
        model.embed([noise, noise[:100]])
    short = tmp_path / "short.wav"
    sf.write(short, noise[:16], 16000, subtype="FLOAT")  # 1 ms
    with pytest.raises(DataError, match="short.wav: 16 samples"):
        model.embed(short, crop_seconds=1.0)  # looping a millisecond makes no speech
    with pytest.raises(DataError, match="crop_seconds 0.001: 16 samples"):
        model.embed(noise, crop_seconds=0.001)
    long = tmp_path / "long.wav"
    sf.write(long, noise, 16000, subtype="FLOAT")
    assert verify_cli.main(["--checkpoint", str(ckpt), str(long), str(short)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "short.wav: 16 samples (1 ms) at 16000 Hz" in err[0]
    # Stage 5: the crop length, then an utterance, named.
    out = tmp_path / "stage5"
    base = ["--checkpoint", str(ckpt), "--output", str(out)]
    assert extract_cli.main([*base, "--data", str(data), "--crop-seconds", "0.001"]) == 1
    assert "crop_seconds 0.001: 16 samples" in capsys.readouterr().err
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    (tiny / "wav.scp").write_text(f"a-long {long}\nb-short {short}\n")
    (tiny / "utt2spk").write_text("a-long a\nb-short b\n")
    write_spk2utt(tiny)
    assert extract_cli.main([*base, "--data", str(tiny)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "utterance 'b-short'" in err[-1] and "shorter than one front-end window" in err[-1]


def test_api_sample_rates_are_checked(tmp_path):
    """0 is not "the model's rate"; negative, fractional and absurd rates are one line
    (before: 0 silently 16 kHz, torch errors, gigabytes allocated for 1 Hz)."""
    model = sslsv.load_model(write_model(tmp_path / "final.pt"))
    wave = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    for rate in (0, -8000, 8000.5, 1, 10**7):  # 0 first: the old code survives it
        with pytest.raises(DataError, match=f"sample_rate {rate!r}"):
            model.embed(wave, rate)
    assert model.embed(wave, 8000.0).shape == (24,)


def test_api_protocol_options_take_the_config_ranges(tmp_path):
    """num_crops 0, batch_size 0, crop_seconds -1: the config's message (before:
    ZeroDivisionError, range and numpy errors)."""
    model = sslsv.load_model(write_model(tmp_path / "final.pt"))
    wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    for option, value in (("num_crops", 0), ("batch_size", 0), ("crop_seconds", -1)):
        with pytest.raises(UserError, match=f"'{option}' is {value}"):
            model.embed(wave, **{"crop_seconds": 0.5, option: value})
    with pytest.raises(UserError, match="unknown protocol option"):
        model.embed(wave, crops=2)


def test_api_inputs_are_paths_or_arrays_of_real_numbers(tmp_path, data):
    """bytes, generators, bool and complex arrays: one line each (before: passed or a
    TypeError); a path-like spelling its path as bytes is still a path."""
    model = sslsv.load_model(write_model(tmp_path / "final.pt"))
    path = next(iter(wav_paths(data).values()))
    for bad, match in (
        (np.ones(16000, dtype=bool), "input 0: bool samples"),
        (np.ones(16000, dtype=np.complex64), "input 0: complex samples"),
        (path.encode(), "input 0: bytes are neither a path nor samples"),
        ((x for x in [path]), "input 0: generator"),
    ):
        with pytest.raises(DataError, match=match):
            model.embed(bad)
    # A list of inputs names the culprit by its place.
    with pytest.raises(DataError, match="input 1: bool samples"):
        model.embed([path, np.ones(16000, dtype=bool)])


def test_score_of_a_zero_vector_is_refused():
    """A zero embedding has no direction (before: nan and a RuntimeWarning)."""
    x = np.ones(4)
    with pytest.raises(DataError, match="embedding a: it is all zeros"):
        sslsv.SpeakerModel.score(np.zeros(4), x)
    with pytest.raises(DataError, match="embedding b: row 1 is all zeros"):
        sslsv.SpeakerModel.score(np.ones((2, 4)), np.array([[1.0, 0, 0, 0], [0, 0, 0, 0]]))
    with pytest.raises(DataError, match="non-finite"):
        sslsv.SpeakerModel.score(np.array([np.nan, 1, 1, 1]), x)
    assert sslsv.SpeakerModel.score(x, -x) == pytest.approx(-1)


def test_verify_flags_that_decide_nothing_are_refused(tmp_path, data, capsys):
    """--threshold nan (every trial "different"), --p-target that no calibration uses, a
    missing file: refused before the model is read."""
    wav = next(iter(wav_paths(data).values()))
    missing = tmp_path / "nowhere.pt"  # never read: the checks come first
    with pytest.raises(SystemExit) as e:
        verify_cli.main(["--checkpoint", str(missing), wav, wav, "--threshold", "nan"])
    assert e.value.code == 2
    capsys.readouterr()
    cases = [
        (["--threshold", "0.5", "--p-target", "0.01"], "--p-target sets a calibrated"),
        (["--threshold", "0.5", "--device", "gpu"], "'gpu': not a device"),
    ]
    for flags, match in cases:
        assert verify_cli.main(["--checkpoint", str(missing), wav, wav, *flags]) == 1
        assert match in capsys.readouterr().err
    assert verify_cli.main(["--checkpoint", str(missing), wav, str(tmp_path / "x.wav")]) == 1
    assert "test " + str(tmp_path / "x.wav") + ": no such file" in capsys.readouterr().err
    ckpt = write_model(tmp_path / "final.pt")
    assert verify_cli.main(["--checkpoint", str(ckpt), wav, wav, "--p-target", "0.01"]) == 1
    assert "--p-target needs a calibration" in capsys.readouterr().err
