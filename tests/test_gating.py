"""The loss gate and label correction of the second stage (sslsv.methods.gating): the
mixture fit against scikit-learn, the gate against a plain loop over the definition, label
correction of planted wrong labels, config checks, and exact resume with correction on."""

from __future__ import annotations

import json
import math
import signal

import numpy as np
import pytest
import torch
from torch import nn

from sslsv.bin import train as train_cli
from sslsv.config.load import load_config
from sslsv.errors import ConfigError
from sslsv.methods import StepInfo, build_method
from sslsv.methods.gating import (
    CorrectionConfig,
    GateConfig,
    LossGate,
    Mixture,
    crossing_point,
    fit_two_gaussians,
    separation,
)
from sslsv.train.checkpoint import load_safe
from sslsv.train.trainer import Trainer
from tests.conftest import make_tone_data_dir
from tests.test_train_robust import EXIT_STOPPED, assert_same_weights, send_to_myself


def bimodal_losses(seed: int = 0, clean: int = 700, noisy: int = 300) -> np.ndarray:
    """Losses of a classifier on noisy labels: many low (clean), a wider mode high (noisy)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(1.0, 0.4, clean), rng.normal(5.0, 0.9, noisy)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mixture_fit_matches_scikit_learn(seed):
    from sklearn.mixture import GaussianMixture

    x = bimodal_losses(seed)
    got = fit_two_gaussians(x)
    ref = GaussianMixture(2, covariance_type="full", tol=1e-10, max_iter=1000, random_state=0)
    ref.fit(x[:, None])
    order = np.argsort(ref.means_.ravel())
    np.testing.assert_allclose(got.weights, ref.weights_[order], rtol=1e-4)
    np.testing.assert_allclose(got.means, ref.means_.ravel()[order], rtol=1e-4)
    np.testing.assert_allclose(got.variances, ref.covariances_.ravel()[order], rtol=1e-3)
    assert got.log_likelihood == pytest.approx(ref.score(x[:, None]), rel=1e-6)


def plain_posteriors(mixture: Mixture, x: float) -> tuple[float, float]:
    """The two components' posterior probabilities at x, from the Gaussian density."""
    dens = [
        w * math.exp(-((x - m) ** 2) / (2 * v)) / math.sqrt(2 * math.pi * v)
        for w, m, v in zip(mixture.weights, mixture.means, mixture.variances)
    ]
    return dens[0] / sum(dens), dens[1] / sum(dens)


def gate_over(kind: str, losses: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """Which rows pass a gate fitted to ``losses`` by one epoch of LossGate (all rows
    seen once), then the next epoch's steps (the same losses again)."""
    gate = LossGate(GateConfig(kind=kind, threshold=threshold, start_epoch=1), CorrectionConfig())
    n = len(losses)
    gate.attach(torch.zeros(n, dtype=torch.long))
    values = torch.tensor(losses, dtype=torch.float32)
    for rows in torch.arange(n).split(64):  # the first epoch: no gate yet
        assert bool(gate.keep(values[rows]).all())
        gate.record(rows, values[rows], torch.zeros(len(rows), dtype=torch.long), values[rows])
    report = gate.end_epoch(0)
    assert report["kept"] == 1.0
    return gate.keep(values).numpy()


def test_fixed_gate_passes_exactly_the_losses_under_its_threshold():
    losses = bimodal_losses()
    passed = gate_over("fixed", losses, threshold=3.0)
    want = np.array([loss <= 3.0 for loss in losses.astype(np.float32)])
    assert passed.tolist() == want.tolist()
    assert 0.6 < passed.mean() < 0.8


def test_mixture_gate_passes_the_losses_more_likely_clean():
    losses = bimodal_losses()
    passed = gate_over("gmm", losses)
    mixture = fit_two_gaussians(losses)
    # The plain rule, per loss: the clean (lower-mean) component is at least as likely.
    want = [plain_posteriors(mixture, float(x))[0] >= 0.5 for x in losses.astype(np.float32)]
    assert passed.tolist() == want
    threshold = crossing_point(mixture)
    assert mixture.means[0] < threshold < mixture.means[1]
    clean, noisy = plain_posteriors(mixture, threshold)
    assert clean == pytest.approx(noisy, abs=1e-9)


def test_mixture_gate_stays_open_on_one_skewed_mode():
    """Losses of nearly clean labels (one skewed mode): the two components overlap (Ashman's
    D under 2), so every utterance keeps training; a fixed gate still cuts."""
    losses = np.random.default_rng(0).exponential(0.3, 1000)
    assert gate_over("gmm", losses).all()
    assert (
        separation(fit_two_gaussians(losses)) < 2 <= separation(fit_two_gaussians(bimodal_losses()))
    )
    assert not gate_over("fixed", losses, threshold=0.5).all()


def test_gate_is_off_when_one_component_wins_everywhere_between_the_means():
    # A tiny, far-away, very wide second component: no crossing between the means.
    assert crossing_point(Mixture((0.999, 0.001), (1.0, 1.5), (1.0, 0.001), 0.0)) == math.inf


class ToyEncoder(nn.Module):
    """A linear 'encoder' of 8-D points: the classifier's model in the correction test."""

    def __init__(self) -> None:
        super().__init__()
        self.embed_dim = 8
        self.linear = nn.Linear(8, 8)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(8))
            self.linear.bias.zero_()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x[:, :, 0])


def test_label_correction_fixes_planted_wrong_labels_and_keeps_the_right_ones():
    cfg = load_config(
        None,
        ["method.name=classifier", "method.scale=10", "method.margin=0.1",
         "method.gate.kind=gmm", "method.gate.start_epoch=1", "method.correction.enabled=true",
         "method.correction.confidence=0.8"],
    )  # fmt: skip
    g = torch.Generator().manual_seed(0)
    classes, per_class = 4, 25
    truth = torch.arange(classes).repeat_interleave(per_class)
    points = 3 * torch.eye(8)[truth] + 0.3 * torch.randn(len(truth), 8, generator=g)
    labels = truth.clone()
    planted = torch.tensor([3, 30, 57, 61, 99])
    labels[planted] = (truth[planted] + 1) % classes
    method = build_method(cfg, ToyEncoder(), classes)
    method.attach_training_set(labels)
    means = torch.stack([points[labels == c].mean(0) for c in range(classes)])
    method.seed_from_class_means(means)  # as a second-stage round starts
    opt = torch.optim.SGD(method.parameters(), lr=0.05)
    feats = points[:, None, :, None]
    reports = []
    for epoch in range(4):
        for rows in torch.randperm(len(truth), generator=g).split(20):
            info = StepInfo(epoch / 4, epoch, 0, rows)
            loss, metrics = method(feats[rows], labels[rows], info)
            opt.zero_grad()
            loss.backward()
            opt.step()
        reports.append(method.end_epoch(epoch))
    corrected = method.training_labels()
    assert corrected[planted].tolist() == truth[planted].tolist(), reports
    others = torch.ones(len(truth), dtype=torch.bool)
    others[planted] = False
    assert torch.equal(corrected[others], truth[others])
    assert reports[-1]["changed"] == len(planted)
    # The first epoch's mixture put a gate under the planted rows' losses.
    assert math.isfinite(reports[0]["next_threshold"])
    assert sum(r.get("corrected", 0) for r in reports) == len(planted)


def test_correction_without_a_gate_is_a_config_error():
    with pytest.raises(ConfigError, match="method.gate.kind"):
        load_config(None, ["method.name=classifier", "method.correction.enabled=true"])
    with pytest.raises(ConfigError, match="gate"):
        load_config(None, ["method.name=classifier", "method.gate.kind=maybe"])


GATED = """
experiment: tiny_gated
encoder:
  name: resnet
  args: {channels: [4, 8, 8, 16], blocks: [1, 1, 1, 1], embed_dim: 16}
method: {name: classifier, scale: 30.0, margin: 0.2, gate: {kind: gmm, start_epoch: 1},
         correction: {enabled: true, confidence: 0.5}}
augment: {enabled: false}
train: {epochs: 3, batch_size: 4, num_workers: 0, crop_seconds: 0.5, deterministic: true,
        lr: 0.01, average_last: 1, keep_checkpoints: 2}
"""


def test_gated_round_with_correction_resumes_exactly(tmp_path, monkeypatch):
    data = make_tone_data_dir(tmp_path)
    config = tmp_path / "gated.yaml"
    config.write_text(GATED)

    def args(exp):
        return ["--config", str(config), "--data", str(data), "--exp-dir", str(exp)]

    straight = tmp_path / "straight"
    assert train_cli.main(args(straight)) == 0
    log = (straight / "log" / "train.log").read_text()
    assert "method epoch 1 kept 1 " in log and "method epoch 2 kept " in log
    exp = tmp_path / "stopped"
    real_step = Trainer.train_step

    def step_then_signal(self, waves, epoch, step, *rest):
        out = real_step(self, waves, epoch, step, *rest)
        if (epoch, step) == (2, 1):  # mid-epoch, after the first correction
            send_to_myself(signal.SIGUSR1)
        return out

    monkeypatch.setattr(Trainer, "train_step", step_then_signal)
    assert train_cli.main(args(exp)) == EXIT_STOPPED
    monkeypatch.setattr(Trainer, "train_step", real_step)
    assert train_cli.main(args(exp)) == 0
    assert_same_weights(
        load_safe(straight / "final.pt")["model"], load_safe(exp / "final.pt")["model"]
    )
    assert (exp / "utt2label").read_text() == (straight / "utt2label").read_text()
    want = load_safe(straight / "checkpoints" / "epoch-0003.pt")["method"]
    got = load_safe(exp / "checkpoints" / "epoch-0003.pt")["method"]
    for key in ("gate.labels", "gate.loss", "gate.threshold"):
        assert torch.equal(got[key], want[key]), key


def test_relabel_writes_the_corrected_data_dir_with_purity_before_and_after(tmp_path):
    from sslsv.bin import relabel
    from sslsv.datadir.io import write_spk2utt
    from sslsv.fileio import write_table

    data = make_tone_data_dir(tmp_path / "train")  # 4 speakers x 4 utterances
    truth = dict(line.split() for line in (data / "utt2spk").read_text().splitlines())
    pseudo = {u: "pl" + s[-1] for u, s in truth.items()}
    pseudo["spk0-utt0"] = "pl1"  # two wrong pseudo-labels
    pseudo["spk2-utt3"] = "pl3"
    pl = tmp_path / "pl"
    pl.mkdir()
    for name in ("wav.scp", "utt2dur"):
        (pl / name).write_text((data / name).read_text())
    write_table(pl / "utt2spk", pseudo)
    write_spk2utt(pl)
    labels = dict(pseudo, **{"spk0-utt0": "pl0"})  # one corrected
    write_table(tmp_path / "utt2label", labels)
    out = tmp_path / "pl_corrected"
    argv = ["--data", str(pl), "--labels", str(tmp_path / "utt2label"), "--output", str(out),
            "--truth", str(data)]  # fmt: skip
    assert relabel.main(argv) == 0
    summary = json.loads((out / "relabel.json").read_text())
    assert summary["changed"] == 1 and summary["utterances"] == 16
    assert summary["before"]["purity"] == pytest.approx(14 / 16)
    assert summary["after"]["purity"] == pytest.approx(15 / 16)
    assert dict(x.split() for x in (out / "utt2spk").read_text().splitlines()) == labels
    assert "pl0 spk0-utt0 spk0-utt1" in (out / "spk2utt").read_text()
    assert (out / "wav.scp").read_text() == (pl / "wav.scp").read_text()
    del labels["spk1-utt2"]
    write_table(tmp_path / "utt2label", labels)
    assert relabel.main(argv) == 1  # an utterance without a label: one line, named
