"""GPU paths: no host-device synchronisation in a training step (augmentation included),
bf16 training end to end, and CUDA extraction equal to CPU extraction. Skipped without CUDA
(the CPU twins of these checks are in test_train_step.py and test_extraction.py)."""

from __future__ import annotations

import pytest
import torch

from sslsv.config.load import load_config
from sslsv.config.schema import ExtractConfig
from sslsv.extraction import embed_data_dir
from sslsv.models.embedding import EmbeddingModel
from sslsv.train.trainer import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def make_trainer(tmp_path, data_dir, method: str, precision: str) -> Trainer:
    cfg = load_config(
        None,
        [
            "experiment=cuda",
            "encoder.name=fast_resnet34",
            f"method.name={method}",
            "augment.enabled=true",
            f"augment.rir_dir={data_dir}",  # any audio serves as impulse responses here
            "augment.rir_prob=0.5",
            "augment.noise_prob=0.9",
            f"augment.noise={{noise: {{data_dir: {data_dir}, snr_db: [0, 15]}}, "
            f"speech: {{data_dir: {data_dir}, snr_db: [13, 20], num_sources: [2, 4]}}}}",
            "train.batch_size=8",
            "train.num_workers=2",
            "train.crop_seconds=1.0",
            "train.epochs=1",
            f"train.precision={precision}",
        ],
    )
    return Trainer(cfg, data_dir, tmp_path / f"exp-{method}-{precision}", "cuda")


@pytest.mark.parametrize("method", ["simclr", "moco"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_train_step_never_synchronises(tmp_path, tone_data_dir, method, precision):
    trainer = make_trainer(tmp_path, tone_data_dir, method, precision)
    waves = (0.1 * torch.randn(8, 2, 16000)).pin_memory()  # as the DataLoader delivers it
    trainer.train_step(waves, 0, 0)  # first step: cuDNN autotuning, lazy initialisation
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(1, 4):
            loss, accuracy, _ = trainer.train_step(waves, 0, step)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss) and 0 <= float(accuracy) <= 1


def test_bf16_training_runs_an_epoch(tmp_path, tone_data_dir):
    trainer = make_trainer(tmp_path, tone_data_dir, "simclr", "bf16")
    trainer.fit()
    trainer.close()
    assert (tmp_path / "exp-simclr-bf16" / "final.pt").is_file()
    log = (tmp_path / "exp-simclr-bf16" / "log" / "train.log").read_text()
    assert log.startswith("epoch 1 loss ")


def test_cuda_extraction_equals_cpu(tone_data_dir):
    cfg = load_config(None, ["encoder.name=fast_resnet34"])
    torch.manual_seed(0)
    model = EmbeddingModel(cfg).eval()
    options = ExtractConfig(crop_seconds=1.0, num_crops=3, batch_size=16, num_workers=2)
    on_cpu: dict = {}
    embed_data_dir(model, tone_data_dir, False, "cpu", on_cpu.__setitem__, options)
    on_gpu: dict = {}
    embed_data_dir(model.cuda(), tone_data_dir, False, "cuda", on_gpu.__setitem__, options)
    assert list(on_gpu) == list(on_cpu)
    for utt, e in on_cpu.items():
        torch.testing.assert_close(
            torch.from_numpy(on_gpu[utt]), torch.from_numpy(e), atol=2e-3, rtol=1e-3
        )
