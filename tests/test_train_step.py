"""The epoch loop, which reads losses in groups, still stops at the first non-finite loss
with its step (that no step makes the host wait is tests/test_host_sync.py)."""

from __future__ import annotations

import pytest
import torch

from sslsv.config.load import load_config
from sslsv.train.sync_probe import SyncProbe, trainer_device_tensors
from sslsv.train.trainer import Trainer


def make_trainer(tmp_path, data_dir, method: str, *extra: str) -> Trainer:
    cfg = load_config(
        None,
        [
            "experiment=sync",
            "encoder.name=resnet",
            "encoder.args={channels: [4, 8], blocks: [1, 1], embed_dim: 16}",
            f"method.name={method}",
            *(["method.projector=[32]"] if method in ("simclr", "moco") else []),
            "augment.enabled=false",
            "train.batch_size=4",
            "train.num_workers=0",
            "train.crop_seconds=0.5",
            "train.epochs=2",
            "train.log_every=3",
            *extra,
        ],
    )
    return Trainer(cfg, data_dir, tmp_path / "exp", "cpu")


DINO_SMALL = ("method.head_hidden=16", "method.head_bottleneck=8", "method.head_out=32",
              "method.local_crops=2", "method.local_crop_seconds=0.25")  # fmt: skip


def test_non_finite_loss_is_reported_with_its_step(tmp_path, tone_data_dir):
    trainer = make_trainer(tmp_path, tone_data_dir, "simclr")
    real_step = trainer.train_step

    def step_with_nan(waves, epoch, step, *rest):
        loss, metrics = real_step(waves, epoch, step, *rest)
        return (loss * float("nan") if step == 1 else loss), metrics

    trainer.train_step = step_with_nan
    with pytest.raises(FloatingPointError, match="epoch 1 step 1"):
        trainer.fit()
    assert not list((tmp_path / "exp" / "checkpoints").glob("*.pt"))


def test_moco_key_encoder_update_is_the_moving_average(tmp_path, tone_data_dir):
    """key <- m key + (1 - m) online for every parameter; buffers copied."""
    trainer = make_trainer(tmp_path, tone_data_dir, "moco")
    moco = trainer.method
    with torch.no_grad():
        for p in moco.key_model.parameters():
            p.add_(torch.randn_like(p))
    online = [p.detach().clone() for p in moco.model.parameters()]
    before = [p.detach().clone() for p in moco.key_model.parameters()]
    moco._update_key_encoder()
    m = moco.momentum
    for key, old, new in zip(moco.key_model.parameters(), before, online):
        torch.testing.assert_close(key, m * old + (1 - m) * new, rtol=1e-6, atol=1e-6)
    for key, new in zip(moco.key_model.buffers(), moco.model.buffers()):
        torch.testing.assert_close(key, new)


def test_channels_last_is_the_same_computation(tmp_path, tone_data_dir):
    """Only the memory layout of 4-D weights (and so activations) changes."""
    waves = 0.1 * torch.randn(4, 2, 8000, generator=torch.Generator().manual_seed(0))
    results = []
    for i, layout in enumerate(["false", "true"]):
        trainer = make_trainer(tmp_path / str(i), tone_data_dir, "simclr",
                               f"train.channels_last={layout}")  # fmt: skip
        conv = next(p for p in trainer.method.parameters() if p.dim() == 4 and p.shape[1] > 1)
        assert conv.is_contiguous(memory_format=torch.channels_last) == (layout == "true")
        losses = [float(trainer.train_step(waves, 0, step)[0]) for step in range(3)]
        results.append((losses, [p.detach().clone() for p in trainer.method.parameters()]))
    (losses_a, weights_a), (losses_b, weights_b) = results
    assert losses_b == pytest.approx(losses_a, rel=1e-4)
    for a, b in zip(weights_a, weights_b):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("method", ["simclr", "dino"])
def test_int16_crops_train_as_their_float_values(tmp_path, tone_data_dir, method):
    """The loader's int16 crops are made float32 on the device (x / 32768): a step on them
    is the step on those float values, exactly, and waits for the device no more."""
    extra = DINO_SMALL if method == "dino" else ()
    g = torch.Generator().manual_seed(0)
    ints = [torch.randint(-3000, 3000, (4, 2, 8000), generator=g, dtype=torch.int16)]
    if method == "dino":
        ints.append(torch.randint(-3000, 3000, (4, 2, 4000), generator=g, dtype=torch.int16))
    floats = [x.float() / 32768 for x in ints]
    results = []
    for i, waves in enumerate([floats, ints]):
        trainer = make_trainer(tmp_path / str(i), tone_data_dir, method, *extra)
        with SyncProbe(trainer_device_tensors(trainer)) as probe:
            loss, _ = trainer.train_step(waves if method == "dino" else waves[0], 0, 0)
        results.append((float(loss), [p.detach().clone() for p in trainer.method.parameters()],
                        probe.summary()))  # fmt: skip
    (loss_f, weights_f, seen_f), (loss_i, weights_i, seen_i) = results
    assert seen_i == seen_f  # the conversion adds no op that makes the host wait
    assert loss_i == loss_f
    for a, b in zip(weights_f, weights_i, strict=True):
        assert torch.equal(a, b)
