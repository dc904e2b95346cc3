"""Artefacts that belong together prove it (issue 22): embeddings, scores, calibrations and
packages say which model made them, and each command that combines them checks; outputs
that are inputs, and files that are not model files, are one line."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tone_data_dir

import sslsv
from sslsv.api import read_package
from sslsv.bin import calibrate as calibrate_cli
from sslsv.bin import compute_metrics as metrics_cli
from sslsv.bin import extract as extract_cli
from sslsv.bin import package as package_cli
from sslsv.bin import score as score_cli
from sslsv.bin import verify as verify_cli
from sslsv.calibration import Calibration, fit_calibration
from sslsv.config.load import config_from_dict
from sslsv.datadir.io import write_trials
from sslsv.errors import DataError
from sslsv.models.embedding import EmbeddingModel
from sslsv.reuse import stamp_path
from sslsv.train.checkpoint import load_payload, model_payload, save_atomic


def write_model(path: Path, seed: int, embed_dim: int = 24) -> str:
    """A tiny model file whose scoring is plain cosine (what a package may hold)."""
    torch.manual_seed(seed)
    args = {"channels": [4, 4, 8, 8], "blocks": [1, 1, 1, 1], "embed_dim": embed_dim}
    cfg = config_from_dict(
        {"encoder": {"name": "resnet", "args": args}, "scoring": {"subtract_mean": False}}
    )
    model = EmbeddingModel(cfg)
    save_atomic(model_payload(dataclasses.asdict(cfg), model.state_dict()), path)
    return str(path)


def fingerprint(path: str) -> str:
    return sslsv.load_model(path).fingerprint


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """Models A and B (24-d, other weights) and C (16-d); each one's stage-5 embeddings of
    one data dir; a trial list over it (labels drawn at random: any random model's scores
    then admit a finite calibration)."""
    root = tmp_path_factory.mktemp("artefacts")
    data = make_tone_data_dir(root, speakers=3, utts=3, seconds=1.0)
    w = {"root": root, "data": data}
    for name, seed, dim in (("a", 0, 24), ("b", 1, 24), ("c", 2, 16)):
        w[name] = write_model(root / f"{name}.pt", seed, dim)
        out = root / f"emb_{name}"
        args = ["--checkpoint", w[name], "--data", str(data), "--output", str(out)]
        assert extract_cli.main(args) == 0
        w[f"emb_{name}"] = str(out / "embeddings.scp")
    utts = sorted(line.split()[0] for line in (data / "wav.scp").read_text().splitlines())
    rng = np.random.default_rng(0)
    pairs = [(a, b) for i, a in enumerate(utts) for b in utts[i + 1 :]]
    labels = rng.permutation(np.arange(len(pairs)) < len(pairs) // 3).tolist()
    w["trials"] = str(root / "trials")
    write_trials(w["trials"], [(a, b, lab) for (a, b), lab in zip(pairs, labels)])
    w["wavs"] = [str(p) for p in sorted((root / "wav dir").glob("*.wav"))]
    return w


def scores_of(w: dict, emb: str, out: Path, *extra: str) -> str:
    args = ["--trials", w["trials"], "--enroll", emb, "--test", emb, "--output", str(out)]
    assert score_cli.main([*args, "--no-subtract-mean", *extra]) == 0
    return str(out)


def one_line(capsys, code: int) -> str:
    """The one error line of a command that failed (exit status 1, no traceback)."""
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


# ---------------------------------------------------------------------------------------
# An output that is an input (BAD 1): refused, the input untouched


def test_score_output_that_is_the_trial_list_is_refused(world, tmp_path, capsys):
    trials = tmp_path / "trials"
    trials.write_bytes(Path(world["trials"]).read_bytes())
    link = tmp_path / "link"
    link.symlink_to(trials)
    before = trials.read_bytes()
    base = ["--trials", str(trials), "--enroll", world["emb_a"], "--test", world["emb_a"]]
    for output in (trials, link):
        err = one_line(capsys, score_cli.main([*base, "--output", str(output)]))
        assert "is the input --trials" in err
    err = one_line(
        capsys,
        score_cli.main([*base, "--output", str(tmp_path / "s"), "--backend-model", world["emb_a"]]),
    )
    assert "--backend-model" in err and "is the input --enroll" in err
    assert trials.read_bytes() == before and not (tmp_path / "s").exists()


def test_calibrate_output_that_is_the_scores_is_refused(world, tmp_path, capsys):
    scores = scores_of(world, world["emb_a"], tmp_path / "dev.scores")
    before = Path(scores).read_bytes()
    args = ["--trials", world["trials"], "--scores", scores, "--output", scores]
    assert "is the input --scores" in one_line(capsys, calibrate_cli.main(args))
    assert Path(scores).read_bytes() == before


def test_compute_metrics_output_that_is_the_scores_is_refused(world, tmp_path, capsys):
    scores = scores_of(world, world["emb_a"], tmp_path / "test.scores")
    before = Path(scores).read_bytes()
    args = ["--trials", world["trials"], "--scores", scores]
    assert "is the input --scores" in one_line(
        capsys, metrics_cli.main([*args, "--output", scores])
    )
    err = one_line(capsys, metrics_cli.main([*args, "--plot-dir", scores]))
    assert "--plot-dir" in err
    assert Path(scores).read_bytes() == before


# ---------------------------------------------------------------------------------------
# Packages (BAD 5): the training mean is the packaged model's, of its size


def test_package_refuses_another_models_training_embeddings(world, tmp_path, capsys):
    out = tmp_path / "model.pt"
    base = ["--checkpoint", world["a"], "--output", str(out), "--config", str(tmp_path / "c.yaml")]
    (tmp_path / "c.yaml").write_text("scoring: {subtract_mean: true}\n")
    # Another model's 16-d embeddings into a 24-d model; another 24-d model's embeddings.
    for other in (world["emb_c"], world["emb_b"]):
        err = one_line(capsys, package_cli.main([*base, "--train-embeddings", other]))
        assert f"--train-embeddings {other}: made by model" in err
        assert not out.exists()
    # Embeddings whose model is not recorded (written by hand, no stamps): not proved.
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in Path(world["emb_a"]).parent.glob("embeddings.*"):
        if not f.name.endswith(".stamp"):
            (bare / f.name).write_bytes(f.read_bytes())
    (bare / "embeddings.scp").write_text(
        Path(world["emb_a"]).read_text().replace(str(Path(world["emb_a"]).parent), str(bare))
    )
    err = one_line(
        capsys, package_cli.main([*base, "--train-embeddings", str(bare / "embeddings.scp")])
    )
    assert "which model made them is not recorded" in err and not out.exists()
    # The model's own: packaged, and its mean is that of these embeddings.
    assert package_cli.main([*base, "--train-embeddings", world["emb_a"]]) == 0
    mean = load_payload(out)["mean"]
    assert mean.shape == (24,)


def test_package_refuses_embeddings_of_a_model_changed_since(world, tmp_path, capsys):
    """Embeddings of a model file rewritten since (retrained): their model is gone."""
    ckpt = tmp_path / "final.pt"
    ckpt.write_bytes(Path(world["a"]).read_bytes())
    out = tmp_path / "emb"
    args = ["--checkpoint", str(ckpt), "--data", str(world["data"]), "--output", str(out)]
    assert extract_cli.main(args) == 0
    write_model(ckpt, seed=5)  # retrained in place
    (tmp_path / "c.yaml").write_text("scoring: {subtract_mean: true}\n")
    pkg = ["--checkpoint", str(ckpt), "--output", str(tmp_path / "m.pt")]
    pkg += ["--config", str(tmp_path / "c.yaml"), "--train-embeddings", str(out / "embeddings.scp")]
    assert "which has changed since" in one_line(capsys, package_cli.main(pkg))


@pytest.mark.parametrize(
    "entries, message",
    [
        ({"mean": torch.zeros(1, dtype=torch.float64)}, r"'mean' has shape \(1,\)"),
        ({"mean": torch.zeros(16, dtype=torch.float64)}, r"'mean' has shape \(16,\)"),
        ({"mean": "0.0 0.0"}, "'mean' is a str, not a float tensor"),
        ({"mean": torch.zeros(24, dtype=torch.int64)}, "'mean' is a torch.int64"),
        ({"mean": torch.full((24,), float("nan"))}, "'mean' is not finite"),
        ({"calibration": "{not json"}, "packaged calibration: not a calibration file .not JSON"),
        ({"calibration": {"format": "x"}}, "'calibration' is a dict, not the JSON text"),
        ({"calibration": "[]"}, "packaged calibration: not a calibration file .a JSON list"),
    ],
)
def test_a_packaged_mean_or_calibration_of_the_wrong_kind_is_one_line(world, entries, message):
    payload = load_payload(world["a"])
    payload.update(entries)
    with pytest.raises(DataError, match=rf"^pkg.pt: .*{message}") as info:
        read_package(payload, "pkg.pt", 24)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "entries",
    [{"mean": torch.zeros(1)}, {"mean": "0.0 0.0"}, {"calibration": "{not json"}],
)
def test_verify_refuses_a_package_of_the_wrong_kind_in_one_line(world, tmp_path, capsys, entries):
    """End to end: the API's loader reads the package through read_package (before: a (1,)
    mean scored every pair about 1.0; a string mean or a non-JSON calibration gave a
    traceback)."""
    payload = load_payload(world["a"])
    payload.update(entries)
    bad = tmp_path / "model.pt"
    save_atomic(payload, bad)
    args = ["--checkpoint", str(bad), world["wavs"][0], world["wavs"][1]]
    assert verify_cli.main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{bad}: " in err[0]
    assert "its packaged" in err[0] or "packaged calibration" in err[0]


def test_a_good_package_reads_back(world, tmp_path):
    cal = fit_calibration(np.r_[0.1, 0.5, 0.3, 0.9], np.r_[False, True, True, False], model="x")
    payload = {
        "mean": torch.ones(24, dtype=torch.float64),
        "calibration": json.dumps(cal.to_dict()),
    }
    mean, read = read_package(payload, "pkg.pt", 24)
    assert mean.dtype == np.float64 and mean.shape == (24,) and read == cal
    assert read_package({}, "pkg.pt", 24) == (None, None)


# ---------------------------------------------------------------------------------------
# Calibrations name their model (WEAK): from the scores' stamps, checked by every user


def test_calibrate_finds_the_model_in_the_scores_stamps(world, tmp_path, capsys):
    dev = scores_of(world, world["emb_a"], tmp_path / "dev.scores")
    cal = tmp_path / "cal.json"
    args = ["--trials", world["trials"], "--scores", dev, "--output", str(cal)]
    assert calibrate_cli.main(args) == 0  # no --checkpoint: SCORES.stamp says
    assert Calibration.from_json(cal).model == fingerprint(world["a"])
    capsys.readouterr()
    # verify, load_model and package refuse it for another model.
    wav = world["wavs"]
    code = verify_cli.main(["--checkpoint", world["b"], wav[0], wav[1], "--calibration", str(cal)])
    assert "made for model" in one_line(capsys, code)
    with pytest.raises(DataError, match="made for model"):
        sslsv.load_model(world["b"], calibration=cal)
    pkg = [
        "--checkpoint",
        world["b"],
        "--output",
        str(tmp_path / "m.pt"),
        "--calibration",
        str(cal),
    ]
    assert "made for model" in one_line(capsys, package_cli.main(pkg))
    # score and compute_metrics refuse it on model B's scores and embeddings.
    test_b = scores_of(world, world["emb_b"], tmp_path / "test_b.scores")
    m_args = ["--trials", world["trials"], "--scores", test_b, "--calibration", str(cal)]
    assert "made for model" in one_line(capsys, metrics_cli.main(m_args))
    s_args = ["--trials", world["trials"], "--enroll", world["emb_b"], "--test", world["emb_b"]]
    s_args += ["--no-subtract-mean", "--output", str(tmp_path / "x"), "--calibration", str(cal)]
    assert "made for model" in one_line(capsys, score_cli.main(s_args))
    # --checkpoint that contradicts the stamp: refused.
    code = calibrate_cli.main([*args, "--checkpoint", world["b"]])
    assert f"made by model {world['a']}" in one_line(capsys, code)
    # Model A's own: accepted everywhere.
    test_a = scores_of(world, world["emb_a"], tmp_path / "test_a.scores")
    assert (
        metrics_cli.main(
            ["--trials", world["trials"], "--scores", test_a, "--calibration", str(cal)]
        )
        == 0
    )
    assert sslsv.load_model(world["a"], calibration=cal).calibration is not None


def test_a_calibration_that_names_no_model_is_refused(world, tmp_path, capsys):
    dev = tmp_path / "dev.scores"
    dev.write_text(Path(scores_of(world, world["emb_a"], dev)).read_text())  # stamp now stale
    args = ["--trials", world["trials"], "--scores", str(dev), "--output", str(tmp_path / "c.json")]
    err = one_line(capsys, calibrate_cli.main(args))
    assert "which model made these scores is not recorded" in err and "--checkpoint" in err
    # An old calibration without a fingerprint: refused by every user.
    scores = np.r_[0.1, 0.5, 0.3, 0.9]
    old = tmp_path / "old.json"
    fit_calibration(scores, np.r_[False, True, True, False], scoring={}).to_json(old)
    with pytest.raises(DataError, match="records no model fingerprint"):
        sslsv.load_model(world["a"], calibration=old)
    pkg = [
        "--checkpoint",
        world["a"],
        "--output",
        str(tmp_path / "m.pt"),
        "--calibration",
        str(old),
    ]
    assert "records no model fingerprint" in one_line(capsys, package_cli.main(pkg))
    m_args = ["--trials", world["trials"], "--scores", str(dev), "--calibration", str(old)]
    assert "records no model fingerprint" in one_line(capsys, metrics_cli.main(m_args))


def test_scores_of_mixed_models_and_llrs_are_refused(world, tmp_path, capsys):
    s_args = ["--trials", world["trials"], "--enroll", world["emb_a"], "--test", world["emb_b"]]
    err = one_line(capsys, score_cli.main([*s_args, "--output", str(tmp_path / "x")]))
    assert f"--test {world['emb_b']}: made by model" in err
    # LLRs (score --calibration) are neither calibrated again nor fitted on.
    dev = scores_of(world, world["emb_a"], tmp_path / "dev.scores")
    cal = tmp_path / "cal.json"
    assert (
        calibrate_cli.main(["--trials", world["trials"], "--scores", dev, "--output", str(cal)])
        == 0
    )
    llr = scores_of(world, world["emb_a"], tmp_path / "llr.scores", "--calibration", str(cal))
    m_args = ["--trials", world["trials"], "--scores", llr, "--calibration", str(cal)]
    assert "calibrate them twice" in one_line(capsys, metrics_cli.main(m_args))
    args = ["--trials", world["trials"], "--scores", llr, "--output", str(tmp_path / "c2.json")]
    assert "LLRs already" in one_line(capsys, calibrate_cli.main(args))


# ---------------------------------------------------------------------------------------
# Files that are not model files (WEAK): one line, no advice to load unsafely


def test_a_file_that_is_not_a_model_is_named_without_unsafe_advice(world, tmp_path, capsys):
    flac = tmp_path / "a.flac"
    flac.write_bytes(b"fLaC\x00\x00\x00\x22" + os.urandom(200))
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"\x08\x07\x12\x07pytorch\x1a\x032.1" + os.urandom(200))
    wav = world["wavs"]
    for bad in (flac, onnx):
        with pytest.raises(DataError) as info:
            sslsv.load_model(bad)
        assert "not a sslsv model/checkpoint file" in str(info.value)
        assert "weights_only" not in str(info.value)
        for main, argv in (
            (package_cli.main, ["--checkpoint", str(bad), "--output", str(tmp_path / "m.pt")]),
            (verify_cli.main, ["--checkpoint", str(bad), wav[0], wav[1]]),
        ):
            code = main(argv)
            err = one_line(capsys, code)
            assert "not a sslsv model/checkpoint file" in err and "weights_only" not in err
            assert str(bad) in err
    assert "FLAC audio" in str(info.value) or "ONNX" in str(info.value)


def test_scores_carry_a_stamp_of_their_model(world, tmp_path):
    dev = scores_of(world, world["emb_a"], tmp_path / "dev.scores")
    stamp = json.loads(stamp_path(dev).read_text())
    assert stamp["model"]["path"] == str(Path(world["a"]).absolute())
    assert stamp["scoring"]["subtract_mean"] is False and stamp["calibration"] is None
