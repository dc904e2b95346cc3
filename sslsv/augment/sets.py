"""Augmentation sets (noise, babble, music, RIRs) held in memory, read from Kaldi data dirs.

A set is any data dir with ``wav.scp`` (MUSAN and RIRS_NOISES imported by data preparation, or the
simulated sets of ``python -m sslsv.bin.make_aug_sets``); with a ``segments`` file its clips
are the segments. Clips are read through :mod:`sslsv.audio` at the training sample rate.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch

from sslsv.audio import AudioSource, probe_audio_file, read_audio
from sslsv.datadir.io import read_audio_sources
from sslsv.errors import DataError
from sslsv.fileio import kaldi_sort_key


class AugmentationSet:
    """All clips of a data dir in memory, as float32 1-D tensors in ``LC_ALL=C`` id order.

    ``max_seconds`` keeps a subset whose total stays within the cap: clips in a fixed
    pseudo-random order (``seed``), so the subset is the same on every run and spread over
    the whole set rather than its first files.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        sample_rate: int,
        max_seconds: float | None = None,
        seed: int = 0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.sample_rate = sample_rate
        if not (self.data_dir / "wav.scp").is_file():
            raise DataError(f"{self.data_dir}: not a data dir (no wav.scp)")
        items = sorted(
            read_audio_sources(self.data_dir).items(), key=lambda i: kaldi_sort_key(i[0])
        )
        if max_seconds is not None:
            items = self._subset(items, max_seconds, seed)
        self.ids: list[str] = []
        self.clips: list[torch.Tensor] = []
        for clip_id, source in items:
            audio = read_audio(source, sample_rate=sample_rate, utt=clip_id)
            if audio.size == 0:
                raise DataError(f"{self.data_dir}: clip {clip_id!r} ({source.path}) is empty")
            self.ids.append(clip_id)
            self.clips.append(torch.from_numpy(audio))
        if not self.clips:
            raise DataError(f"{self.data_dir}: no audio (wav.scp or segments is empty)")

    def _samples(self, clip_id: str, source: AudioSource) -> int:
        """A clip's length at the set's rate, from the segment times or the file header."""
        rate = self.sample_rate
        start = round(source.start * rate)
        if source.end is not None:
            return round(source.end * rate) - start
        info = probe_audio_file(source.path)
        if info.error:
            raise DataError(
                f"{self.data_dir}: clip {clip_id!r}: cannot read {source.path}: {info.error}"
            )
        return info.frames * rate // info.sample_rate - start

    def _subset(
        self, items: list[tuple[str, AudioSource]], max_seconds: float, seed: int
    ) -> list[tuple[str, AudioSource]]:
        kept, total = [], 0
        for i in np.random.default_rng(seed).permutation(len(items)):
            samples = self._samples(*items[i])
            if total + samples > max_seconds * self.sample_rate:
                continue
            kept.append(items[i])
            total += samples
        if not kept:
            raise DataError(f"{self.data_dir}: every clip is longer than max_seconds={max_seconds}")
        return sorted(kept, key=lambda item: kaldi_sort_key(item[0]))

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def total_seconds(self) -> float:
        return sum(len(c) for c in self.clips) / self.sample_rate


@functools.lru_cache(maxsize=16)
def _load_set_cached(
    data_dir: str, sample_rate: int, max_seconds: float | None, mtime_ns: int
) -> AugmentationSet:
    return AugmentationSet(data_dir, sample_rate, max_seconds)


def load_augmentation_set(
    data_dir: str | os.PathLike, sample_rate: int, max_seconds: float | None = None
) -> AugmentationSet:
    """:class:`AugmentationSet`, loaded once per process (re-read if ``wav.scp`` changes)."""
    data_dir = Path(data_dir).resolve()
    wav_scp = data_dir / "wav.scp"
    if not wav_scp.is_file():
        raise DataError(f"{data_dir}: not a data dir (no wav.scp)")
    return _load_set_cached(str(data_dir), sample_rate, max_seconds, wav_scp.stat().st_mtime_ns)
