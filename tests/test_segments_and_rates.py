"""Every stage reads utterances through one reader: a data dir with ``segments`` gives, per
utterance, exactly what the same spans cut into files give (stages 1, 2 and 3), and a
``features.sample_rate`` other than 16 kHz is honoured everywhere (crops, durations,
augmentation sets, front end, extraction)."""

from __future__ import annotations

from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch

from sslsv.audio import read_audio, resample
from sslsv.bin import compute_features, extract
from sslsv.bin import train as train_cli
from sslsv.config.load import load_config
from sslsv.datadir.io import write_spk2utt
from sslsv.datadir.tools import compute_utt2dur
from sslsv.fileio import write_table
from sslsv.train.checkpoint import load_safe
from sslsv.train.dataset import CropDataset

RATE = 16000
TINY = """
experiment: tiny
encoder:
  name: resnet
  args: {channels: [4, 8], blocks: [1, 1], embed_dim: 8}
augment: {enabled: false}
train: {epochs: 1, batch_size: 4, num_workers: 0, crop_seconds: 0.5, deterministic: true}
"""


def voice(rng: np.random.Generator, f0: float, seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    x = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 5))
    return (0.1 * x + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def segmented_and_cut(tmp_path_factory) -> tuple[Path, Path]:
    """The same 12 utterances twice: as spans of 3 long recordings (one per speaker, with
    silence between the utterances) and as a file each. Span edges are exact in binary, so
    both dirs get the same utt2dur."""
    root = tmp_path_factory.mktemp("segments")
    rng = np.random.default_rng(0)
    seg_dir, cut_dir = root / "segmented", root / "cut"
    wav_scp, segments, cut_scp, utt2spk = {}, {}, {}, {}
    for s, f0 in enumerate((110.0, 170.0, 240.0)):
        spk, pieces, t = f"spk{s}", [], 0.25
        pieces.append(np.zeros(round(0.25 * RATE), np.float32))
        for u, seconds in enumerate((1.25, 1.5, 1.75, 2.0)):
            utt = f"{spk}-u{u}"
            audio = voice(rng, f0 * (1 + 0.02 * u), seconds)
            segments[utt] = f"{spk}-rec {t} {t + seconds}"
            path = root / "cut files" / f"{utt}.wav"
            path.parent.mkdir(exist_ok=True)
            sf.write(path, audio, RATE, subtype="FLOAT")
            cut_scp[utt], utt2spk[utt] = str(path), spk
            pieces += [audio, np.zeros(round(0.5 * RATE), np.float32)]
            t += seconds + 0.5
        recording = root / "recordings" / f"{spk}.wav"
        recording.parent.mkdir(exist_ok=True)
        sf.write(recording, np.concatenate(pieces), RATE, subtype="FLOAT")
        wav_scp[f"{spk}-rec"] = str(recording)
    for d, wavs in ((seg_dir, wav_scp), (cut_dir, cut_scp)):
        write_table(d / "wav.scp", wavs)
        write_table(d / "utt2spk", utt2spk)
        write_spk2utt(d)
    write_table(seg_dir / "segments", segments)
    assert compute_utt2dur(seg_dir) == compute_utt2dur(cut_dir)
    return seg_dir, cut_dir


def features(data_dir: Path) -> dict[str, np.ndarray]:
    return {u: np.array(m) for u, m in kaldiio.load_scp(str(data_dir / "feats.scp")).items()}


def embeddings(out: Path) -> dict[str, np.ndarray]:
    return {u: np.array(v) for u, v in kaldiio.load_scp(str(out / "embeddings.scp")).items()}


def test_segments_through_stages_1_2_and_3_equal_cut_files(segmented_and_cut, tmp_path):
    seg_dir, cut_dir = segmented_and_cut
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)

    # Stage 1, two jobs (the split keeps each utterance's recording).
    for d in (seg_dir, cut_dir):
        argv = ["--config", str(config), "--data", str(d), "--feats-dir", str(tmp_path / d.name)]
        assert compute_features.main([*argv, "--nj", "2"]) == 0
    seg_feats, cut_feats = features(seg_dir), features(cut_dir)
    assert sorted(seg_feats) == sorted(cut_feats) and len(seg_feats) == 12
    for utt, feats in cut_feats.items():
        np.testing.assert_array_equal(seg_feats[utt], feats)
    # Utterances, not recordings: frames follow each span's length.
    assert seg_feats["spk0-u3"].shape[0] == 2 * RATE // 160 + 1

    # Stage 2: the same training crops, so the same model.
    for d in (seg_dir, cut_dir):
        exp = tmp_path / f"exp-{d.name}"
        assert (
            train_cli.main(["--config", str(config), "--data", str(d), "--exp-dir", str(exp)]) == 0
        )
    seg_model = load_safe(tmp_path / "exp-segmented" / "final.pt")["model"]
    cut_model = load_safe(tmp_path / "exp-cut" / "final.pt")["model"]
    for key, value in cut_model.items():
        assert torch.equal(seg_model[key], value), key

    # Stage 3 from the audio (no feats.scp) and from the features, two jobs.
    ckpt = tmp_path / "exp-cut" / "final.pt"
    for source in ("audio", "feats"):
        got = {}
        for d in (seg_dir, cut_dir):
            if source == "audio":
                (d / "feats.scp").rename(d / "feats.scp.off")
            out = tmp_path / f"emb-{source}-{d.name}"
            argv = ["--checkpoint", str(ckpt), "--data", str(d), "--output", str(out), "--nj", "2"]
            assert extract.main(argv) == 0
            got[d.name] = embeddings(out)
            if source == "audio":
                (d / "feats.scp.off").rename(d / "feats.scp")
        assert sorted(got["segmented"]) == sorted(got["cut"])
        for utt, e in got["cut"].items():
            np.testing.assert_array_equal(got["segmented"][utt], e)


EIGHT_K = """
experiment: eight_k
features: {sample_rate: 8000, n_fft: 256, win_length: 200, hop_length: 80, f_max: 3800.0}
encoder:
  name: resnet
  args: {channels: [4, 8], blocks: [1, 1], embed_dim: 8}
augment:
  enabled: true
  noise_prob: 1.0
  noise: {noise: {data_dir: "NOISE"}}
train: {epochs: 1, batch_size: 4, num_workers: 0, crop_seconds: 0.5, deterministic: true}
"""


def test_an_8k_config_is_honoured_everywhere(tone_data_dir, tmp_path):
    """Data at 16 kHz, features.sample_rate 8000: every reader returns 8 kHz audio, so crops,
    augmentation clips, features and embeddings are those of the audio resampled to 8 kHz."""
    config = tmp_path / "8k.yaml"
    config.write_text(EIGHT_K.replace("NOISE", str(tone_data_dir)))
    cfg = load_config(config)
    rate = cfg.features.sample_rate

    dataset = CropDataset(tone_data_dir, [(2, round(0.5 * rate))], 0, rate)
    assert dataset[(0, 0)][0][0].shape == (2, 4000)
    seconds = float((tone_data_dir / "utt2dur").read_text().split()[1])
    assert dataset.num_samples[0] == int(seconds * rate)

    exp = tmp_path / "exp"
    argv = ["--config", str(config), "--data", str(tone_data_dir), "--exp-dir", str(exp)]
    assert train_cli.main(argv) == 0
    from sslsv.augment.build import build_augmenter

    augmenter = build_augmenter(cfg.augment, rate)
    clip = augmenter.categories[0].clips.clips[0]
    first = (tone_data_dir / "wav.scp").read_text().splitlines()[0].split(maxsplit=1)[1]
    assert len(clip) == len(read_audio(first, sample_rate=RATE)) // 2

    # The same audio written at 8 kHz (as the reader resamples it) embeds identically.
    eight = tmp_path / "data8k"
    wavs = {}
    for line in (tone_data_dir / "wav.scp").read_text().splitlines():
        utt, path = line.split(maxsplit=1)
        audio, _ = sf.read(path, dtype="float32")
        wavs[utt] = str(tmp_path / f"{utt}-8k.wav")
        sf.write(wavs[utt], resample(audio, RATE, 8000), 8000, subtype="FLOAT")
    write_table(eight / "wav.scp", wavs)
    for name in ("utt2spk", "spk2utt", "utt2dur"):
        (eight / name).write_text((tone_data_dir / name).read_text())
    got = {}
    for d in (tone_data_dir, eight):
        feats_dir = tmp_path / f"f-{d.name}"
        argv = ["--config", str(config), "--data", str(d), "--feats-dir", str(feats_dir)]
        assert compute_features.main(argv) == 0
        assert features(d)[next(iter(wavs))].shape[1] == cfg.features.n_mels
        out = tmp_path / f"emb-{d.name}"
        argv = ["--checkpoint", str(exp / "final.pt"), "--data", str(d), "--output", str(out)]
        assert extract.main(argv) == 0
        got[d.name] = embeddings(out)
    assert np.array_equal(features(tone_data_dir)["spk0-utt0"], features(eight)["spk0-utt0"])
    for utt, e in got["data8k"].items():
        np.testing.assert_array_equal(got[tone_data_dir.name][utt], e)
