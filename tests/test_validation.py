"""Validation during training: EER/minDCF of held-out trials, subsets, errors, schedule."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tone_data_dir

from sslsv.config.load import load_config
from sslsv.config.schema import Config, ExtractConfig
from sslsv.datadir.io import write_trials
from sslsv.errors import ConfigError, DataError
from sslsv.extraction import embed_data_dir
from sslsv.metrics import compute_eer, compute_min_dcf
from sslsv.models.embedding import EmbeddingModel
from sslsv.train import validation
from sslsv.train.validation import Validator, subset_trials

TINY = [
    "encoder.name=resnet",
    "encoder.args={channels: [4, 8], blocks: [1, 1], embed_dim: 16}",
    "features.n_mels=24",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """3 speakers x 3 utterances of 0.5-0.8 s, and every pair of them as a trial."""
    data = make_tone_data_dir(tmp_path_factory.mktemp("val"), speakers=3, utts=3, seconds=0.5)
    utts = [f"spk{s}-utt{u}" for s in range(3) for u in range(3)]
    pairs = itertools.combinations(utts, 2)
    write_trials(data / "trials", [(a, b, a[:4] == b[:4]) for a, b in pairs])
    return data


def config(data_dir: Path, *overrides: str) -> Config:
    return load_config(None, [*TINY, f"train.validation.data_dir={data_dir}", *overrides])


@pytest.fixture(scope="module")
def model(data_dir) -> EmbeddingModel:
    torch.manual_seed(0)
    model = EmbeddingModel(config(data_dir)).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so eval mode matters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model


def reference(model, data_dir, trials, crop_seconds=0.0, num_crops=1) -> tuple[float, float]:
    """EER (percent) and minDCF(0.01) from the stage-3 engine and numpy cosine scores."""
    emb: dict[str, np.ndarray] = {}
    options = ExtractConfig(crop_seconds=crop_seconds, num_crops=num_crops, num_workers=0)
    embed_data_dir(model, data_dir, False, "cpu", emb.__setitem__, options)
    unit = {u: e / np.linalg.norm(e) for u, e in emb.items()}
    scores = np.array([float(unit[a] @ unit[b]) for a, b, _ in trials])
    labels = np.array([y for _, _, y in trials])
    return 100 * compute_eer(scores, labels)[0], compute_min_dcf(scores, labels, 0.01)[0]


@pytest.mark.parametrize("crops", [(0.0, 1), (0.4, 3)])
def test_run_matches_independent_computation(model, data_dir, crops):
    crop_seconds, num_crops = crops
    cfg = config(
        data_dir,
        f"train.validation.crop_seconds={crop_seconds}",
        f"train.validation.num_crops={num_crops}",
    )
    validator = Validator(cfg, torch.device("cpu"))
    result = validator.run(model)
    assert set(result) == {"eer", "min_dcf", "seconds"}
    assert all(np.isfinite(v) for v in result.values())
    assert 0 <= result["eer"] <= 100 and 0 <= result["min_dcf"] <= 1 and result["seconds"] >= 0
    eer, min_dcf = reference(model, data_dir, validator.trials, crop_seconds, num_crops)
    assert result["eer"] == pytest.approx(eer, abs=1e-4)
    assert result["min_dcf"] == pytest.approx(min_dcf, abs=1e-4)
    assert len(validator.trials) == 36 and "36 trials" in validator.describe()


def test_subset_embeds_only_needed_utterances_and_is_deterministic(model, data_dir, monkeypatch):
    cfg = config(data_dir, "train.validation.max_trials=4")
    validator = Validator(cfg, torch.device("cpu"))
    assert validator.trials == Validator(cfg, torch.device("cpu")).trials
    labels = [y for _, _, y in validator.trials]
    assert len(labels) == 4 and any(labels) and not all(labels)
    needed = {u for a, b, _ in validator.trials for u in (a, b)}
    assert set(validator.utts) == needed and len(needed) < 9

    embedded: list[str] = []

    def spy(model, data_dir, use_feats, device, writer, options=None, silent=None, utts=None):
        def record(utt, embedding):
            embedded.append(utt)
            writer(utt, embedding)

        return embed_data_dir(model, data_dir, use_feats, device, record, options, silent, utts)

    monkeypatch.setattr(validation, "embed_data_dir", spy)
    result = validator.run(model)
    assert sorted(embedded) == sorted(needed)
    eer, min_dcf = reference(model, data_dir, validator.trials)
    assert result["eer"] == pytest.approx(eer, abs=1e-4)
    assert result["min_dcf"] == pytest.approx(min_dcf, abs=1e-4)
    assert "4 of 36 trials" in validator.describe()


def test_subset_keeps_both_classes():
    trials = [(f"a{i}", f"b{i}", i == 7) for i in range(100)]  # a single target
    for n in (2, 3, 50, 99):
        chosen = subset_trials(trials, n)
        assert len(chosen) == n and any(t[2] for t in chosen) and not all(t[2] for t in chosen)
        assert chosen == sorted(chosen, key=trials.index)  # file order
    assert subset_trials(trials, 0) == trials and subset_trials(trials, 500) == trials


def test_model_mode_restored_and_eval_used(model, data_dir):
    validator = Validator(config(data_dir), torch.device("cpu"))
    expected = validator.run(model)
    model.train()
    try:
        result = validator.run(model)
        assert model.training and all(m.training for m in model.modules())
    finally:
        model.eval()
    assert result["eer"] == expected["eer"] and result["min_dcf"] == expected["min_dcf"]
    validator.run(model)
    assert not model.training


def one_line_error(cfg: Config, error: type[Exception] = DataError) -> str:
    with pytest.raises(error) as info:
        Validator(cfg, torch.device("cpu"))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_bad_inputs_are_one_line_errors(data_dir, tmp_path):
    missing = tmp_path / "no_trials"
    assert str(missing) in one_line_error(config(data_dir, f"train.validation.trials={missing}"))

    bad = tmp_path / "trials_bad"
    write_trials(bad, [("spk0-utt0", "spk0-utt1", True), ("spk0-utt0", "ghost", False)])
    message = one_line_error(config(data_dir, f"train.validation.trials={bad}"))
    assert f"{bad}:2" in message and "'ghost'" in message

    targets = tmp_path / "trials_targets"
    write_trials(targets, [("spk0-utt0", "spk0-utt1", True)])
    message = one_line_error(config(data_dir, f"train.validation.trials={targets}"))
    assert str(targets) in message and "non-target" in message

    assert "nowhere" in one_line_error(config(tmp_path / "nowhere"))
    one_line_error(load_config(None, TINY), ConfigError)
    one_line_error(config(data_dir, "train.validation.max_trials=1"), ConfigError)


@pytest.mark.parametrize("crops", [(0.0, 1), (0.4, 3)])
def test_whole_utterances_are_embedded_without_cudnn_autotuning(
    model, data_dir, monkeypatch, crops
):
    """The trainer turns cuDNN autotuning on (its crops have one shape); validating whole
    utterances with it would tune again at every new length: off inside the forward passes,
    the trainer's setting back afterwards. Fixed-length crops keep it."""
    crop_seconds, num_crops = crops
    cfg = config(
        data_dir,
        f"train.validation.crop_seconds={crop_seconds}",
        f"train.validation.num_crops={num_crops}",
    )
    validator = Validator(cfg, torch.device("cpu"))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)  # as the trainer leaves it
    seen: list[bool] = []
    hook = model.register_forward_pre_hook(
        lambda module, inputs: seen.append(torch.backends.cudnn.benchmark)
    )
    try:
        validator.run(model)
    finally:
        hook.remove()
    if crop_seconds == 0:
        assert seen == [False] * 9  # one forward pass per utterance
    else:
        assert seen and all(seen)
    assert torch.backends.cudnn.benchmark
