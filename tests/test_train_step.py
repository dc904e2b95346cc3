"""The training step does not make the host wait for the device, and the epoch loop, which
reads losses in groups, still stops at the first non-finite loss with its step."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from sslsv.config.load import load_config
from sslsv.train.trainer import Trainer

# Ops that, on CUDA tensors, copy a value to the host or size an output by the data, so the
# host waits for the device to finish everything queued before them.
HOST_SYNC_OPS = {
    "aten._local_scalar_dense",  # .item(), float(t), int(t), bool(t), `if t:`
    "aten.nonzero",  # also boolean-mask indexing
    "aten.masked_select",
    "aten.unique_consecutive",
    "aten._unique2",
    "aten.unique_dim",
    "aten.equal",
    "aten.is_nonzero",
    "aten.repeat_interleave",
}


class HostSyncRecorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []
        self.paused = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket._qualified_op_name.replace("::", ".")
        kwargs = kwargs or {}
        if not self.paused:
            bool_index = name in ("aten.index", "aten.index_put", "aten.index_put_") and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool
                for i in (args[1] if len(args) > 1 and isinstance(args[1], list | tuple) else [])
            )
            if name in HOST_SYNC_OPS or bool_index:
                self.seen.append(name)
        return func(*args, **kwargs)


def make_trainer(tmp_path, data_dir, method: str, *extra: str) -> Trainer:
    cfg = load_config(
        None,
        [
            "experiment=sync",
            "encoder.name=resnet",
            "encoder.args={channels: [4, 8], blocks: [1, 1], embed_dim: 16}",
            f"method.name={method}",
            "method.projector=[32]",
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
              "method.local_crops=2", "method.local_crop_seconds=0.25",
              "loss.margin=0")  # fmt: skip


@pytest.mark.parametrize("method", ["simclr", "moco", "dino"])
def test_train_step_never_waits_for_the_device(tmp_path, tone_data_dir, method):
    """Front end, encoder, loss (masks built on the device), backward, logging reduction:
    no op that would block the host on a GPU. The optimizer step is left out: on CPU, Adam
    reads its step counter (a host tensor); on CUDA the trainer uses the fused Adam."""
    extra = DINO_SMALL if method == "dino" else ()
    trainer = make_trainer(tmp_path, tone_data_dir, method, *extra)
    g = torch.Generator().manual_seed(0)
    waves = 0.1 * torch.randn(4, 2, 8000, generator=g)
    if method == "dino":  # multi-crop: global and local crops
        waves = [waves, 0.1 * torch.randn(4, 2, 4000, generator=g)]
    recorder = HostSyncRecorder()
    optimizer_step = trainer.optimizer.step

    def step_unrecorded(*args, **kwargs):
        recorder.paused = True
        try:
            return optimizer_step(*args, **kwargs)
        finally:
            recorder.paused = False

    trainer.optimizer.step = step_unrecorded
    with recorder:
        for step in range(2):  # the second MoCo step also reads a filled queue
            loss, accuracy, _ = trainer.train_step(waves, 0, step)
    assert recorder.seen == []
    assert torch.isfinite(loss) and 0 <= float(accuracy) <= 1
    # The recorder does see a host read when there is one.
    with recorder:
        float(loss)
    assert recorder.seen == ["aten._local_scalar_dense"]


def test_non_finite_loss_is_reported_with_its_step(tmp_path, tone_data_dir):
    trainer = make_trainer(tmp_path, tone_data_dir, "simclr")
    real_step = trainer.train_step

    def step_with_nan(waves, epoch, step, *rest):
        loss, accuracy, margin = real_step(waves, epoch, step, *rest)
        return (loss * float("nan") if step == 1 else loss), accuracy, margin

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
