"""Training data: two random fixed-length crops per utterance, read by seeking
(:func:`sslsv.audio.read_crop`: ``segments`` honoured, resampled to the training rate).

Every random choice is a pure function of (seed, epoch, utterance index), so crops do not
depend on worker assignment and a resumed run reproduces an uninterrupted one exactly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from sslsv.audio import read_crop
from sslsv.datadir.io import read_audio_sources
from sslsv.errors import ConfigError, DataError
from sslsv.fileio import read_dict


class CropPairDataset(Dataset):
    """Item ``(epoch, index)`` -> (2, crop_samples) float32 tensor of two random crops."""

    def __init__(
        self, data_dir: str | os.PathLike, crop_samples: int, seed: int, sample_rate: int
    ) -> None:
        data_dir = Path(data_dir)
        self.sources = read_audio_sources(data_dir)
        self.utts = list(self.sources)
        durations = read_dict(data_dir / "utt2dur")
        missing = [u for u in self.utts if u not in durations]
        if missing:
            raise DataError(f"{data_dir}/utt2dur: no duration for {missing[:5]}")
        self.num_samples = [int(float(durations[u]) * sample_rate) for u in self.utts]
        self.crop_samples = crop_samples
        self.sample_rate = sample_rate
        self.seed = seed

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, item: tuple[int, int]) -> torch.Tensor:
        epoch, index = item
        rng = np.random.default_rng((self.seed, epoch, index))
        span = max(1, self.num_samples[index] - self.crop_samples)
        utt = self.utts[index]
        crops = [
            read_crop(
                self.sources[utt],
                int(rng.integers(span)),
                self.crop_samples,
                sample_rate=self.sample_rate,
                utt=utt,
            )
            for _ in range(2)
        ]
        return torch.from_numpy(np.stack(crops))


class GlobalBatchSampler(Sampler):
    """This rank's share of each global batch of a seeded per-epoch shuffle.

    Batch ``step`` of an epoch is ``perm[step * B:(step + 1) * B]`` for global batch size B
    whatever the number of ranks; rank r takes its contiguous ``B / world`` slice. Iteration
    starts at ``start_step`` so that a resumed epoch continues where it stopped.
    """

    def __init__(
        self, size: int, global_batch: int, seed: int, rank: int = 0, world: int = 1
    ) -> None:
        if global_batch % world:
            raise ConfigError(
                f"train.batch_size {global_batch} is not divisible by the {world} processes"
            )
        if size < global_batch:
            raise DataError(
                f"train.batch_size {global_batch} is larger than the training set ({size} utts)"
            )
        self.size, self.global_batch, self.seed = size, global_batch, seed
        self.rank, self.world = rank, world
        self.epoch, self.start_step = 0, 0

    def steps_per_epoch(self) -> int:
        return self.size // self.global_batch

    def set_position(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = epoch, start_step

    def __len__(self) -> int:
        return self.steps_per_epoch() - self.start_step

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        perm = np.random.default_rng((self.seed, self.epoch, 7)).permutation(self.size)
        local = self.global_batch // self.world
        for step in range(self.start_step, self.steps_per_epoch()):
            begin = step * self.global_batch + self.rank * local
            yield [(self.epoch, int(i)) for i in perm[begin : begin + local]]
