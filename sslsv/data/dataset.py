"""Training data: two random fixed-length crops per utterance, read by seeking.

Every random choice is a pure function of (seed, epoch, utterance index), so crops do not
depend on worker assignment and a resumed run reproduces an uninterrupted one exactly.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset, Sampler

from sslsv.data.datadir import read_wav_scp
from sslsv.fileio import DataError, read_dict

#: The rate every reader returns; files at other rates (imported with --allow-resample,
#: recorded in utt2sr) are resampled on read.
SAMPLE_RATE = 16000


@functools.lru_cache(maxsize=8)
def _resampler(rate: int, target: int) -> torch.nn.Module:
    # The transform keeps its filter bank, which costs as much to build as to apply.
    import torchaudio.transforms

    return torchaudio.transforms.Resample(rate, target)


def _resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Band-limited (windowed-sinc, torchaudio's defaults) resampling of a 1-D signal."""
    signal = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    with torch.no_grad():
        return _resampler(rate, target)(signal).numpy()


def _resample_context(rate: int, target: int) -> tuple[int, int, int]:
    """(native block, target block, context blocks) for reading a span and resampling it.

    After reduction by the gcd, ``native`` input samples make exactly ``target`` output
    samples; a read that starts on a block boundary therefore lines up with the whole-file
    result, and ``context`` blocks either side cover the resampling filter (torchaudio's
    default: 6 zero crossings at 0.99 of the lower Nyquist), so a crop equals the matching
    slice of the resampled file.
    """
    g = math.gcd(rate, target)
    native, out = rate // g, target // g
    filter_width = math.ceil(6 * native / (min(native, out) * 0.99))
    return native, out, -(-(filter_width + native + 1) // native)


def read_crop(
    path: str, start: int, length: int, utt: str = "", *, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """``length`` samples from ``start`` (first channel), looped when the file is short.

    ``start`` and ``length`` count samples at ``sample_rate``; a file at another rate is read
    over the same time span (plus filter context) and resampled.
    """
    try:
        with sf.SoundFile(path) as f:
            total = f.frames
            if total == 0:
                raise DataError(f"utterance {utt!r}: {path} is empty")
            rate = f.samplerate
            if rate == sample_rate:
                if total <= length:
                    audio = f.read(dtype="float32", always_2d=True)[:, 0]
                    return np.resize(audio, length)
                f.seek(min(start, total - length))
                return f.read(length, dtype="float32", always_2d=True)[:, 0]
            total_out = total * sample_rate // rate
            if total_out <= length:
                audio = f.read(dtype="float32", always_2d=True)[:, 0]
                return np.resize(_resample(audio, rate, sample_rate)[:total_out], length)
            start = min(start, total_out - length)
            native, out, context = _resample_context(rate, sample_rate)
            first = max(0, start // out - context)
            last = min(-(-total // native), -(-(start + length) // out) + context)
            f.seek(first * native)
            span = f.read(
                min(total, last * native) - first * native, dtype="float32", always_2d=True
            )
            offset = start - first * out
            return _resample(span[:, 0], rate, sample_rate)[offset : offset + length]
    except sf.LibsndfileError as e:
        raise DataError(f"utterance {utt!r}: cannot read {path}: {e}") from None


def read_audio(path: str, utt: str = "", *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A whole file, first channel, float32, at ``sample_rate`` (resampled when the file is not)."""
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise DataError(f"utterance {utt!r}: cannot read {path}: {e}") from None
    audio = audio[:, 0]
    if rate != sample_rate and audio.size:
        # Same length rule as read_crop: the output samples that fall inside the file.
        frames = audio.size
        audio = _resample(audio, rate, sample_rate)
        audio = audio[: frames * sample_rate // rate]
    return audio


class CropPairDataset(Dataset):
    """Item ``(epoch, index)`` -> (2, crop_samples) float32 tensor of two random crops."""

    def __init__(
        self, data_dir: str | os.PathLike, crop_samples: int, seed: int, sample_rate: int = 16000
    ) -> None:
        data_dir = Path(data_dir)
        self.wavs = read_wav_scp(data_dir / "wav.scp")
        self.utts = list(self.wavs)
        durations = read_dict(data_dir / "utt2dur")
        missing = [u for u in self.utts if u not in durations]
        if missing:
            raise DataError(f"{data_dir}/utt2dur: no duration for {missing[:5]}")
        self.num_samples = [int(float(durations[u]) * sample_rate) for u in self.utts]
        self.crop_samples = crop_samples
        self.seed = seed

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, item: tuple[int, int]) -> torch.Tensor:
        epoch, index = item
        rng = np.random.default_rng((self.seed, epoch, index))
        span = max(1, self.num_samples[index] - self.crop_samples)
        utt = self.utts[index]
        crops = [
            read_crop(self.wavs[utt], int(rng.integers(span)), self.crop_samples, utt)
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
            raise ValueError(f"train.batch_size {global_batch} not divisible by {world} processes")
        if size < global_batch:
            raise ValueError(
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
