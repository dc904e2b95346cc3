"""Each command names its inputs and outputs once (sslsv.cli.check_io): an output that is an
input, or a folder that holds one, or one where nothing can be written, is refused in one
line with exit status 1, before anything is written."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tone_data_dir

from sslsv.bin import cluster as cluster_cli
from sslsv.bin import (
    compute_features,
    extract,
    fit_stats,
    make_aug_sets,
    make_trials,
    prepare_data,
    results,
)
from sslsv.bin import datadir as datadir_cli
from sslsv.bin import train as train_cli
from sslsv.datadir.tools import split_data_dir
from sslsv.fileio import read_dict

METRICS = "EER: 1.0000%\nminDCF(p=0.01): 0.1000\n"


def refusal(main, argv: list[str], capsys) -> str:
    """The error of a command that must refuse: exit status 1, one line, no traceback."""
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and ": error: " in lines[0], err
    return lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A small data dir of real audio (4 speakers x 2 utterances, 0.2 s each)."""
    return make_tone_data_dir(tmp_path_factory.mktemp("tone"), speakers=4, utts=2, seconds=0.2)


# ----------------------------------------------------------------------------- results


def results_args(tmp_path: Path, output: Path, *rows: tuple[str, Path]) -> list:
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    argv: list = ["--config", config, "--output", output]
    for label, path in rows:
        argv += ["--row", label, path]
    return argv


def test_results_refuses_an_output_that_is_a_metrics_file_it_reads(tmp_path, capsys):
    metrics = tmp_path / "test_trials.metrics"
    metrics.write_text(METRICS)
    argv = results_args(tmp_path, metrics, ("final test_trials", metrics))
    line = refusal(results.main, argv, capsys)
    assert f"--output {metrics} is the input --row 'final test_trials' {metrics}" in line
    assert metrics.read_text() == METRICS  # before: replaced by RESULTS, exit status 0
    # THRESHOLDS beside RESULTS may not be RESULTS either.
    calibration = tmp_path / "calibration.json"
    calibration.write_text("{}")
    argv = results_args(tmp_path, tmp_path / "THRESHOLDS", ("final test_trials", metrics))
    line = refusal(results.main, [*argv, "--thresholds", "final", calibration], capsys)
    assert "--thresholds-output" in line and "is --output too" in line
    assert not (tmp_path / "THRESHOLDS").exists()


@pytest.mark.parametrize(
    "labels, message",
    [
        (["final test_trials", "final test_trials"], "'final test_trials' is given twice"),
        (["my model test_trials"], "'my model test_trials': a label is 'MODEL TRIALS'"),
        (["final\ttest_trials"], "'final\\ttest_trials': a label is 'MODEL TRIALS'"),
    ],
)
def test_results_refuses_row_labels_with_whitespace_or_given_twice(
    tmp_path, capsys, labels, message
):
    metrics = tmp_path / "m.metrics"
    metrics.write_text(METRICS)
    output = tmp_path / "RESULTS"
    argv = results_args(tmp_path, output, *((label, metrics) for label in labels))
    assert message in refusal(results.main, argv, capsys)
    assert not output.exists()


# ----------------------------------------------------------------------------- cluster


@pytest.fixture
def cluster_argv(data, tmp_path) -> list:
    """cluster's arguments but --output: random embeddings of every utterance of DATA."""
    import kaldiio

    utts = sorted(read_dict(data / "utt2spk"))
    x = np.random.default_rng(0).standard_normal((len(utts), 8)).astype(np.float32)
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path}/emb.ark,{tmp_path}/emb.scp") as writer:
        for utt, vec in zip(utts, x):
            writer(utt, vec)
    config = tmp_path / "pl.yaml"
    config.write_text("pseudo_label: {kmeans_clusters: 2, min_cluster_size: 1}\n")
    return ["--config", config, "--embeddings", f"{tmp_path}/emb.scp", "--data", data]


def test_cluster_refuses_its_data_dir_or_an_unwritable_output_before_clustering(
    cluster_argv, data, tmp_path, capsys, monkeypatch
):
    line = refusal(cluster_cli.main, [*cluster_argv, "--output", data], capsys)
    assert f"--output {data} is the input --data {data}" in line
    # A folder above DATA would be replaced whole, DATA with it.
    line = refusal(cluster_cli.main, [*cluster_argv, "--output", data.parent], capsys)
    assert f"--output {data.parent} holds the input --data {data}" in line
    # Where nothing can be written: under a regular file (before: an error only once the
    # clustering was done, naming a temporary path, not --output) ...
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = refusal(cluster_cli.main, [*cluster_argv, "--output", blocker / "pl"], capsys)
    assert f"--output {blocker / 'pl'}: {blocker} is not a folder" in line
    # ... or in a read-only folder. Root writes there all the same: as root, access() is
    # made to answer what it answers any other user.
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    if os.geteuid() == 0:
        access = os.access
        monkeypatch.setattr(os, "access", lambda p, m: Path(p) != locked and access(p, m))
    line = refusal(cluster_cli.main, [*cluster_argv, "--output", locked / "pl"], capsys)
    assert f"--output {locked / 'pl'}: cannot write in {locked} (permission denied)" in line
    assert not (locked / "pl").exists()


# ----------------------------------------------------------------------------- datadir


def test_data_dir_tools_refuse_a_destination_that_is_or_holds_a_source(data, tmp_path, capsys):
    # A split part is a data dir inside DIR: a subset of it into DIR replaced DIR whole,
    # the part with it (before: exit status 0).
    work = tmp_path / "d"
    datadir_cli.main(["subset", "--first", "8", str(data), str(work)])
    part = split_data_dir(work, 2)[0]
    line = refusal(datadir_cli.main, ["subset", "--first", "2", part, work], capsys)
    assert f"DEST {work} holds the input SRC {part}" in line
    assert part.is_dir()
    line = refusal(datadir_cli.main, ["combine", work, data, work], capsys)
    assert f"DEST {work} is the input SRC2 {work}" in line
    with pytest.raises(ValueError, match=f"split dir {work} is the input DIR {work}"):
        split_data_dir(work, 2, dest=work)


# ----------------------------------------------------------------------------- stage 0


def test_make_trials_refuses_an_output_that_is_a_data_dir_file(data, tmp_path, capsys):
    utt2spk = (data / "utt2spk").read_text()
    line = refusal(make_trials.main, [data, "--output", data / "utt2spk"], capsys)
    assert f"--output {data / 'utt2spk'} is the input DATA_DIR/utt2spk" in line
    assert (data / "utt2spk").read_text() == utt2spk  # before: trials, exit status 0
    out = tmp_path / "trials"
    line = refusal(make_trials.main, [data, "--output", out, "--cross-session-output", out], capsys)
    assert "--cross-session-output" in line and "is --output too" in line


def test_prepare_data_refuses_a_destination_holding_the_corpus(tmp_path, capsys):
    root = tmp_path / "corpus"
    (root / "spk1").mkdir(parents=True)
    line = refusal(prepare_data.main, ["folder", root, tmp_path], capsys)
    assert f"DEST {tmp_path} holds the input ROOT {root}" in line


def test_make_aug_sets_refuses_a_source_inside_a_set_it_rebuilds(data, tmp_path, capsys):
    out = tmp_path / "aug"
    (out / "noise").mkdir(parents=True)
    wav = next(iter(read_dict(data / "wav.scp").values()))
    (out / "noise" / "old.wav").write_bytes(Path(wav).read_bytes())
    argv = ["--out", out, "--num-rirs", "1", "--num-colored", "1", "--noise-dir", out]
    line = refusal(make_aug_sets.main, argv, capsys)
    assert f"--out noise {out / 'noise'} holds the input --noise-dir[1]'s file #1" in line
    assert not (out / "rirs").exists()  # refused before the first set


# ----------------------------------------------------------------------------- stages 1-3


def test_features_training_and_extraction_refuse_outputs_that_are_inputs(data, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("encoder: {name: stats}\n")
    argv = ["--config", config, "--data", data, "--feats-dir", config]
    line = refusal(compute_features.main, argv, capsys)
    assert f"--feats-dir {config} is the input --config {config}" in line
    argv = ["--config", config, "--data", data, "--exp-dir", data]
    line = refusal(fit_stats.main, argv, capsys)
    assert f"--exp-dir {data} is the input --data {data}" in line
    assert not (data / "final.pt").exists()
    line = refusal(train_cli.main, argv, capsys)
    assert f"--exp-dir {data} is the input --data {data}" in line
    exp = tmp_path / "exp"
    argv = ["--config", config, "--data", data, "--exp-dir", exp]
    line = refusal(train_cli.main, [*argv, "--init-model", exp / "final.pt"], capsys)
    assert f"final.pt of --exp-dir {exp / 'final.pt'} is the input --init-model" in line
    argv = ["--checkpoint", tmp_path / "final.pt", "--data", data, "--output", data]
    line = refusal(extract.main, argv, capsys)
    assert f"--output {data} is the input --data {data}" in line
    assert not (data / "split1").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_train_device_cuda_without_a_gpu_is_one_line(data, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("encoder: {name: stats}\n")
    argv = ["--config", config, "--data", data, "--exp-dir", tmp_path / "exp"]
    line = refusal(train_cli.main, [*argv, "--device", "cuda"], capsys)
    assert "device 'cuda': CUDA is not available here" in line
    assert not (tmp_path / "exp").exists()
