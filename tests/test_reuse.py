"""Nothing stale: a stage reuses an output only when everything it read is unchanged
(sslsv.reuse), redoes exactly the jobs whose inputs changed, and says what changed."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch

from sslsv.bin import compute_features, extract, score
from sslsv.config.load import config_to_dict, load_config
from sslsv.fileio import read_dict, write_table
from sslsv.models.embedding import EmbeddingModel
from sslsv.reuse import changes, write_stamp
from sslsv.train.checkpoint import model_payload

ENCODER = "encoder: {name: resnet, args: {channels: [4, 8], blocks: [1, 1], embed_dim: 8}}\n"


def feats(data: Path) -> dict[str, np.ndarray]:
    return {u: np.array(m) for u, m in kaldiio.load_scp(str(data / "feats.scp")).items()}


def embeddings(out: Path) -> dict[str, np.ndarray]:
    return {u: np.array(v) for u, v in kaldiio.load_scp(str(out / "embeddings.scp")).items()}


def mtimes(folder: Path, pattern: str) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.glob(pattern))}


def repoint(data: Path, utt: str, like: str) -> None:
    """Point ``utt`` of wav.scp at a copy of ``like``'s audio (same id, other content)."""
    wavs = read_dict(data / "wav.scp")
    copy = Path(wavs[like]).with_name(f"copy-of-{like}.wav")
    shutil.copy(wavs[like], copy)
    wavs[utt] = str(copy)
    write_table(data / "wav.scp", wavs)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text("experiment: x\n" + ENCODER)
    return path


def run_stage1(config: Path, data: Path, feats_dir: Path) -> None:
    argv = ["--config", str(config), "--data", str(data), "--feats-dir", str(feats_dir)]
    assert compute_features.main([*argv, "--nj", "2"]) == 0


def test_stage1_redoes_exactly_the_jobs_whose_inputs_changed(
    tone_data_dir, config, tmp_path, caplog
):
    feats_dir = tmp_path / "feats"
    run_stage1(config, tone_data_dir, feats_dir)
    arks = mtimes(feats_dir, "*.ark")
    scp_time = (tone_data_dir / "feats.scp").stat().st_mtime_ns

    with caplog.at_level(logging.INFO):
        run_stage1(config, tone_data_dir, feats_dir)
    assert "features up to date (2 jobs); nothing redone" in caplog.text
    assert mtimes(feats_dir, "*.ark") == arks
    assert (tone_data_dir / "feats.scp").stat().st_mtime_ns == scp_time

    # An utterance of job 1 now names other audio: job 1 is redone, job 2 is not.
    repoint(tone_data_dir, "spk0-utt0", like="spk3-utt0")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        run_stage1(config, tone_data_dir, feats_dir)
    assert "job 1 of 2 to do: audio changed; utterances changed" in caplog.text
    assert "job 2 of 2" not in caplog.text
    now = mtimes(feats_dir, "*.ark")
    assert now["fbank_data.2.ark"] == arks["fbank_data.2.ark"]
    assert now["fbank_data.1.ark"] != arks["fbank_data.1.ark"]
    got = feats(tone_data_dir)
    np.testing.assert_array_equal(got["spk0-utt0"], got["spk3-utt0"])

    # Other feature settings: every job is redone, and fbank.yaml tells the truth.
    config.write_text(config.read_text() + "features: {n_mels: 24}\n")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        run_stage1(config, tone_data_dir, feats_dir)
    assert "settings (n_mels 40 -> 24)" in caplog.text
    assert all(m.shape[1] == 24 for m in feats(tone_data_dir).values())
    assert "n_mels: 24" in (tone_data_dir / "fbank.yaml").read_text()


def test_stage1_with_another_data_dir_of_the_same_ids_redoes(tone_data_dir, config, tmp_path):
    feats_dir = tmp_path / "feats"
    run_stage1(config, tone_data_dir, feats_dir)
    other = tmp_path / "other" / "data"
    shutil.copytree(tone_data_dir, other)
    for f in ("feats.scp", "utt2num_frames", "fbank.yaml"):
        (other / f).unlink()
    repoint(other, "spk1-utt1", like="spk2-utt2")
    run_stage1(config, other, feats_dir)
    got = feats(other)
    np.testing.assert_array_equal(got["spk1-utt1"], got["spk2-utt2"])


@pytest.fixture
def model_file(tmp_path: Path, config: Path) -> Path:
    cfg = load_config(config)
    torch.manual_seed(0)
    model = EmbeddingModel(cfg)
    path = tmp_path / "final.pt"
    torch.save(model_payload(config_to_dict(cfg), model.state_dict()), path)
    return path


def run_stage3(model: Path, data: Path, out: Path, *flags: str) -> None:
    argv = ["--checkpoint", str(model), "--data", str(data), "--output", str(out), "--nj", "2"]
    assert extract.main([*argv, *flags]) == 0


def test_stage3_redoes_exactly_the_jobs_whose_inputs_changed(
    tone_data_dir, model_file, tmp_path, caplog
):
    out = tmp_path / "emb"
    run_stage3(model_file, tone_data_dir, out)
    arks = mtimes(out, "*.ark")
    assert not list(tone_data_dir.glob("split*")), "nothing is written into the input data dir"

    with caplog.at_level(logging.INFO):
        run_stage3(model_file, tone_data_dir, out)
    assert "embeddings up to date (2 jobs); nothing redone" in caplog.text
    assert mtimes(out, "*.ark") == arks

    repoint(tone_data_dir, "spk3-utt3", like="spk0-utt0")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        run_stage3(model_file, tone_data_dir, out)
    assert "job 2 of 2 to do: files changed; utterances changed" in caplog.text
    assert "job 1 of 2" not in caplog.text
    got = embeddings(out)
    np.testing.assert_array_equal(got["spk3-utt3"], got["spk0-utt0"])

    # A new model file at the same path: every job is redone.
    model_file.write_bytes(model_file.read_bytes())
    caplog.clear()
    with caplog.at_level(logging.INFO):
        run_stage3(model_file, tone_data_dir, out)
    assert "job 1 of 2 to do: model (mtime_ns" in caplog.text and "job 2 of 2 to do" in caplog.text


def test_stage3_never_reads_features_of_another_front_end(
    tone_data_dir, config, model_file, tmp_path, caplog
):
    """Features made with 40 mels, then the settings changed to 24 (the model's): stage 1
    recomputes them, so stage 3 with the 24-mel model reads 24-bin features that match its
    own front end, and gives what it gives from the audio."""
    forty = tmp_path / "forty.yaml"
    forty.write_text(
        "experiment: x\n" + ENCODER.replace("resnet", "resnet") + "features: {n_mels: 40}\n"
    )
    run_stage1(forty, tone_data_dir, tmp_path / "feats")
    twenty_four = tmp_path / "24.yaml"
    twenty_four.write_text("experiment: x\n" + ENCODER + "features: {n_mels: 24}\n")
    cfg = load_config(twenty_four)
    model = EmbeddingModel(cfg)
    ckpt = tmp_path / "m24.pt"
    torch.save(model_payload(config_to_dict(cfg), model.state_dict()), ckpt)

    run_stage1(twenty_four, tone_data_dir, tmp_path / "feats")
    with caplog.at_level(logging.INFO):
        run_stage3(ckpt, tone_data_dir, tmp_path / "from-feats")
    assert "from feats" in caplog.text
    (tone_data_dir / "fbank.yaml").unlink()  # no features for the model: from the audio
    run_stage3(ckpt, tone_data_dir, tmp_path / "from-audio")
    a, b = embeddings(tmp_path / "from-feats"), embeddings(tmp_path / "from-audio")
    for utt in a:
        np.testing.assert_allclose(a[utt], b[utt], rtol=1e-5, atol=1e-6)


def test_a_plda_back_end_is_retrained_when_its_training_embeddings_change(tmp_path, caplog):
    rng = np.random.default_rng(0)
    ids = [f"s{i % 10}-u{i:03d}" for i in range(200)]
    x = rng.standard_normal((200, 6)).astype(np.float32) + np.repeat(
        rng.standard_normal((10, 6)), 20, axis=0
    ).reshape(10, 20, 6).transpose(1, 0, 2).reshape(200, 6)

    def write(stem: str, xs: np.ndarray) -> str:
        with kaldiio.WriteHelper(f"ark,scp:{tmp_path / stem}.ark,{tmp_path / stem}.scp") as w:
            for u, v in zip(ids, xs):
                w(u, v)
        return str(tmp_path / f"{stem}.scp")

    train = write("train", x)
    write_table(tmp_path / "utt2spk", {u: u.split("-")[0] for u in ids})
    write_table(tmp_path / "trials", {f"{ids[0]}": f"{ids[1]} target"})
    model = tmp_path / "plda.npz"
    argv = ["--backend", "plda", "--trials", str(tmp_path / "trials"), "--enroll", train,
            "--test", train, "--train", train, "--train-utt2spk", str(tmp_path / "utt2spk"),
            "--backend-model", str(model), "--output", str(tmp_path / "s")]  # fmt: skip
    with caplog.at_level(logging.INFO):
        assert score.main(argv) == 0
        assert "training the plda back end: not made yet" in caplog.text
        caplog.clear()
        assert score.main(argv) == 0
        assert "trained on these inputs" in caplog.text
        caplog.clear()
        write("train", x * 2 + 1)  # other embeddings, same file name
        assert score.main(argv) == 0
        assert "training the plda back end: arks changed" in caplog.text  # same scp, new arks


def test_changes_names_what_differs(tmp_path):
    out = tmp_path / "out"
    assert changes(out, {"a": "1"}) == ["not made yet"]
    out.write_text("x")
    assert changes(out, {"a": "1"}) == ["no stamp (interrupted, or made by an older version)"]
    write_stamp(out, {"a": "1", "settings": {"n": 1, "m": 2}})
    assert changes(out, {"a": "1", "settings": {"n": 1, "m": 2}}) == []
    assert changes(out, {"a": "2", "settings": {"n": 3, "m": 2}}) == [
        "a changed",
        "settings (n 1 -> 3)",
    ]


def test_an_experiment_trained_on_other_data_is_refused(tone_data_dir, tmp_path, capsys):
    from sslsv.bin import train

    config = tmp_path / "t.yaml"
    config.write_text(
        "experiment: t\n" + ENCODER + "augment: {enabled: false}\n"
        "train: {epochs: 1, batch_size: 4, num_workers: 0, crop_seconds: 0.5}\n"
    )
    argv = ["--config", str(config), "--data", str(tone_data_dir), "--exp-dir", str(tmp_path / "e")]
    assert train.main(argv) == 0
    assert train.main(argv) == 0  # finished, same data: nothing to do
    repoint(tone_data_dir, "spk1-utt1", like="spk2-utt2")
    capsys.readouterr()
    assert train.main([*argv, "--override", "train.epochs=2"]) == 1
    err = capsys.readouterr().err
    assert "was trained on other data (audio changed; utterances changed since)" in err
