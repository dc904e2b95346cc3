"""The second stage's classifier: AAM-softmax against its definition, and training on the
labels of a data dir (pseudo or true), started from a seed model, resumed exactly."""

from __future__ import annotations

import math
import signal

import pytest
import torch

from sslsv.bin import train as train_cli
from sslsv.losses import aam_logits, aam_softmax_with_accuracy
from sslsv.train.checkpoint import load_safe
from sslsv.train.trainer import Trainer
from tests.conftest import make_tone_data_dir
from tests.test_train_robust import EXIT_STOPPED, assert_same_weights, send_to_myself

TINY_CLASSIFIER = """
experiment: tiny_classifier
encoder:
  name: resnet
  args: {channels: [4, 8, 8, 16], blocks: [1, 1, 1, 1], embed_dim: 16}
method: {name: classifier, subcenters: SUBCENTERS, scale: 30.0, margin: 0.2, margin_warmup: 0.5}
augment: {enabled: false}
train: {epochs: 3, batch_size: 4, num_workers: 0, crop_seconds: 0.5, deterministic: true,
        average_last: 1, keep_checkpoints: 2}
"""


def plain_aam_loss(cos, labels, scale, margin, subcenters=1):
    """Float64 loops over the definition: a class's cosine is its best centre's; the target
    logit is s cos(theta + m) while theta + m <= pi, else s (cos theta - m sin m)."""
    total = 0.0
    for row, label in zip(cos.tolist(), labels.tolist()):
        classes = [
            max(row[c * subcenters : (c + 1) * subcenters]) for c in range(len(row) // subcenters)
        ]
        logits = []
        for c, value in enumerate(classes):
            if c == label:
                theta = math.acos(max(-1.0, min(1.0, value)))
                if theta + margin <= math.pi:
                    value = math.cos(theta + margin)
                else:
                    value = value - margin * math.sin(margin)
            logits.append(scale * value)
        top = max(logits)
        log_sum = top + math.log(sum(math.exp(v - top) for v in logits))
        total += log_sum - logits[label]
    return total / len(labels)


@pytest.mark.parametrize("subcenters", [1, 3])
def test_aam_softmax_matches_its_definition(subcenters):
    g = torch.Generator().manual_seed(0)
    classes, batch = 7, 12
    emb = torch.nn.functional.normalize(
        torch.randn(batch, 8, generator=g, dtype=torch.float64), dim=1
    )
    centres = torch.nn.functional.normalize(
        torch.randn(classes * subcenters, 8, generator=g, dtype=torch.float64), dim=1
    )
    cos = emb @ centres.T
    # Some rows pushed to theta + m > pi, where the continuation takes over.
    cos[:2] = -cos[:2].abs()
    cos[0, 0] = -0.999
    labels = torch.randint(classes, (batch,), generator=g)
    labels[0] = 0
    for scale, margin in [(30.0, 0.2), (10.0, 0.0), (20.0, 0.5)]:
        got, _ = aam_softmax_with_accuracy(cos, labels, scale, margin, subcenters)
        assert float(got) == pytest.approx(
            plain_aam_loss(cos, labels, scale, margin, subcenters), rel=1e-10
        )


def test_aam_margin_zero_is_plain_cross_entropy_and_margin_lowers_the_target():
    g = torch.Generator().manual_seed(1)
    cos = torch.rand(5, 4, generator=g, dtype=torch.float64) * 2 - 1
    labels = torch.tensor([0, 1, 2, 3, 0])
    plain = torch.nn.functional.cross_entropy(cos * 30, labels)
    assert float(aam_softmax_with_accuracy(cos, labels, 30.0, 0.0)[0]) == pytest.approx(
        float(plain)
    )
    with_margin = aam_logits(cos, labels, 30.0, 0.2)
    rows = torch.arange(5)
    assert (with_margin[rows, labels] < 30 * cos[rows, labels]).all()
    mask = torch.ones_like(cos, dtype=torch.bool)
    mask[rows, labels] = False
    assert torch.equal(with_margin[mask], 30 * cos[mask])


def test_aam_softmax_gradcheck():
    g = torch.Generator().manual_seed(2)
    emb = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    centres = torch.randn(8, 5, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 1, 2])

    def loss(e, c):
        cos = torch.nn.functional.normalize(e, dim=1) @ torch.nn.functional.normalize(c, dim=1).T
        return aam_softmax_with_accuracy(cos, labels, 30.0, 0.2, subcenters=2)[0]

    assert torch.autograd.gradcheck(loss, (emb, centres))


def write_classifier_config(path, subcenters=1):
    path.write_text(TINY_CLASSIFIER.replace("SUBCENTERS", str(subcenters)))
    return path


def train_args(config, data, exp, *extra):
    return ["--config", str(config), "--data", str(data), "--exp-dir", str(exp), *extra]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A 4-speaker data dir, the classifier config and an uninterrupted run's final weights."""
    root = tmp_path_factory.mktemp("classifier")
    data = make_tone_data_dir(root)
    config = write_classifier_config(root / "classifier.yaml", subcenters=2)
    straight = root / "straight"
    assert train_cli.main(train_args(config, data, straight)) == 0
    return data, config, load_safe(straight / "final.pt")["model"], straight


def test_classifier_learns_the_labels(tmp_path, labelled):
    data, config, _, straight = labelled
    method = load_safe(straight / "checkpoints" / "epoch-0003.pt")["method"]
    # 4 speakers x 2 sub-centres, and the encoder alone in final.pt.
    assert method["centres"].shape == (8, 16)
    assert not any(k.startswith("centres") for k in load_safe(straight / "final.pt")["model"])
    # A fixed margin (no warm-up raising it) and a higher rate: the loss falls.
    exp = tmp_path / "learn"
    argv = train_args(config, data, exp, "--override", "method.margin_warmup=0", "train.lr=0.01",
                      "train.epochs=5")  # fmt: skip
    assert train_cli.main(argv) == 0
    log = (exp / "log" / "train.log").read_text().splitlines()
    losses = [float(line.split()[3]) for line in log]
    assert len(losses) == 5 and losses[-1] < 0.8 * losses[0], losses


def test_classifier_resumes_exactly_after_a_stop_mid_round(tmp_path, labelled, monkeypatch):
    data, config, want, _ = labelled
    exp = tmp_path / "exp"
    real_step = Trainer.train_step

    def step_then_signal(self, waves, epoch, step, *rest):
        out = real_step(self, waves, epoch, step, *rest)
        if (epoch, step) == (1, 1):
            send_to_myself(signal.SIGUSR1)
        return out

    monkeypatch.setattr(Trainer, "train_step", step_then_signal)
    assert train_cli.main(train_args(config, data, exp)) == EXIT_STOPPED
    monkeypatch.setattr(Trainer, "train_step", real_step)
    assert train_cli.main(train_args(config, data, exp)) == 0
    assert_same_weights(want, load_safe(exp / "final.pt")["model"])


def test_classifier_starts_from_a_seed_model_with_the_same_encoder(tmp_path, labelled):
    data, config, seed_weights, straight = labelled
    exp = tmp_path / "from_seed"
    argv = train_args(config, data, exp, "--init-model", str(straight / "final.pt"),
                      "--override", "train.epochs=1", "experiment=seeded")  # fmt: skip
    assert train_cli.main(argv) == 0
    assert_same_weights(seed_weights, load_safe(exp / "init.pt")["model"])
    # Another seed model is another experiment: refused, not silently continued.
    other = tmp_path / "other"
    assert train_cli.main(train_args(config, data, other, "--override", "train.epochs=1")) == 0
    argv = train_args(config, data, other, "--init-model", str(exp / "final.pt"),
                      "--override", "train.epochs=1")  # fmt: skip
    assert train_cli.main(argv) == 1


def test_classifier_refuses_a_data_dir_with_one_speaker(tmp_path, capsys):
    data = make_tone_data_dir(tmp_path, speakers=1, utts=6)
    config = write_classifier_config(tmp_path / "c.yaml")
    assert train_cli.main(train_args(config, data, tmp_path / "exp")) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "at least 2 classes" in err


def test_validation_during_training_and_best_epoch_selection(tmp_path, labelled):
    """Validation after each epoch (train.log and TensorBoard); select_best makes final.pt
    the model of the epoch with the lowest EER, kept as best.pt."""
    import itertools

    from sslsv.datadir.io import read_trials, write_trials

    data, config, _, _ = labelled
    utts = sorted(line.split()[0] for line in (data / "utt2spk").read_text().splitlines())
    trials = [
        (a, b, a.split("-")[0] == b.split("-")[0]) for a, b in itertools.combinations(utts, 2)
    ]
    write_trials(tmp_path / "trials", trials)
    assert read_trials(tmp_path / "trials")
    exp = tmp_path / "validated"
    argv = train_args(config, data, exp, "--override", f"train.validation.data_dir={data}",
                      f"train.validation.trials={tmp_path / 'trials'}",
                      "train.validation.select_best=true")  # fmt: skip
    assert train_cli.main(argv) == 0
    lines = [x for x in (exp / "log" / "train.log").read_text().splitlines() if "validation" in x]
    assert [x.split()[2] for x in lines] == ["1", "2", "3"], lines
    eers = [float(x.split()[4].rstrip("%")) for x in lines]
    best_epoch = 1 + eers.index(min(eers))
    epoch_model = load_safe(exp / "checkpoints" / f"epoch-{best_epoch:04d}.pt")["model"] if (
        exp / "checkpoints" / f"epoch-{best_epoch:04d}.pt").exists() else None  # fmt: skip
    final = load_safe(exp / "final.pt")["model"]
    assert_same_weights(load_safe(exp / "best.pt")["model"], final)
    if epoch_model is not None:  # kept unless pruned (keep_checkpoints: 2)
        assert_same_weights(epoch_model, final)


def test_classifier_centres_start_at_the_seed_class_means(tmp_path, labelled):
    """With the seed's embeddings of the training utterances, each class centre starts at
    its utterances' mean (L2-normalised) embedding, computed here by a plain loop."""
    import kaldiio
    import numpy as np

    from sslsv.config.load import load_config

    data, config, _, straight = labelled
    utts = sorted(line.split()[0] for line in (data / "utt2spk").read_text().splitlines())
    rng = np.random.default_rng(0)
    vectors = {u: rng.standard_normal(16).astype(np.float32) for u in utts}
    scp = tmp_path / "emb.scp"
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path / 'emb.ark'},{scp}") as writer:
        for u in utts:
            writer(u, vectors[u])
    cfg = load_config(config, ["method.subcenters=1"])
    trainer = Trainer(cfg, data, tmp_path / "exp", "cpu", straight / "final.pt", scp)
    try:
        speakers = dict(line.split() for line in (data / "utt2spk").read_text().splitlines())
        for index, speaker in enumerate(trainer.dataset.classes):
            mine = [vectors[u] / np.linalg.norm(vectors[u]) for u in utts if speakers[u] == speaker]
            want = np.mean(mine, axis=0)
            want /= np.linalg.norm(want)
            got = trainer.method.centres[index].detach().numpy()
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    finally:
        trainer.close()
