"""The training loader (sslsv.train.dataset): all of an utterance's crops from one open of its
file, int16 crops made float32 on the device, and a prefetch depth sized by a shared-memory
budget."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from sslsv.audio import INT16_SCALE, read_crop
from sslsv.config.load import load_config
from sslsv.fileio import write_table
from sslsv.methods import method_class
from sslsv.train.dataset import (
    SHM_BUDGET_BYTES,
    CropDataset,
    GlobalBatchSampler,
    crop_bytes,
    crops_to_device,
    loader_prefetch,
    prefetch_factor,
)

RATE = 16000
REPO = Path(__file__).resolve().parents[1]
#: DINO's multi-crop plan (2 global + 4 local crops), at a quarter of the lengths.
DINO_LIKE = [(2, RATE), (4, RATE // 2)]


def make_data_dir(root: Path, kind: str, utts: int = 4) -> Path:
    """``pcm16``: 16-bit files at the training rate (read as int16 directly); ``resampled``:
    float files at 22.05 kHz; ``segments``: spans of one 16-bit recording."""
    rng = np.random.default_rng(1)
    data = root / "data"
    data.mkdir(parents=True)
    rate = 22050 if kind == "resampled" else RATE
    subtype = "FLOAT" if kind == "resampled" else "PCM_16"
    durations = {f"u{i}": 2.0 + 0.7 * i for i in range(utts)}
    if kind == "segments":
        total = sum(durations.values()) + 1.0
        audio = (0.2 * rng.standard_normal(round(total * rate))).astype(np.float32)
        sf.write(root / "rec.wav", audio, rate, subtype=subtype)
        write_table(data / "wav.scp", {"rec": str(root / "rec.wav")})
        segments, start = {}, 0.5
        for utt, seconds in durations.items():
            segments[utt] = f"rec {start:.2f} {start + seconds:.2f}"
            start += seconds
        write_table(data / "segments", segments)
    else:
        wavs = {}
        for utt, seconds in durations.items():
            wavs[utt] = str(root / f"{utt}.wav")
            audio = (0.2 * rng.standard_normal(round(seconds * rate))).astype(np.float32)
            sf.write(wavs[utt], audio, rate, subtype=subtype)
        write_table(data / "wav.scp", wavs)
    write_table(data / "utt2dur", {u: f"{s:.2f}" for u, s in durations.items()})
    return data


KINDS = ["pcm16", "resampled", "segments"]


@pytest.mark.parametrize("kind", KINDS)
def test_an_item_opens_its_file_once(tmp_path, monkeypatch, kind):
    """A DINO-like item (2 + 4 crops) opens its file exactly once, and by no other route."""
    dataset = CropDataset(make_data_dir(tmp_path, kind), DINO_LIKE, seed=0, sample_rate=RATE)
    opened: list[str] = []
    real = sf.SoundFile

    def counting(path, *args, **kwargs):
        opened.append(str(path))
        return real(path, *args, **kwargs)

    def refused(*args, **kwargs):
        raise AssertionError("the crops must be read through the one open file")

    monkeypatch.setattr(sf, "SoundFile", counting)
    monkeypatch.setattr(sf, "read", refused)
    monkeypatch.setattr(sf, "info", refused)
    for index in range(len(dataset)):
        opened.clear()
        groups, _, _ = dataset[(0, index)]
        assert len(opened) == 1
        assert [(tuple(g.shape), g.dtype) for g in groups] == [
            ((2, RATE), torch.int16),
            ((4, RATE // 2), torch.int16),
        ]


@pytest.mark.parametrize("kind", KINDS)
def test_items_are_the_per_crop_reads_as_int16(tmp_path, kind):
    """Each crop is what read_crop gives for the start drawn as before (group after group,
    crop after crop, from the same generator); int16 is that float32 crop rounded to the
    nearest 2**-15 (16-bit files at the training rate: exactly)."""
    data = make_data_dir(tmp_path, kind)
    as_int16 = CropDataset(data, DINO_LIKE, seed=5, sample_rate=RATE)
    as_float = CropDataset(data, DINO_LIKE, seed=5, sample_rate=RATE, dtype=torch.float32)
    assert as_int16.item_bytes() * 2 == as_float.item_bytes() == 4 * (2 * RATE + 4 * RATE // 2)
    for epoch, index in [(0, 0), (0, 3), (2, 1)]:
        rng = np.random.default_rng((5, epoch, index))
        utt = as_float.utts[index]
        floats, _, _ = as_float[(epoch, index)]
        ints, _, _ = as_int16[(epoch, index)]
        for group, group16, (count, samples) in zip(floats, ints, DINO_LIKE, strict=True):
            for crop in range(count):
                start = int(rng.integers(max(1, as_float.num_samples[index] - samples)))
                expected = read_crop(as_float.sources[utt], start, samples, sample_rate=RATE)
                np.testing.assert_array_equal(group[crop].numpy(), expected)
            back = crops_to_device(group16, torch.device("cpu"))
            assert back.dtype == torch.float32
            if kind == "pcm16" or kind == "segments":
                assert torch.equal(back, group)
            else:
                assert float((back - group).abs().max()) <= 0.5 / INT16_SCALE
    with pytest.raises(ValueError, match="int16 or float32"):
        CropDataset(data, DINO_LIKE, seed=5, sample_rate=RATE, dtype=torch.float64)


def test_crops_to_device_converts_int16_and_keeps_float():
    ints = torch.tensor([[-32768, -1, 0, 1, 16384, 32767]], dtype=torch.int16)
    got = crops_to_device(ints, torch.device("cpu"))
    assert got.dtype == torch.float32
    assert got.tolist() == [[-1.0, -(2**-15), 0.0, 2**-15, 0.5, 1 - 2**-15]]
    floats = torch.randn(2, 3, 5)
    assert crops_to_device(floats, torch.device("cpu")) is floats  # used as it is


def test_workers_deliver_the_items(tmp_path):
    """Through loader workers (shared memory) the batches are the in-process items, int16."""
    dataset = CropDataset(make_data_dir(tmp_path, "pcm16"), DINO_LIKE, seed=0, sample_rate=RATE)
    sampler = GlobalBatchSampler(len(dataset), 2, seed=0)
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=2,
        prefetch_factor=loader_prefetch(2 * dataset.item_bytes(), 2),
    )
    batches = list(loader)
    assert len(batches) == sampler.steps_per_epoch() == 2
    for step, (groups, _, indices) in enumerate(batches):
        assert indices.tolist() == sampler.global_batch_indices(0, step)
        for row, index in enumerate(indices.tolist()):
            for got, expected in zip(groups, dataset[(0, index)][0], strict=True):
                assert got.dtype == torch.int16 and torch.equal(got[row], expected)


def voxceleb_batch_bytes(name: str, world: int = 1) -> tuple[int, int]:
    """(per-rank int16 batch bytes, workers) of a VoxCeleb config, as the trainer sizes them."""
    cfg = load_config(REPO / "egs" / "voxceleb" / "conf" / f"{name}.yaml")
    rate = cfg.features.sample_rate
    crops = [(n, round(s * rate)) for n, s in method_class(cfg).crop_plan(cfg)]
    return cfg.train.batch_size // world * crop_bytes(crops), cfg.train.num_workers


def test_voxceleb_configs_fit_the_shared_memory_budget_at_one_gpu():
    """At one GPU (the whole batch of 256 in one process) both configs stay under 1 GiB of
    /dev/shm, where float32 batches at prefetch 4 took 2 GB (SimCLR) and 8.4 GB (DINO)."""
    assert SHM_BUDGET_BYTES == 2**30
    simclr, workers = voxceleb_batch_bytes("simclr_ntxent")
    dino, dino_workers = voxceleb_batch_bytes("dino_resnet34")
    assert workers == dino_workers == 8
    # 256 utterances x 2 x 2 s, and x (2 x 4 s + 4 x 2 s), of 16 kHz int16.
    assert simclr == 256 * 4 * 16000 * 2 == 32_768_000
    assert dino == 256 * 16 * 16000 * 2 == 131_072_000
    assert prefetch_factor(simclr, workers) == 4
    assert prefetch_factor(dino, workers) == 1
    for batch in (simclr, dino):
        bound = workers * prefetch_factor(batch, workers) * batch
        assert bound == 1_048_576_000 < 2**30  # 0.98 GiB
    assert workers * 4 * 2 * dino > 8 * 10**9  # what float32 at prefetch 4 took
    # More processes: smaller batches per rank, deeper prefetch, still within the budget.
    dino4, _ = voxceleb_batch_bytes("dino_resnet34", world=4)
    assert prefetch_factor(dino4, 8) == 4 and 8 * 4 * dino4 < 2**30


def test_prefetch_is_clamped_and_an_oversized_loader_is_named(caplog):
    assert prefetch_factor(1000, 8) == 4  # small batches: never deeper than 4
    assert prefetch_factor(2**27, 4) == 2
    assert prefetch_factor(2**30, 8) == 1  # over the budget: still 1 (and a warning)
    with pytest.raises(ValueError):
        prefetch_factor(1000, 0)
    with caplog.at_level(logging.INFO, logger="sslsv.train.dataset"):
        assert loader_prefetch(2**27, 4) == 2
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert "at most 1.00 GiB" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sslsv.train.dataset"):
        assert loader_prefetch(2**28, 8, budget_bytes=2**30) == 1
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and "train.num_workers (4 fit)" in warning[0].getMessage()
