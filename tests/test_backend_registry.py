"""The back-end registry (a back end registered here, in a test, reaches the scoring
command's choices and options, the config check and the API, touching no other file), the
saved back ends' format, and the one ark/scp writer (sslsv.arkio)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch
import yaml

import sslsv
from sslsv.arkio import ArkWriter, load_embeddings
from sslsv.backend import (
    BACKENDS,
    Backend,
    CosineBackend,
    PLDABackend,
    TrainingSet,
    backend_class,
    load_backend,
    register_backend,
    save_backend,
)
from sslsv.backend.base import FORMAT, reads_training_set
from sslsv.bin import score as score_cli
from sslsv.calibration import fit_calibration
from sslsv.config.load import config_from_dict, load_config
from sslsv.config.schema import ScoringConfig
from sslsv.datadir.io import write_trials
from sslsv.errors import ConfigError, DataError
from sslsv.fileio import write_table
from sslsv.models.embedding import EmbeddingModel
from sslsv.scores import read_scores
from sslsv.train.checkpoint import model_payload, save_atomic


class Euclid(Backend):
    """A toy back end: minus the squared distance, optionally of mean-centred embeddings."""

    options = {"subtract_mean": "subtract the training mean (toy)"}

    def __init__(self, mean: np.ndarray | None = None):
        self.mean = mean

    @classmethod
    def needs_training(cls, cfg: ScoringConfig) -> str | None:
        return "scoring.subtract_mean" if cfg.subtract_mean else None

    @classmethod
    def fit(cls, cfg: ScoringConfig, train: TrainingSet | None) -> Euclid:
        return cls(train.x.mean(0) if train is not None else None)

    def settings(self) -> dict:
        return {"subtract_mean": self.mean is not None}

    def prepare(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64) - (0 if self.mean is None else self.mean)

    def score_pairs(self, enroll, test, enroll_idx, test_idx) -> np.ndarray:
        return -((enroll[enroll_idx] - test[test_idx]) ** 2).sum(1)

    def score_matrix(self, a, b) -> np.ndarray:
        return -((a[:, None, :] - b[None, :, :]) ** 2).sum(2)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {} if self.mean is None else {"mean": self.mean}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Euclid:
        return cls(arrays.get("mean"))


@pytest.fixture
def euclid():
    """The toy back end registered as "euclid" for one test, then unregistered."""
    register_backend("euclid")(Euclid)
    yield Euclid
    del BACKENDS["euclid"]


def write_embeddings(stem: Path, ids: list[str], x: np.ndarray) -> str:
    with kaldiio.WriteHelper(f"ark,scp:{stem}.ark,{stem}.scp") as writer:
        for utt, vec in zip(ids, x):
            writer(utt, vec.astype(np.float32))
    return f"{stem}.scp"


@pytest.fixture
def trials(tmp_path: Path) -> dict:
    rng = np.random.default_rng(0)
    ids = [f"s{i % 4}-u{i}" for i in range(12)]
    x = (
        rng.normal(size=(12, 5))
        + np.repeat(rng.normal(size=(4, 5)) * 3, 3, axis=0)[[i % 4 * 3 + i // 4 for i in range(12)]]
    )
    scp = write_embeddings(tmp_path / "emb", ids, x)
    write_table(tmp_path / "utt2spk", {u: u.split("-")[0] for u in ids})
    pairs = [(a, b, a[:2] == b[:2]) for i, a in enumerate(ids) for b in ids[i + 1 :]]
    write_trials(tmp_path / "trials", pairs)
    return {"scp": scp, "ids": ids, "x": x.astype(np.float32), "tmp": tmp_path, "pairs": pairs}


def run_score(t: dict, *flags: str) -> np.ndarray:
    out = t["tmp"] / "out.scores"
    base = ["--trials", str(t["tmp"] / "trials"), "--enroll", t["scp"], "--test", t["scp"]]
    assert score_cli.main([*base, "--output", str(out), *flags]) == 0
    return read_scores(out)[2]


def test_a_registered_back_end_is_a_choice_option_config_value_and_api_value(
    euclid, trials, tmp_path
):
    # The command: a choice of --backend, named in the help of the options it uses.
    parser = score_cli.build_parser()
    assert (
        parser.parse_args(
            [
                "--trials",
                "t",
                "--enroll",
                "e",
                "--test",
                "t",
                "--output",
                "o",
                "--backend",
                "euclid",
            ]
        ).backend
        == "euclid"
    )
    assert "cosine/euclid: subtract" in parser.format_help().replace("\n", " ")
    assert "subtract_mean" in score_cli.overrides()
    # Scored end to end, trained when it needs the training set, score-normalised.
    x, row = trials["x"].astype(np.float64), {u: i for i, u in enumerate(trials["ids"])}
    expected = [-((x[row[e]] - x[row[t]]) ** 2).sum() for e, t, _ in trials["pairs"]]
    np.testing.assert_allclose(run_score(trials, "--backend", "euclid"), expected, rtol=1e-6)
    train = ["--train", trials["scp"]]
    centred = run_score(trials, "--backend", "euclid", "--subtract-mean", *train)
    np.testing.assert_allclose(centred, expected, rtol=1e-5)  # a shift keeps distances
    normed = run_score(trials, "--backend", "euclid", "--norm", "s", *train)
    assert not np.allclose(normed, expected)
    # The config check: a value of the registry, the registry's names in the error.
    assert load_config(None, ["scoring.backend=euclid"]).scoring.backend == "euclid"
    with pytest.raises(ConfigError, match="'scoring.backend' is 'eucl'; allowed: cosine, eucl"):
        load_config(None, ["scoring.backend=eucl"])
    # Saved and loaded by name.
    save_backend(tmp_path / "e.npz", Euclid(np.ones(5)))
    assert isinstance(load_backend(tmp_path / "e.npz"), Euclid)
    # The API: a model whose config scores with it loads; a calibration of its scores is
    # refused by name (the API scores by the cosine back end).
    cfg = config_from_dict(
        {"encoder": {"name": "resnet", "args": SMALL}, "scoring": {"backend": "euclid"}}
    )
    torch.manual_seed(0)
    ckpt = tmp_path / "final.pt"
    save_atomic(model_payload(dataclasses.asdict(cfg), EmbeddingModel(cfg).state_dict()), ckpt)
    model = sslsv.load_model(ckpt)
    assert model.cfg.scoring.backend == "euclid"
    cal = fit_calibration(
        *dev_scores(), 0.01, model=model.fingerprint, scoring={"backend": "euclid", "norm": "none"}
    )
    with pytest.raises(DataError, match="fitted on scores made with backend 'euclid'"):
        model.set_calibration(cal)


def test_without_registration_the_back_end_is_unknown_everywhere():
    assert "euclid" not in BACKENDS
    with pytest.raises(ConfigError, match="allowed: cosine, plda$"):
        load_config(None, ["scoring.backend=euclid"])
    with pytest.raises(SystemExit):
        score_cli.build_parser().parse_args(
            [
                "--trials",
                "t",
                "--enroll",
                "e",
                "--test",
                "t",
                "--output",
                "o",
                "--backend",
                "euclid",
            ]
        )
    with pytest.raises(ValueError, match="unknown back end 'euclid'"):
        backend_class("euclid")


def test_registration_checks_names_and_options():
    with pytest.raises(ValueError, match="'cosine' registered twice"):
        register_backend("cosine")(Euclid)

    class Stray(Euclid):
        options = {"margin": "no such scoring: key"}

    with pytest.raises(ValueError, match=r"options \['margin'\] are not scoring: keys"):
        register_backend("stray")(Stray)
    assert "stray" not in BACKENDS


SMALL = {"channels": [4, 8], "blocks": [1, 1], "embed_dim": 8}


def dev_scores() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(0.6, 0.1, 200), rng.normal(0.1, 0.1, 2000)])
    return scores, np.arange(len(scores)) < 200


# ---------------------------------------------------------------------------------------
# Saved back ends: one format constant, older files still read


def test_saved_back_ends_of_the_older_format_name_load_and_others_are_one_line(tmp_path):
    rng = np.random.default_rng(1)
    x, spk = rng.normal(size=(60, 4)), np.repeat(np.arange(6), 10)
    backend = PLDABackend.trained_on(x, spk, lda_dim=3)
    save_backend(tmp_path / "new.npz", backend)
    with np.load(tmp_path / "new.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    assert str(arrays["format"]) == FORMAT
    np.savez(tmp_path / "old.npz", **{**arrays, "format": np.array("sslsv-backend-v1")})
    old = load_backend(tmp_path / "old.npz")
    assert old.settings() == backend.settings() == {"lda_dim": 3, "whiten": False, "plda_iters": 10}
    np.testing.assert_array_equal(old.prepare(x), backend.prepare(x))
    np.savez(tmp_path / "future.npz", **{**arrays, "format": np.array("sslsv-backend-9")})
    with pytest.raises(DataError, match="format 'sslsv-backend-9', which this version does"):
        load_backend(tmp_path / "future.npz")
    np.savez(tmp_path / "bare.npz", mean=np.zeros(3))
    with pytest.raises(DataError, match="not an sslsv back end"):
        load_backend(tmp_path / "bare.npz")
    assert CosineBackend.trained_on(x).settings() == {"subtract_mean": True}


# ---------------------------------------------------------------------------------------
# One ark/scp writer


def test_ark_writer_writes_what_kaldiio_writes(tmp_path):
    rng = np.random.default_rng(2)
    items = [
        ("a", rng.normal(size=8).astype(np.float32)),
        ("b", rng.normal(size=(5, 3)).astype(np.float32)),
        ("ü-c", rng.normal(size=4)),
    ]
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path}/k.ark,{tmp_path}/k.scp") as writer:
        for utt, x in items:
            writer(utt, x)
    with ArkWriter(tmp_path / "k2.ark", tmp_path / "k2.scp") as write:
        for utt, x in items:
            write(utt, x)
        assert len(write) == 3 and not (tmp_path / "k2.scp").exists()  # the scp comes last
    assert (tmp_path / "k2.ark").read_bytes() == (tmp_path / "k.ark").read_bytes()
    assert (tmp_path / "k2.scp").read_text() == (tmp_path / "k.scp").read_text().replace(
        "k.ark", "k2.ark"
    )
    got = dict(kaldiio.load_scp(str(tmp_path / "k2.scp")))
    for utt, x in items:
        np.testing.assert_array_equal(got[utt], x)


def test_ark_writer_leaves_a_whole_pair_or_no_scp(tmp_path):
    odd = tmp_path / "a,b:c"  # a comma and a colon: no specifier string to break
    odd.mkdir()
    ark, scp = odd / "e.ark", odd / "e.scp"
    with ArkWriter(ark, scp, ark_in_scp="/final/place/e.ark") as write:
        write("u1", np.ones(3, np.float32))
    assert scp.read_text() == "u1 /final/place/e.ark:3\n"
    with ArkWriter(ark, scp) as write:
        write("u1", np.ones(3, np.float32))
    assert load_embeddings(scp)[0] == ["u1"]
    with pytest.raises(RuntimeError), ArkWriter(ark, scp) as write:
        assert not scp.exists()  # the old scp would point into the ark being rewritten
        write("u2", np.zeros(3, np.float32))
        raise RuntimeError("killed")
    assert not scp.exists() and not ark.exists()
    assert not [p for p in os.listdir(odd) if p.endswith(".tmp")]


@pytest.mark.parametrize(
    ("scoring", "reads"),
    [
        ({"backend": "cosine"}, False),
        ({"backend": "cosine", "subtract_mean": True}, True),
        ({"backend": "cosine", "norm": "as"}, True),
        ({"backend": "plda"}, True),
    ],
)
def test_the_registry_says_whether_scoring_reads_the_training_set(tmp_path, scoring, reads):
    """What steps/evaluate_models.sh asks before it embeds the training set: the answer of
    the back end's own needs_training (and of a normalisation's cohort), not a list of
    back-end names in bash."""
    config = tmp_path / "x.yaml"
    config.write_text(yaml.safe_dump({"scoring": scoring}))
    assert reads_training_set(load_config(config).scoring) is reads
    out = subprocess.run(
        [sys.executable, "-m", "sslsv.bin.config", "--config", str(config), "--reads-training-set"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert out == f"{str(reads).lower()}\n"
