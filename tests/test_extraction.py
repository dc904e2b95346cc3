"""Stage 3 extraction: crop protocol and batching against a plain per-utterance computation."""

from __future__ import annotations

import subprocess
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch

from sslsv.config.load import config_to_dict, load_config
from sslsv.config.schema import ExtractConfig
from sslsv.datadir.io import write_spk2utt
from sslsv.extraction import crop_starts, embed_data_dir, take_crops
from sslsv.fileio import write_table
from sslsv.models.embedding import EmbeddingModel
from sslsv.train.checkpoint import load_model, model_payload

REPO = Path(__file__).resolve().parents[1]
PYTHON = str(REPO / ".venv" / "bin" / "python")
SR = 16000
CROP_SECONDS = 0.5


@pytest.fixture(scope="module")
def model() -> EmbeddingModel:
    torch.manual_seed(0)
    cfg = load_config(
        None,
        [
            "encoder.name=resnet",
            "encoder.args={channels: [4, 8], blocks: [1, 1], embed_dim: 16}",
            "features.n_mels=24",
        ],
    )
    model = EmbeddingModel(cfg).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so eval mode matters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Seven utterances of 0.3-1.7 s: some shorter than a crop, lengths all different."""
    root = tmp_path_factory.mktemp("extract")
    rng = np.random.default_rng(1)
    wavs = {}
    for i, seconds in enumerate([1.2, 0.3, 1.7, 0.5, 0.9, 0.45, 1.31]):
        audio = (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32)
        path = root / "wav" / f"u{i}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, audio, SR, subtype="FLOAT")
        wavs[f"spk{i % 3}-u{i}"] = str(path)
    data = root / "data"
    write_table(data / "wav.scp", wavs)
    write_table(data / "utt2spk", {u: u.split("-")[0] for u in wavs})
    write_spk2utt(data)
    return data


def collect(model, data, use_feats=False, **options) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    options.setdefault("num_workers", 0)
    n = embed_data_dir(model, data, use_feats, "cpu", out.__setitem__, ExtractConfig(**options))
    assert n == len(out)
    return out


def plain_crops(signal: np.ndarray, crop: int, num_crops: int) -> list[np.ndarray]:
    """The definition, spelled out: loop a short signal, then num_crops evenly spaced crops
    whose first starts at 0 and last ends at the end (one crop: the middle one)."""
    if signal.shape[-1] < crop:
        looped = signal
        while looped.shape[-1] < crop:
            looped = np.concatenate([looped, signal], axis=-1)
        signal = looped[..., :crop]
    slack = signal.shape[-1] - crop
    if num_crops == 1:
        return [signal[..., slack // 2 : slack // 2 + crop]]
    starts = [int(np.floor(i * slack / (num_crops - 1) + 1e-9)) for i in range(num_crops)]
    return [signal[..., s : s + crop] for s in starts]


def test_crop_starts_span_the_signal():
    assert crop_starts(100, 40, 4) == [0, 20, 40, 60]
    assert crop_starts(100, 40, 1) == [30]
    assert crop_starts(30, 40, 3) == [0, 0, 0]
    for length, crop, n in [(16001, 8000, 6), (7, 3, 5), (1000, 999, 3)]:
        starts = crop_starts(length, crop, n)
        assert starts[0] == 0 and starts[-1] + crop == length
        assert starts == sorted(starts) and len(starts) == n


def test_take_crops_matches_definition():
    rng = np.random.default_rng(0)
    for length, crop, n in [(50, 20, 4), (13, 20, 3), (20, 20, 2), (97, 10, 1), (5, 12, 2)]:
        signal = rng.standard_normal((3, length)).astype(np.float32)
        expected = plain_crops(signal, crop, n)
        got = take_crops(signal, crop, n)
        assert got.shape == (n, 3, crop)
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e)


def test_full_utterances_equal_one_forward_each(model, data_dir):
    """Full-utterance protocol, through two DataLoader workers (order must be kept)."""
    got = collect(model, data_dir, num_workers=2)
    wavs = dict(line.split(maxsplit=1) for line in (data_dir / "wav.scp").read_text().splitlines())
    assert list(got) == list(wavs)
    with torch.no_grad():
        for utt, path in wavs.items():
            audio, _ = sf.read(path, dtype="float32")
            expected = model(torch.from_numpy(audio)[None])[0].numpy()
            np.testing.assert_allclose(got[utt], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch_size", [1, 7, 256])
def test_batched_crops_equal_plain_per_crop_mean(model, data_dir, batch_size):
    """The crops of batch_size // 3 utterances (at least one) share a forward pass (7: two
    utterances, 6 crops; 256: all seven); the embeddings must not depend on it."""
    got = collect(model, data_dir, crop_seconds=CROP_SECONDS, num_crops=3, batch_size=batch_size)
    crop = int(CROP_SECONDS * SR)
    with torch.no_grad():
        for line in (data_dir / "wav.scp").read_text().splitlines():
            utt, path = line.split(maxsplit=1)
            audio, _ = sf.read(path, dtype="float32")
            embeddings = [
                model(torch.from_numpy(np.ascontiguousarray(c))[None])[0].numpy()
                for c in plain_crops(audio, crop, 3)
            ]
            expected = np.mean([e / np.linalg.norm(e) for e in embeddings], axis=0)
            np.testing.assert_allclose(got[utt], expected, rtol=1e-5, atol=1e-6)


def test_crops_from_stored_features(model, data_dir, tmp_path):
    """With feats.scp the crops are frame crops of the stored log-mels, of as many frames as
    the front end makes from a crop of samples."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("wav.scp", "utt2spk", "spk2utt"):
        (data / name).write_text((data_dir / name).read_text())
    feats = {}
    with torch.no_grad(), kaldiio.WriteHelper(f"ark,scp:{tmp_path}/f.ark,{data}/feats.scp") as w:
        for line in (data_dir / "wav.scp").read_text().splitlines():
            utt, path = line.split(maxsplit=1)
            audio, _ = sf.read(path, dtype="float32")
            feats[utt] = model.fbank(torch.from_numpy(audio)[None])[0].numpy()
            w(utt, feats[utt].T)
    got = collect(model, data, use_feats=True, crop_seconds=CROP_SECONDS, num_crops=2)
    frames = model.fbank.num_frames(int(CROP_SECONDS * SR))
    with torch.no_grad():
        for utt, f in feats.items():
            embeddings = [
                model.forward_features(torch.from_numpy(np.ascontiguousarray(c))[None])[0]
                for c in plain_crops(f, frames, 2)
            ]
            expected = torch.stack([e / e.norm() for e in embeddings]).mean(0).numpy()
            np.testing.assert_allclose(got[utt], expected, rtol=1e-5, atol=1e-6)


def test_cli_crop_flags_and_stamp(model, data_dir, tmp_path):
    ckpt = tmp_path / "final.pt"
    cfg = load_config(
        None,
        [
            "encoder.name=resnet",
            "encoder.args={channels: [4, 8], blocks: [1, 1], embed_dim: 16}",
            "features.n_mels=24",
        ],
    )
    payload = model_payload(config_to_dict(cfg), model.state_dict())
    torch.save(payload, ckpt)
    assert load_model(ckpt)[1].extract.crop_seconds == 0.0
    out = tmp_path / "emb"

    def extract(*flags):
        return subprocess.run(
            [PYTHON, "-m", "sslsv.bin.extract", "--checkpoint", str(ckpt), "--data",
             str(data_dir), "--output", str(out), *flags],
            capture_output=True, text=True, cwd=REPO,
        )  # fmt: skip

    def embeddings():
        return {u: np.array(v) for u, v in kaldiio.load_scp(str(out / "embeddings.scp")).items()}

    result = extract("--num-crops", "0")
    assert result.returncode != 0 and "--num-crops" in result.stderr
    result = extract("--crop-seconds", str(CROP_SECONDS), "--num-crops", "3", "--batch-size", "4")
    assert result.returncode == 0, result.stderr
    cropped = embeddings()
    expected = collect(model, data_dir, crop_seconds=CROP_SECONDS, num_crops=3)
    for utt, e in expected.items():
        np.testing.assert_allclose(cropped[utt], e, rtol=1e-5, atol=1e-6)
    # Same protocol, other batch size: reused. Another protocol: recomputed.
    result = extract("--crop-seconds", str(CROP_SECONDS), "--num-crops", "3", "--batch-size", "8")
    assert "up to date" in result.stderr
    result = extract("--crop-seconds", "0")
    assert result.returncode == 0, result.stderr
    full = embeddings()
    utt = next(iter(full))
    assert not np.allclose(full[utt], cropped[utt])
    # The extract: section of --config instead of the checkpoint's; flags override it.
    config = tmp_path / "c.yaml"
    config.write_text(f"extract: {{crop_seconds: {CROP_SECONDS}, num_crops: 3}}\n")
    result = extract("--config", str(config))
    assert result.returncode == 0, result.stderr
    from_config = embeddings()
    for u in cropped:  # the same protocol (another batch size: equal up to rounding)
        np.testing.assert_allclose(from_config[u], cropped[u], rtol=1e-5, atol=1e-6)
    assert "mean of 3 crops of 0.5 s" in (out / "log" / "extract.1.log").read_text()
    result = extract("--config", str(config), "--num-crops", "2")
    assert result.returncode == 0, result.stderr
    assert not np.allclose(embeddings()[utt], cropped[utt])
    config.write_text("extract: {crop_seconds: -1}\n")
    result = extract("--config", str(config))
    assert result.returncode == 1
    assert "'extract.crop_seconds' is -1.0; it must be >= 0" in result.stderr
