"""GPU paths: no host-device synchronisation in any method's training step (SSPS, spec
masks and waveform augmentation on), compile and channels_last steps, bf16 training end to
end, a resume on the GPU, and CUDA extraction equal to CPU extraction. Skipped without CUDA
(their CPU twins: test_host_sync.py, test_train_step.py, test_extraction.py).

``SSLSV_TEST_DEVICE=cpu`` runs the same tests on the CPU (without the sync debug mode): the
dry run of bench/device_check.sh uses it, so that the first GPU run does not fail on a
path or a config.
"""

from __future__ import annotations

import contextlib
import os
import shutil

import pytest
import torch

from sslsv.config.load import load_config
from sslsv.config.schema import ExtractConfig
from sslsv.extraction import embed_data_dir
from sslsv.models.embedding import EmbeddingModel
from sslsv.train.checkpoint import load_safe
from sslsv.train.trainer import Trainer

DEVICE = os.environ.get("SSLSV_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(
    DEVICE == "cuda" and not torch.cuda.is_available(), reason="no CUDA device"
)

DINO = ("method.head_hidden=64", "method.head_bottleneck=32", "method.head_out=256",
        "method.local_crops=2", "method.local_crop_seconds=0.5")  # fmt: skip
SSPS = ("method.ssps={enabled: true, start: 0, queue_size: 256, clusters: 4, kmeans_iters: 3}",)
METHODS = {
    "simclr": (),
    "moco": ("method.queue_size=64",),
    "dino": DINO,
    "classifier": (),
    "simclr+ssps": SSPS,
    "moco+ssps": ("method.queue_size=64", *SSPS),
    "dino+ssps": DINO + SSPS,
}


def make_trainer(tmp_path, data_dir, name: str, precision: str, *extra: str) -> Trainer:
    cfg = load_config(
        None,
        [
            "experiment=cuda",
            "encoder.name=fast_resnet34",
            f"method.name={name.split('+')[0]}",
            *METHODS[name],
            "augment.enabled=true",
            f"augment.rir_dir={data_dir}",  # any audio serves as impulse responses here
            "augment.rir_prob=0.5",
            "augment.noise_prob=0.9",
            f"augment.noise={{noise: {{data_dir: {data_dir}, snr_db: [0, 15]}}, "
            f"speech: {{data_dir: {data_dir}, snr_db: [13, 20], num_sources: [2, 4]}}}}",
            "augment.spec_freq_masks=2",
            "augment.spec_time_masks=2",
            "train.batch_size=8",
            "train.num_workers=2",
            "train.crop_seconds=1.0",
            "train.epochs=2",
            f"train.precision={precision}",
            *extra,
        ],
    )
    exp = tmp_path / f"exp-{name}-{precision}"
    return Trainer(cfg, data_dir, exp, DEVICE)


def batch(name: str) -> tuple:
    """A batch as the DataLoader delivers it: int16 crops in pinned memory (on a GPU)."""
    g = torch.Generator().manual_seed(0)
    views = 1 if name == "classifier" else 2

    def crops(count: int, samples: int) -> torch.Tensor:
        x = torch.randint(-3000, 3000, (8, count, samples), generator=g, dtype=torch.int16)
        return x.pin_memory() if DEVICE == "cuda" else x

    waves = crops(views, 16000)
    if name.startswith("dino"):
        waves = [waves, crops(2, 8000)]
    labels = torch.arange(8) % 4 if name == "classifier" else None
    return waves, labels


@contextlib.contextmanager
def sync_errors():
    """Any host-device synchronisation inside is an error (CUDA only)."""
    if DEVICE != "cuda":
        yield
        return
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("name", list(METHODS))
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_train_step_never_synchronises(tmp_path, tone_data_dir, name, precision):
    trainer = make_trainer(tmp_path, tone_data_dir, name, precision)
    waves, labels = batch(name)
    # First step: cuDNN autotuning, lazy initialisation, SSPS's first k-means.
    trainer.train_step(waves, 0, 0, labels, torch.arange(8))
    with sync_errors():
        for step in range(1, 4):
            indices = torch.arange(8) + 8 * step
            loss, metrics = trainer.train_step(waves, 0, step, labels, indices)
    assert torch.isfinite(loss) and 0 <= float(metrics["accuracy"]) <= 1
    if "ssps" in name:
        assert trainer.method.ssps.centroids.shape[0] == 4


# Compiled: a small ResNet, so that compilation takes seconds (the benchmark's compile rows
# compile the recipe's Fast ResNet-34).
SMALL = ("encoder.name=resnet", "encoder.args={channels: [8, 16], blocks: [1, 1], embed_dim: 32}")


@pytest.mark.parametrize("options", [("train.channels_last=true",), ("train.compile=true", *SMALL)])
def test_compiled_and_channels_last_steps_never_synchronise(tmp_path, tone_data_dir, options):
    if DEVICE == "cpu" and "train.compile=true" in options:
        pytest.skip("compiling a ResNet-34 takes minutes on a CPU: checked on CUDA only")
    trainer = make_trainer(tmp_path, tone_data_dir, "simclr", "bf16", *options)
    waves, labels = batch("simclr")
    for step in range(2):  # compilation (and recompilation for the second shape) first
        trainer.train_step(waves, 0, step, labels, torch.arange(8))
    with sync_errors():
        for step in range(2, 4):
            loss, _ = trainer.train_step(waves, 0, step, labels, torch.arange(8))
    assert torch.isfinite(loss)


def test_bf16_training_runs_an_epoch(tmp_path, tone_data_dir):
    trainer = make_trainer(tmp_path, tone_data_dir, "simclr", "bf16", "train.epochs=1")
    trainer.fit()
    trainer.close()
    assert (tmp_path / "exp-simclr-bf16" / "final.pt").is_file()
    log = (tmp_path / "exp-simclr-bf16" / "log" / "train.log").read_text()
    assert log.startswith("epoch 1 loss ")


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path, tone_data_dir):
    """Two epochs straight, and epoch 2 again from the epoch-1 checkpoint (MoCo + SSPS:
    queues, memory and RNG states in the checkpoint)."""
    straight = make_trainer(tmp_path / "a", tone_data_dir, "moco+ssps", "fp32")
    straight.fit()
    straight.close()
    exp = tmp_path / "a" / "exp-moco+ssps-fp32"
    again = tmp_path / "b" / "exp-moco+ssps-fp32"
    (again / "checkpoints").mkdir(parents=True)
    shutil.copy(exp / "checkpoints/epoch-0001.pt", again / "checkpoints/epoch-0001.pt")
    resumed = make_trainer(tmp_path / "b", tone_data_dir, "moco+ssps", "fp32")
    assert resumed.epoch == 1
    resumed.fit()
    resumed.close()
    want, got = load_safe(exp / "final.pt")["model"], load_safe(again / "final.pt")["model"]
    for key in want:  # cuDNN's backward kernels add in any order: close, not equal
        torch.testing.assert_close(got[key], want[key], rtol=1e-3, atol=1e-4, msg=key)


def test_cuda_extraction_equals_cpu(tone_data_dir):
    cfg = load_config(None, ["encoder.name=fast_resnet34"])
    torch.manual_seed(0)
    model = EmbeddingModel(cfg).eval()
    options = ExtractConfig(crop_seconds=1.0, num_crops=3, batch_size=16, num_workers=2)
    on_cpu: dict = {}
    embed_data_dir(model, tone_data_dir, False, "cpu", on_cpu.__setitem__, options)
    on_gpu: dict = {}
    embed_data_dir(model.to(DEVICE), tone_data_dir, False, DEVICE, on_gpu.__setitem__, options)
    assert list(on_gpu) == list(on_cpu)
    for utt, e in on_cpu.items():
        torch.testing.assert_close(
            torch.from_numpy(on_gpu[utt]), torch.from_numpy(e), atol=2e-3, rtol=1e-3
        )
