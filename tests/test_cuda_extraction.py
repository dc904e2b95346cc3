"""CUDA extraction, skipped without CUDA: whole utterances on the GPU equal the CPU's (and
run without cuDNN autotuning), ``sslsv.bin.extract --device cuda`` spreads its jobs over the
visible GPUs, and ``sslsv.load_model(..., device="cuda")`` embeds and scores as on the CPU.
Their CPU twins (the job -> GPU mapping, the --nj default, reading model files to the CPU)
are in test_extraction.py and test_api.py.

Tolerances: cuDNN convolutions use TF32 by default on Ampere and later GPUs (about 1e-3
relative), so embeddings are compared after L2 normalisation, as cosine scoring sees them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch

import sslsv
from sslsv.config.load import config_to_dict, load_config
from sslsv.config.schema import ExtractConfig
from sslsv.extraction import embed_data_dir
from sslsv.models.embedding import EmbeddingModel
from sslsv.train.checkpoint import model_payload, save_atomic

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "encoder.name=resnet",
    "encoder.args={channels: [8, 16], blocks: [1, 1], embed_dim: 16}",
    "features.n_mels=24",
]
ATOL = 2e-3


def tiny_model() -> EmbeddingModel:
    torch.manual_seed(0)
    model = EmbeddingModel(load_config(None, TINY)).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so eval mode matters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model


def write_checkpoint(path: Path) -> Path:
    save_atomic(
        model_payload(config_to_dict(load_config(None, TINY)), tiny_model().state_dict()), path
    )
    return path


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def cpu_embeddings(data_dir: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    options = ExtractConfig(crop_seconds=0.0, num_workers=0)
    embed_data_dir(tiny_model(), data_dir, False, "cpu", out.__setitem__, options)
    return out


def wav_paths(data_dir: Path) -> list[str]:
    lines = (data_dir / "wav.scp").read_text().splitlines()
    return [line.split(maxsplit=1)[1] for line in lines]


def test_whole_utterances_on_cuda_equal_cpu(tone_data_dir, monkeypatch):
    expected = cpu_embeddings(tone_data_dir)
    model = tiny_model().cuda()
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)  # as training leaves it
    seen: list[bool] = []
    model.register_forward_pre_hook(lambda m, i: seen.append(torch.backends.cudnn.benchmark))
    got: dict[str, np.ndarray] = {}
    options = ExtractConfig(crop_seconds=0.0, num_workers=2)  # pinned batches from workers
    embed_data_dir(model, tone_data_dir, False, "cuda", got.__setitem__, options)
    assert list(got) == list(expected)
    assert seen == [False] * len(expected) and torch.backends.cudnn.benchmark
    for utt, e in expected.items():
        np.testing.assert_allclose(unit(got[utt]), unit(e), atol=ATOL, err_msg=utt)


def extract(ckpt: Path, data_dir: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sslsv.bin.extract", "--checkpoint", str(ckpt),
         "--data", str(data_dir), "--output", str(out), "--device", "cuda", *flags],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip


def test_extract_jobs_spread_over_the_visible_gpus(tmp_path, tone_data_dir):
    ckpt = write_checkpoint(tmp_path / "final.pt")
    gpus = torch.cuda.device_count()
    expected = cpu_embeddings(tone_data_dir)
    out = tmp_path / "emb"
    result = extract(ckpt, tone_data_dir, out, "--nj", "2")
    assert result.returncode == 0, result.stderr
    for job in (1, 2):
        log = (out / "log" / f"extract.{job}.log").read_text()
        assert f"job {job} of 2: device cuda:{(job - 1) % gpus}" in log, log
    got = dict(kaldiio.load_scp(str(out / "embeddings.scp")))
    assert sorted(got) == sorted(expected)
    for utt, e in expected.items():
        np.testing.assert_allclose(unit(np.asarray(got[utt])), unit(e), atol=ATOL, err_msg=utt)
    # Without --nj: one job per visible GPU.
    out = tmp_path / "emb_default"
    result = extract(ckpt, tone_data_dir, out)
    assert result.returncode == 0, result.stderr
    assert f"--nj not given: {gpus} job(s), one per visible GPU" in result.stderr
    assert (out / f"split{gpus}").is_dir()
    for job in range(1, gpus + 1):
        log = (out / "log" / f"extract.{job}.log").read_text()
        assert f"job {job} of {gpus}: device cuda:{job - 1}" in log, log


def test_api_on_cuda_equals_cpu(tmp_path, tone_data_dir):
    ckpt = write_checkpoint(tmp_path / "final.pt")
    on_cpu = sslsv.load_model(ckpt)
    on_gpu = sslsv.load_model(ckpt, device="cuda")
    assert {p.device.type for p in on_gpu.model.parameters()} == {"cuda"}
    assert on_gpu.fingerprint == on_cpu.fingerprint
    wavs = wav_paths(tone_data_dir)
    np.testing.assert_allclose(on_gpu.embed(wavs), on_cpu.embed(wavs), atol=ATOL)
    crops = {"crop_seconds": 1.0, "num_crops": 3}
    np.testing.assert_allclose(on_gpu.embed(wavs, **crops), on_cpu.embed(wavs, **crops), atol=ATOL)
    for a, b in [(wavs[0], wavs[1]), (wavs[0], wavs[-1])]:
        assert on_gpu.verify(a, b).score == pytest.approx(on_cpu.verify(a, b).score, abs=ATOL)
    # An explicit GPU: the last visible one.
    last = torch.device("cuda", torch.cuda.device_count() - 1)
    on_last = sslsv.load_model(ckpt, device=f"cuda:{last.index}")
    assert {p.device for p in on_last.model.parameters()} == {last}
    np.testing.assert_allclose(on_last.embed(wavs[:2]), on_cpu.embed(wavs[:2]), atol=ATOL)
