"""The "stats" baseline: MFCC mean + std per utterance, standardised with the training set.

The encoder against a plain numpy definition (scipy's orthonormal DCT-II of the raw log-mels,
mean and population standard deviation over time), the front end's skipping of per-utterance
normalisation for it, and ``sslsv.bin.fit_stats``: what it fits, writes and reuses.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import scipy.fft
import torch
import yaml

from sslsv.audio import read_audio
from sslsv.bin import extract, fit_stats
from sslsv.config.load import load_config
from sslsv.config.schema import ExtractConfig
from sslsv.datadir.io import read_audio_sources
from sslsv.errors import ConfigError
from sslsv.extraction import embed_data_dir
from sslsv.features import mean_var_norm
from sslsv.fileio import write_table
from sslsv.models import build_encoder
from sslsv.models.embedding import EmbeddingModel
from sslsv.models.stats import StatsEncoder
from sslsv.train.checkpoint import load_model
from tests.conftest import make_tone_data_dir

REPO = Path(__file__).resolve().parents[1]
N_MFCC = 20


def plain_stats(feats: np.ndarray, n_mfcc: int) -> np.ndarray:
    """The definition: (n_mels, T) raw log-mels -> [mean, population std] over time of the
    first n_mfcc orthonormal DCT-II coefficients (of the log-mels themselves when 0)."""
    x = feats.astype(np.float64)
    if n_mfcc:
        x = scipy.fft.dct(x, type=2, norm="ortho", axis=0)[:n_mfcc]
    return np.concatenate([x.mean(axis=1), x.std(axis=1, ddof=0)])


@pytest.mark.parametrize("n_mfcc", [30, 0])
def test_encoder_matches_a_plain_numpy_definition(n_mfcc: int) -> None:
    rng = np.random.default_rng(0)
    n_mels, frames = 40, 137
    feats = rng.normal(-5.0, 3.0, (3, n_mels, frames)) + rng.normal(0, 2, (3, n_mels, 1))
    encoder = StatsEncoder(n_mels=n_mels, n_mfcc=n_mfcc).eval()
    dim = 2 * (n_mfcc or n_mels)
    assert encoder.embed_dim == dim
    shift, scale = rng.normal(0, 3, dim), rng.uniform(0.5, 2.0, dim)
    encoder.shift.copy_(torch.from_numpy(shift))
    encoder.scale.copy_(torch.from_numpy(scale))
    with torch.no_grad():
        got = encoder(torch.from_numpy(feats).float()).double().numpy()
    want = np.stack([(plain_stats(f, n_mfcc) - shift) / scale for f in feats])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # One frame: the population std is 0 (a sample std would be undefined).
    with torch.no_grad():
        single = StatsEncoder(n_mels=n_mels, n_mfcc=n_mfcc)(torch.randn(1, n_mels, 1))
    assert torch.isfinite(single).all() and (single[0, dim // 2 :] == 0).all()


def test_encoder_has_no_trainable_parameters_and_only_its_two_buffers() -> None:
    encoder = build_encoder("stats", 40, {})
    assert list(encoder.parameters()) == []
    assert set(encoder.state_dict()) == {"shift", "scale"}
    assert encoder.embed_dim == 60 and encoder.raw_features is True
    assert (encoder.shift == 0).all() and (encoder.scale == 1).all()
    with pytest.raises(ConfigError, match="encoder.args.n_mfcc"):
        build_encoder("stats", 24, {"n_mfcc": 30})


def test_forward_features_normalises_for_other_encoders_only() -> None:
    torch.manual_seed(0)
    feats = torch.randn(2, 40, 80) * 2 - 6
    stats = EmbeddingModel(load_config(None, ["encoder.name=stats"])).eval()
    with torch.no_grad():
        got = stats.forward_features(feats)
        torch.testing.assert_close(got, stats.encoder(feats))
        # The statistics of the raw log-mels survive: MVN would have made these equal.
        assert not torch.allclose(got, stats.forward_features(feats * 2 + 1))
    resnet = EmbeddingModel(
        load_config(
            None,
            [
                "encoder.name=resnet",
                "encoder.args={channels: [4, 8], blocks: [1, 1], embed_dim: 16}",
            ],
        )
    ).eval()
    assert not getattr(resnet.encoder, "raw_features", False)
    with torch.no_grad():
        torch.testing.assert_close(
            resnet.forward_features(feats), resnet.encoder(mean_var_norm(feats))
        )


def write_config(path: Path, **encoder_args) -> Path:
    args = {"n_mfcc": N_MFCC, **encoder_args}
    path.write_text(
        yaml.safe_dump(
            {
                "experiment": "stats",
                "encoder": {"name": "stats", "args": args},
                "scoring": {"backend": "cosine", "subtract_mean": False},
            }
        )
    )
    return path


def embeddings_of(model: EmbeddingModel, data: Path, use_feats: bool = False) -> np.ndarray:
    out: dict[str, np.ndarray] = {}
    embed_data_dir(model, data, use_feats, "cpu", out.__setitem__, ExtractConfig(num_workers=0))
    return np.stack(list(out.values())).astype(np.float64)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(config, training data dir, experiment dir) of one fit on 16 generated utterances."""
    root = tmp_path_factory.mktemp("stats")
    data = make_tone_data_dir(root)
    config = write_config(root / "stats.yaml")
    exp = root / "exp" / "stats"
    assert (
        fit_stats.main(["--config", str(config), "--data", str(data), "--exp-dir", str(exp)]) == 0
    )
    return config, data, exp


def test_fit_standardises_the_training_set(fitted) -> None:
    config, data, exp = fitted
    model, cfg = load_model(exp / "final.pt")
    assert cfg.encoder.name == "stats" and cfg.encoder.args == {"n_mfcc": N_MFCC}
    x = embeddings_of(model, data)
    assert x.shape == (16, 2 * N_MFCC)
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(x.std(axis=0), 1, atol=1e-4)
    # init.pt: the same model unfitted, whose embeddings are the raw statistics.
    init, _ = load_model(exp / "init.pt")
    assert (init.encoder.shift == 0).all() and (init.encoder.scale == 1).all()
    raw = embeddings_of(init, data)
    np.testing.assert_allclose(model.encoder.shift.numpy(), raw.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(model.encoder.scale.numpy(), raw.std(axis=0), rtol=1e-4)
    # ... and they are the plain definition of the audio's log-mels.
    utt, source = next(iter(read_audio_sources(data).items()))
    wave = torch.from_numpy(read_audio(source, sample_rate=16000, utt=utt)[None])
    with torch.no_grad():
        feats = init.fbank(wave)[0].numpy()
    np.testing.assert_allclose(raw[0], plain_stats(feats, N_MFCC), rtol=1e-4, atol=1e-4)
    assert load_config(exp / "config.yaml").encoder.name == "stats"
    text = (exp / "log" / "fit_stats.log").read_text()
    assert "of 16 utterances" in text and " s; std " in text


def test_extract_takes_the_fitted_model(fitted, tmp_path) -> None:
    config, data, exp = fitted
    out = tmp_path / "emb"
    argv = ["--checkpoint", str(exp / "final.pt"), "--data", str(data), "--output", str(out)]
    assert extract.main(argv) == 0
    got = dict(kaldiio.load_scp(str(out / "embeddings.scp")))
    model, _ = load_model(exp / "final.pt")
    want = embeddings_of(model, data)
    np.testing.assert_allclose(np.stack(list(got.values())), want, rtol=1e-5, atol=1e-5)


def test_rerun_reuses_and_a_change_is_refitted(fitted, tmp_path, caplog) -> None:
    config, data, fitted_exp = fitted
    exp = tmp_path / "exp"  # a copy: the other tests keep theirs as it is
    exp.mkdir()
    for name in ("final.pt", "final.pt.stamp", "init.pt", "config.yaml"):
        (exp / name).write_bytes((fitted_exp / name).read_bytes())

    def fit(config: Path, data: Path) -> None:
        caplog.clear()
        argv = ["--config", str(config), "--data", str(data), "--exp-dir", str(exp)]
        assert fit_stats.main(argv) == 0

    caplog.set_level("INFO")
    before = (exp / "final.pt").stat().st_mtime_ns
    fit(config, data)
    assert "nothing to do" in caplog.text
    assert (exp / "final.pt").stat().st_mtime_ns == before
    assert "nothing to do" in (exp / "log" / "fit_stats.log").read_text()

    # Another scoring setting: the fit stands, config.yaml follows.
    other = tmp_path / "other.yaml"
    cfg = yaml.safe_load(config.read_text())
    cfg["scoring"]["p_target"] = [0.05]
    other.write_text(yaml.safe_dump(cfg))
    fit(other, data)
    assert "nothing to do (config.yaml updated)" in caplog.text
    assert (exp / "final.pt").stat().st_mtime_ns == before
    assert load_config(exp / "config.yaml").scoring.p_target == [0.05]

    # Fewer utterances: refitted, saying so.
    subset = tmp_path / "subset"
    wavs = dict(line.split(maxsplit=1) for line in (data / "wav.scp").read_text().splitlines())
    write_table(subset / "wav.scp", dict(list(wavs.items())[:8]))
    fit(config, subset)
    assert "to fit: files changed; utterances changed" in caplog.text
    model, _ = load_model(exp / "final.pt")
    assert embeddings_of(model, subset).std(axis=0) == pytest.approx(1, abs=1e-4)

    # Another encoder setting: refitted, naming the key.
    fit(write_config(tmp_path / "smaller.yaml", n_mfcc=10), subset)
    assert "to fit: settings (encoder.args.n_mfcc 20 -> 10)" in caplog.text
    assert load_model(exp / "final.pt")[0].embed_dim == 20


def test_fit_from_stored_features_equals_the_fit_from_audio(fitted, tmp_path) -> None:
    """With DATA/feats.scp from the model's front end (as stage 1 writes it), the fit reads it
    instead of the audio, and gets the same statistics."""
    config, data, exp = fitted
    feats_data = tmp_path / "data"
    feats_data.mkdir()
    for name in ("wav.scp", "utt2spk", "spk2utt", "utt2dur"):
        (feats_data / name).write_bytes((data / name).read_bytes())
    model, cfg = load_model(exp / "init.pt")
    ark, scp = tmp_path / "feats.ark", feats_data / "feats.scp"
    with kaldiio.WriteHelper(f"ark,scp:{ark},{scp}") as writer, torch.no_grad():
        for utt, source in read_audio_sources(data).items():
            wave = torch.from_numpy(read_audio(source, sample_rate=16000, utt=utt)[None])
            writer(utt, model.fbank(wave)[0].numpy().T)
    (feats_data / "fbank.yaml").write_text(yaml.safe_dump(dataclasses.asdict(cfg.features)))
    exp2 = tmp_path / "exp"
    assert (
        fit_stats.main(["--config", str(config), "--data", str(feats_data), "--exp-dir", str(exp2)])
        == 0
    )
    assert "from feats" in (exp2 / "log" / "fit_stats.log").read_text()
    a, b = load_model(exp / "final.pt")[0].encoder, load_model(exp2 / "final.pt")[0].encoder
    torch.testing.assert_close(a.shift, b.shift, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.scale, b.scale, rtol=1e-5, atol=1e-5)


def test_wrong_encoder_or_experiment_is_a_one_line_error(fitted, tmp_path, capsys) -> None:
    config, data, exp = fitted
    resnet = tmp_path / "resnet.yaml"
    resnet.write_text("encoder: {name: resnet}\n")
    capsys.readouterr()
    argv = ["--config", str(resnet), "--data", str(data), "--exp-dir", str(tmp_path / "e")]
    assert fit_stats.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'encoder.name' is 'resnet'" in err
    assert not (tmp_path / "e").exists()
    # An experiment directory of another encoder is never overwritten.
    other = tmp_path / "trained"
    other.mkdir()
    (other / "config.yaml").write_text("encoder: {name: resnet}\n")
    argv = ["--config", str(config), "--data", str(data), "--exp-dir", str(other)]
    assert fit_stats.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'resnet', not 'stats'" in err
    assert not (other / "final.pt").exists()


def test_steps_script_prints_usage_and_names_a_missing_input(tmp_path) -> None:
    script = REPO / "steps" / "fit_stats.sh"
    result = subprocess.run([script], capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.startswith(f"Usage: {script}")
    assert "Reads" in result.stderr and "Writes" in result.stderr
    config = write_config(tmp_path / "c.yaml")
    result = subprocess.run(
        [script, config, tmp_path, tmp_path / "exp"], capture_output=True, text=True
    )
    assert result.returncode == 1 and f"no such file {tmp_path}/wav.scp" in result.stderr


def test_recipe_configs_are_valid_stats_rows() -> None:
    for recipe in ("librispeech", "mini", "voxceleb"):
        cfg = load_config(REPO / "egs" / recipe / "conf" / "stats.yaml")
        assert (cfg.experiment, cfg.encoder.name, cfg.encoder.args) == (
            "stats",
            "stats",
            {"n_mfcc": 30},
        )
        assert cfg.scoring.backend == "cosine" and cfg.scoring.subtract_mean is False
        assert cfg.extract.crop_seconds == 0
