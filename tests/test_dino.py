"""DINO against its definition: the loss as a float64 loop over crop pairs, the centre's
moving average, the teacher temperature warm-up, the teacher's EMA schedule, the frozen
prototypes, multi-crop crops (shapes, independent random segments), and a short training
whose final.pt is the teacher."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import MEAN_LINEAR

from sslsv.config.load import load_config
from sslsv.errors import ConfigError
from sslsv.fileio import write_table
from sslsv.losses import dino_loss
from sslsv.methods import StepInfo, build_method, method_class
from sslsv.methods.dino import teacher_momentum, teacher_temperature
from sslsv.models.embedding import EmbeddingModel
from sslsv.train.checkpoint import load_safe
from sslsv.train.dataset import CropDataset
from sslsv.train.trainer import Trainer

DINO_SMALL = [
    "method.name=dino",
    "method.head_hidden=16",
    "method.head_bottleneck=6",
    "method.head_out=11",
    "method.local_crops=3",
]


def make_dino(*extra: str):
    cfg = load_config(
        None, [f"encoder.name={MEAN_LINEAR}", "encoder.args={embed_dim: 8}", *DINO_SMALL, *extra]
    )
    torch.manual_seed(0)
    return cfg, build_method(cfg, EmbeddingModel(cfg))


def crops(batch=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 2, 40, 20, generator=g), torch.randn(batch, 3, 40, 9, generator=g)]


def loop_loss(student, teacher, center, ts, tt):
    """The definition, one crop pair and one utterance at a time, in float64."""
    student, teacher, center = student.double(), teacher.double(), center.double()
    total, pairs = 0.0, 0
    for t in range(teacher.shape[0]):
        for s in range(student.shape[0]):
            if s == t:
                continue
            pair = 0.0
            for b in range(teacher.shape[1]):
                q = torch.softmax((teacher[t, b] - center) / tt, dim=0)
                log_p = torch.log_softmax(student[s, b] / ts, dim=0)
                pair += float(-(q * log_p).sum())
            total += pair / teacher.shape[1]
            pairs += 1
    return total / pairs


def test_dino_loss_is_the_mean_cross_entropy_over_pairs_of_different_crops():
    g = torch.Generator().manual_seed(0)
    student = torch.randn(6, 4, 13, generator=g)
    teacher = torch.randn(2, 4, 13, generator=g)
    center = torch.randn(13, generator=g)
    got = float(dino_loss(student, teacher, center, 0.1, 0.04))
    assert got == pytest.approx(loop_loss(student, teacher, center, 0.1, 0.04), rel=1e-5)


def test_schedules_follow_their_formulas():
    assert teacher_momentum(0.0, 0.996) == pytest.approx(0.996)
    assert teacher_momentum(1.0, 0.996) == pytest.approx(1.0)
    for p in (0.1, 0.5, 0.8):
        want = 1 - (1 - 0.996) * (math.cos(math.pi * p) + 1) / 2
        assert teacher_momentum(p, 0.996) == pytest.approx(want)
    assert teacher_momentum(0.0, 0.99, 0.99) == teacher_momentum(0.7, 0.99, 0.99) == 0.99
    assert teacher_momentum(0.5, 0.9, 0.99) == pytest.approx(0.945)
    assert teacher_temperature(0.0, 0.04, 0.07, 0.2) == pytest.approx(0.04)
    assert teacher_temperature(0.1, 0.04, 0.07, 0.2) == pytest.approx(0.055)
    assert teacher_temperature(0.2, 0.04, 0.07, 0.2) == pytest.approx(0.07)
    assert teacher_temperature(0.9, 0.04, 0.07, 0.2) == pytest.approx(0.07)
    assert teacher_temperature(0.0, 0.04, 0.07, 0.0) == pytest.approx(0.07)


def test_forward_loss_centre_and_teacher_update_follow_the_definitions():
    cfg, dino = make_dino(
        "method.momentum=0.9", "method.teacher_temperature_start=0.04",
        "method.teacher_temperature=0.07", "method.teacher_temperature_warmup=0.5",
        "method.center_momentum=0.8",
    )  # fmt: skip
    with torch.no_grad():  # a teacher unlike the student, so the EMA shows
        for p in list(dino.model.parameters()) + list(dino.teacher_head.parameters()):
            p.add_(0.3 * torch.randn_like(p))
    center = torch.zeros(11)
    for step, progress in enumerate((0.1, 0.3)):
        feats = crops(seed=step)
        student_before = [p.detach().clone() for p in dino.student.parameters()]
        teacher_before = [p.detach().clone() for p in dino.model.parameters()]
        m = teacher_momentum(progress, 0.9)
        # The expected teacher: its EMA step, then the global crops through it.
        teacher_model = [m * t + (1 - m) * s for t, s in zip(teacher_before, student_before)]
        heads = [p.detach().clone() for p in dino.teacher_head.parameters()]
        online = [p.detach().clone() for p in dino.student_head.parameters()]
        teacher_head = [m * t + (1 - m) * s for t, s in zip(heads, online)]
        loss, metrics = dino(feats, None, StepInfo(progress=progress, epoch=1))
        for got, want in zip(dino.model.parameters(), teacher_model):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
        for got, want in zip(dino.teacher_head.parameters(), teacher_head):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
        with torch.no_grad():
            g, local = feats
            teacher = dino.teacher_head(
                dino.model.forward_features(g.transpose(0, 1).flatten(0, 1))
            )
            teacher = teacher.unflatten(0, (2, 5))
            student = torch.cat([
                dino.student_head(dino.student.forward_features(x.transpose(0, 1).flatten(0, 1)))
                .unflatten(0, (x.shape[1], 5))
                for x in feats
            ])  # fmt: skip
        tt = 0.04 + (0.07 - 0.04) * progress / 0.5
        assert float(loss.detach()) == pytest.approx(
            loop_loss(student, teacher, center, 0.1, tt), rel=1e-4
        )
        center = 0.8 * center + 0.2 * teacher.mean(dim=(0, 1))
        torch.testing.assert_close(dino.center, center, rtol=1e-5, atol=1e-6)
        assert 0 <= float(metrics["accuracy"]) <= 1


def test_prototypes_are_frozen_in_the_first_epochs_only():
    _, dino = make_dino("method.freeze_last_layer_epochs=1")
    for epoch, frozen in ((0, True), (1, False)):
        dino.zero_grad()
        loss, _ = dino(crops(), None, StepInfo(progress=0.2, epoch=epoch))
        loss.backward()
        grad = dino.student_head.prototypes.grad
        assert bool((grad == 0).all()) == frozen
        assert float(dino.student_head.mlp[0].weight.grad.abs().sum()) > 0


def test_dino_has_no_margin_and_the_crop_plan_has_two_lengths():
    with pytest.raises(ConfigError, match="unknown key 'method.margin' for method 'dino'"):
        make_dino("method.margin=0.1")
    cfg = load_config(None, [*DINO_SMALL, "train.crop_seconds=3", "method.local_crop_seconds=1.5"])
    assert method_class(cfg).crop_plan(cfg) == [(2, 3.0), (3, 1.5)]
    _, dino = make_dino()
    assert dino.embedding_models() == [dino.student, dino.model]
    assert dino.model is not dino.student  # the teacher, what final.pt keeps


def ramp_data_dir(tmp_path, seconds=3.0, rate=16000):
    """Utterances whose sample n is n / 2^20 (exact in float32): a crop's first sample
    says where it starts."""
    data = tmp_path / "ramp"
    data.mkdir()
    n = int(seconds * rate)
    wavs, durs = {}, {}
    for i in range(3):
        path = tmp_path / f"u{i}.wav"
        sf.write(path, (np.arange(n) + i * 7) / 2**20, rate, subtype="FLOAT")
        wavs[f"u{i}"], durs[f"u{i}"] = str(path), f"{seconds:g}"
    write_table(data / "wav.scp", wavs)
    write_table(data / "utt2dur", durs)
    write_table(data / "utt2spk", {u: u for u in wavs})
    return data, n


def test_multi_crop_items_are_independent_segments_of_their_utterance(tmp_path):
    data, n = ramp_data_dir(tmp_path)
    global_len, local_len = 16000, 8000
    # float32 crops: the ramp's steps of 2^-20 are finer than the loader's int16.
    dataset = CropDataset(data, [(2, global_len), (4, local_len)], seed=0, sample_rate=16000,
                          dtype=torch.float32)  # fmt: skip
    starts = []
    for epoch in range(20):
        groups, label, index = dataset[(epoch, 1)]
        assert [tuple(g.shape) for g in groups] == [(2, global_len), (4, local_len)]
        assert (label, index) == (-1, 1)
        offsets = []
        for group in groups:
            for crop in group.double().numpy():
                start = int(round(crop[0] * 2**20)) - 7
                assert 0 <= start <= n - len(crop)
                # Contiguous audio of the utterance from that start.
                np.testing.assert_array_equal(crop, (np.arange(len(crop)) + start + 7) / 2**20)
                offsets.append(start)
        starts.append(offsets)
    starts = np.array(starts)  # (epochs, 6 crops)
    # Every crop draws its own start: all six differ within an item, and the local crops
    # are not cut from the global ones (some start outside both global crops' spans).
    assert all(len(set(row)) == 6 for row in starts)
    inside = [
        any(g <= s <= g + global_len - local_len for g in row[:2])
        for row in starts
        for s in row[2:]
    ]
    assert not all(inside)
    # And the starts vary across epochs, for each crop.
    assert all(len(set(starts[:, c])) > 10 for c in range(6))


def test_a_short_dino_training_keeps_the_teacher_as_the_model(tmp_path, tone_data_dir):
    cfg = load_config(
        None,
        [
            "encoder.name=resnet",
            "encoder.args={channels: [4, 8], blocks: [1, 1], embed_dim: 16}",
            *DINO_SMALL,
            "method.local_crop_seconds=0.3",
            "augment.enabled=false",
            "train.batch_size=4",
            "train.num_workers=0",
            "train.crop_seconds=0.5",
            "train.epochs=2",
        ],
    )
    trainer = Trainer(cfg, tone_data_dir, tmp_path / "exp", "cpu")
    assert trainer.crops == [(2, 8000), (3, 4800)]
    trainer.write_experiment_files()
    trainer.fit()
    final = load_safe(tmp_path / "exp" / "final.pt")["model"]
    teacher = trainer.method.model.state_dict()
    student = trainer.method.student.state_dict()
    weights = [k for k in teacher if k.endswith("weight")]
    assert all(torch.equal(final[k], teacher[k]) for k in weights)
    assert not all(torch.equal(final[k], student[k]) for k in weights)


DINO_SSPS_TINY = """
experiment: tiny_dino
encoder:
  name: resnet
  args: {channels: [4, 8], blocks: [1, 1], embed_dim: 16}
method: {name: dino, head_hidden: 16, head_bottleneck: 8, head_out: 12, local_crops: 2,
         local_crop_seconds: 0.3, momentum: 0.9,
         ssps: {enabled: true, start: 0.0, queue_size: 64, clusters: 2}}
augment: {enabled: false}
train: {epochs: 2, batch_size: 4, num_workers: 0, crop_seconds: 0.5, deterministic: true}
"""


def test_dino_with_positive_sampling_resumes_exactly(tmp_path, tone_data_dir, monkeypatch):
    """Stopped by SIGUSR1 in epoch 2 (its memory filled, its clusters made at the epoch's
    start) and rerun: the same teacher as an uninterrupted run, memory included."""
    import os
    import signal

    from sslsv.bin import train as train_cli

    config = tmp_path / "dino.yaml"
    config.write_text(DINO_SSPS_TINY)

    def args(exp):
        return ["--config", str(config), "--data", str(tone_data_dir), "--exp-dir", str(exp)]

    assert train_cli.main(args(tmp_path / "straight")) == 0
    real_step = Trainer.train_step

    def step_then_signal(self, crops, epoch, step, *rest):
        out = real_step(self, crops, epoch, step, *rest)
        if (epoch, step) == (1, 1):
            assert signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, None)
            os.kill(os.getpid(), signal.SIGUSR1)
        return out

    monkeypatch.setattr(Trainer, "train_step", step_then_signal)
    assert train_cli.main(args(tmp_path / "exp")) == 75
    state = load_safe(next((tmp_path / "exp" / "checkpoints").glob("step-*.pt")))
    assert int(state["method"]["ssps.clustered_epoch"]) == 1
    # Epoch 1 and two steps of epoch 2 in memory: 16 + 2 x 4 entries.
    assert int((state["method"]["ssps.index"] >= 0).sum()) == 24
    monkeypatch.undo()
    assert train_cli.main(args(tmp_path / "exp")) == 0
    want = load_safe(tmp_path / "straight" / "final.pt")["model"]
    got = load_safe(tmp_path / "exp" / "final.pt")["model"]
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)
