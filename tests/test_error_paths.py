"""Bad input ends in one line naming the culprit and exit status 1, never a traceback; and
the smaller traps of a hostile first run: NaN audio, digital silence, Latin-1 file names,
private folders, paths that depend on the current directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sslsv.bin import compute_features, extract, prepare_data
from sslsv.bin import config as config_cli
from sslsv.bin import datadir as datadir_cli
from sslsv.config.load import config_to_dict, load_config
from sslsv.datadir.tools import subset_data_dir
from sslsv.fileio import read_dict, write_table
from sslsv.models.embedding import EmbeddingModel
from sslsv.train.checkpoint import model_payload

TINY = "encoder: {name: resnet, args: {channels: [4], blocks: [1], embed_dim: 8}}\n"


def error_of(main, argv, capsys) -> str:
    """The one error line of a command that must fail with exit status 1."""
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1, err
    return lines[0]


def latin1(path: Path, line: int) -> None:
    """Replace line ``line`` (1-based) of a table by the same text with a Latin-1 byte."""
    lines = path.read_bytes().splitlines(keepends=True)
    lines[line - 1] = lines[line - 1].replace(b" ", b"\xe9 ", 1)
    path.write_bytes(b"".join(lines))


def test_non_utf8_data_files_are_named_with_file_and_line(tone_data_dir, tmp_path, capsys):
    good = (tone_data_dir / "utt2spk").read_bytes()
    latin1(tone_data_dir / "utt2spk", 3)
    err = error_of(datadir_cli.main, ["validate", str(tone_data_dir)], capsys)
    assert f"{tone_data_dir}/utt2spk:3: not UTF-8 text (byte 0xe9 at column 10)" in err
    (tone_data_dir / "utt2spk").write_bytes(good)
    config = tmp_path / "c.yaml"
    config.write_text("experiment: x\n")
    latin1(tone_data_dir / "wav.scp", 2)
    argv = ["--config", str(config), "--data", str(tone_data_dir), "--feats-dir", str(tmp_path)]
    err = error_of(compute_features.main, argv, capsys)
    assert f"{tone_data_dir}/wav.scp:2: not UTF-8 text" in err
    config.write_bytes(b"experiment: caf\xe9\n")
    err = error_of(config_cli.main, ["--config", str(config)], capsys)
    assert "c.yaml:1: not UTF-8 text" in err


def test_a_truncated_or_foreign_checkpoint_is_named(tone_data_dir, tmp_path, capsys):
    cfg = load_config(None, ["encoder.name=resnet", "encoder.args={channels: [4], blocks: [1]}"])
    ckpt = tmp_path / "final.pt"
    torch.save(model_payload(config_to_dict(cfg), EmbeddingModel(cfg).state_dict()), ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # a copy cut short
    argv = ["--checkpoint", str(ckpt), "--data", str(tone_data_dir), "--output", str(tmp_path)]
    err = error_of(extract.main, argv, capsys)
    assert f"not a readable sslsv checkpoint: {ckpt} (" in err
    torch.save({"weights": torch.zeros(3)}, ckpt)
    err = error_of(extract.main, argv, capsys)
    assert f"not an sslsv checkpoint: {ckpt}" in err


def test_nan_audio_gives_no_features_but_an_error_naming_the_utterance(
    tone_data_dir, tmp_path, capsys
):
    wavs = read_dict(tone_data_dir / "wav.scp")
    audio, rate = sf.read(wavs["spk1-utt2"], dtype="float32")
    audio[100:200] = np.nan
    sf.write(wavs["spk1-utt2"], audio, rate, subtype="FLOAT")
    config = tmp_path / "c.yaml"
    config.write_text("experiment: x\n")
    feats = tmp_path / "feats"
    argv = ["--config", str(config), "--data", str(tone_data_dir), "--feats-dir", str(feats)]
    capsys.readouterr()
    assert compute_features.main(argv) == 1
    err = capsys.readouterr().err
    # The stage's one error line, then the end of the failed job's log, which names it.
    assert "error: 1 of 1 fbank jobs failed" in err and "Traceback" not in err
    assert "utterance 'spk1-utt2': non-finite features" in err
    log = (tone_data_dir / "log" / "fbank.1.log").read_text()
    assert "utterance 'spk1-utt2': non-finite features" in log
    assert not (tone_data_dir / "feats.scp").exists()


@pytest.fixture
def with_silence(tone_data_dir) -> Path:
    """Two utterances made digitally silent (zeros, and -90 dBFS noise)."""
    wavs = read_dict(tone_data_dir / "wav.scp")
    for utt, level in (("spk0-utt1", 0.0), ("spk2-utt3", 10 ** (-90 / 20))):
        audio, rate = sf.read(wavs[utt], dtype="float32")
        noise = np.random.default_rng(0).standard_normal(len(audio)).astype(np.float32)
        sf.write(wavs[utt], noise * level, rate, subtype="FLOAT")
    return tone_data_dir


def test_digital_silence_is_listed_at_stages_0_1_and_3(with_silence, tmp_path, capsys, caplog):
    data = with_silence
    config = tmp_path / "c.yaml"
    config.write_text("experiment: x\n" + TINY)
    feats = tmp_path / "feats"
    argv = ["--config", str(config), "--data", str(data), "--feats-dir", str(feats)]
    assert compute_features.main(argv) == 0
    assert (feats / "silent.txt").read_text().split() == ["spk0-utt1", "spk2-utt3"]
    assert "2 utterances are digitally silent" in caplog.text
    shutil.rmtree(feats)
    err = error_of(compute_features.main, [*argv, "--on-silence", "error"], capsys)
    assert "2 utterances are digitally silent (RMS below -70 dBFS" in err

    cfg = load_config(config)
    ckpt = tmp_path / "final.pt"
    torch.save(model_payload(config_to_dict(cfg), EmbeddingModel(cfg).state_dict()), ckpt)
    (data / "fbank.yaml").unlink()  # from the audio
    out = tmp_path / "emb"
    argv = ["--checkpoint", str(ckpt), "--data", str(data), "--output", str(out)]
    assert extract.main(argv) == 0
    assert (out / "silent.txt").read_text().split() == ["spk0-utt1", "spk2-utt3"]

    corpus = tmp_path / "corpus"
    for utt, path in read_dict(data / "wav.scp").items():
        spk = utt.split("-")[0]
        (corpus / spk).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, corpus / spk / f"{utt}.wav")
    dest = tmp_path / "imported"
    argv = ["folder", str(corpus), str(dest), "--nj", "1", "--check-silence"]
    assert prepare_data.main(argv) == 0
    assert (dest / "silent.txt").read_text().split() == ["spk0-spk0-utt1", "spk2-spk2-utt3"]


def test_a_latin1_file_name_is_excluded_and_listed_not_a_crash(tone_data_dir, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    wavs = list(read_dict(tone_data_dir / "wav.scp").values())
    for i, path in enumerate(wavs[:4]):
        (corpus / "spk").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, corpus / "spk" / f"u{i}.wav")
    odd = os.path.join(os.fsencode(corpus / "spk"), b"caf\xe9.wav")
    shutil.copy(wavs[5], odd)
    dest = tmp_path / "d"
    err = error_of(prepare_data.main, ["folder", str(corpus), str(dest), "--nj", "1"], capsys)
    assert "1 of 5 files are unreadable or empty" in err
    report = (tmp_path / "d.bad_audio.txt").read_text(encoding="utf-8")
    assert "caf\\xe9.wav" in report and "file name is not UTF-8" in report
    argv = ["folder", str(corpus), str(dest), "--nj", "1", "--max-bad-fraction", "0.5"]
    assert prepare_data.main(argv) == 0
    assert len(read_dict(dest / "wav.scp")) == 4
    assert "caf\\xe9.wav" in (dest / "excluded.txt").read_text(encoding="utf-8")


def test_new_data_dirs_follow_the_umask(tone_data_dir, tmp_path):
    old = os.umask(0o022)
    try:
        dest = subset_data_dir(tone_data_dir, tmp_path / "subset", first=4)
    finally:
        os.umask(old)
    assert dest.stat().st_mode & 0o777 == 0o755  # not mkdtemp's private 0o700


def test_config_paths_resolve_against_the_recipe_not_the_current_directory(tmp_path, monkeypatch):
    recipe = tmp_path / "recipe"
    (recipe / "conf").mkdir(parents=True)
    (recipe / "conf" / "x.yaml").write_text(
        "augment: {rir_dir: data/aug/rirs, noise: {noise: {data_dir: data/aug/noise}}}\n"
    )
    monkeypatch.chdir(recipe)
    here = load_config("conf/x.yaml")
    monkeypatch.chdir(tmp_path)
    there = load_config(recipe / "conf" / "x.yaml")
    assert here.augment == there.augment
    assert there.augment.rir_dir == str(recipe / "data" / "aug" / "rirs")
    assert there.augment.noise["noise"].data_dir == str(recipe / "data" / "aug" / "noise")


def test_write_table_round_trip_keeps_utf8(tmp_path):
    write_table(tmp_path / "t", {"é": "ü"})
    assert read_dict(tmp_path / "t") == {"é": "ü"}
