"""Training data: random fixed-length crops of each utterance (two for the contrastive
methods, groups of two lengths for DINO's multi-crop, one with its class index for a
classifier), all of an utterance's crops read from one open of its file by seeking
(:func:`sslsv.audio.read_crops`: ``segments`` honoured, resampled to the training rate).

Crops travel from the loader's workers as int16 (half the bytes of float32 through shared
memory and to the device); :func:`crops_to_device` makes them float32 on the device. The
loader's prefetch depth is sized so that its batches in flight fit a shared-memory budget
(:func:`prefetch_factor`).

Every random choice is a pure function of (seed, epoch, utterance index), so crops do not
depend on worker assignment and a resumed run reproduces an uninterrupted one exactly.

Before training, :func:`check_training_audio` reads every utterance's audio header (not the
audio), so that a bad file stops training at its start, named, rather than hours in.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from sslsv.audio import (
    INT16_SCALE,
    AudioSource,
    default_jobs,
    describe_source,
    probe_audio_files,
    read_crops,
)
from sslsv.datadir.io import read_audio_sources
from sslsv.devices import upload
from sslsv.errors import ConfigError, DataError
from sslsv.fileio import atomic_write, kaldi_sort_key, read_dict

log = logging.getLogger(__name__)

#: Above this fraction of bad (unreadable, empty) training utterances training refuses; at
#: or below it they are left out with a warning. The same limit as data preparation's default
#: ``--max-bad-fraction``.
MAX_BAD_FRACTION = 0.01
#: How far (seconds) a segment may end past the end of its recording: segment times are
#: often rounded to 10 ms (Kaldi's ``extract-segments`` tolerates 0.5 s, and truncates).
SEGMENT_OVERSHOOT = 0.05
#: Bad files named in the error message; all of them are in the written list.
SHOWN_BAD = 5
#: Shared memory (/dev/shm) the loader's batches in flight may take per process: a default
#: container's 64 MiB is not enough anyway, and 1 GiB holds the VoxCeleb configs' batches
#: (256 utterances, 8 workers) at one GPU.
SHM_BUDGET_BYTES = 2**30
#: The deepest prefetch used (batches per worker): more only costs memory.
MAX_PREFETCH = 4
#: The crop sample types a dataset can yield, as numpy reads them.
_NUMPY_DTYPES = {torch.int16: np.int16, torch.float32: np.float32}


class CropDataset(Dataset):
    """Item ``(epoch, index)`` -> (crops, class index, index).

    ``crops`` (``[(count, samples), ...]``) asks for ``count`` random crops of ``samples``
    per group: ``[(2, L)]`` for the contrastive methods, ``[(1, L)]`` for a classifier,
    ``[(2, 4 s), (4, 2 s)]`` for DINO's global and local crops. The item's crops are a list
    of (count, samples) tensors of ``dtype``, one per group; every crop starts at its own
    random offset. int16 (the default, for the trainer) is the float32 samples times
    :data:`~sslsv.audio.INT16_SCALE`, rounded: 16-bit files exactly, others to within
    2**-16 of full scale (about -96 dBFS); :func:`crops_to_device` converts back. With
    ``labels``, the class index is that of the utterance's speaker in ``utt2spk``
    (speakers numbered in C order, :attr:`classes`); without, it is -1.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        crops: Sequence[tuple[int, int]],
        seed: int,
        sample_rate: int,
        labels: bool = False,
        dtype: torch.dtype = torch.int16,
    ) -> None:
        if dtype not in _NUMPY_DTYPES:
            raise ValueError(f"crops are int16 or float32, not {dtype}")
        data_dir = Path(data_dir)
        self.sources = read_audio_sources(data_dir)
        self.utts = list(self.sources)
        durations = read_dict(data_dir / "utt2dur")
        missing = [u for u in self.utts if u not in durations]
        if missing:
            raise DataError(f"{data_dir}/utt2dur: no duration for {missing[:5]}")
        self.num_samples = [int(float(durations[u]) * sample_rate) for u in self.utts]
        self.crops = [(int(count), int(samples)) for count, samples in crops]
        self.sample_rate = sample_rate
        self.seed = seed
        self.dtype = dtype
        self.classes: list[str] = []
        self.utt_labels: dict[str, int] = {}
        if labels:
            utt2spk = read_dict(data_dir / "utt2spk")
            unlabelled = [u for u in self.utts if u not in utt2spk]
            if unlabelled:
                raise DataError(f"{data_dir}/utt2spk: no speaker for {unlabelled[:5]}")
            self.classes = sorted({utt2spk[u] for u in self.utts}, key=kaldi_sort_key)
            index = {c: i for i, c in enumerate(self.classes)}
            self.utt_labels = {u: index[utt2spk[u]] for u in self.utts}

    def exclude(self, utts: Collection[str]) -> None:
        """Leave ``utts`` out (bad audio); the others keep their order (and their class
        indices). Indices change, so call this before a sampler is built on the dataset."""
        drop = set(utts)
        if not drop:
            return
        keep = [i for i, u in enumerate(self.utts) if u not in drop]
        self.utts = [self.utts[i] for i in keep]
        self.num_samples = [self.num_samples[i] for i in keep]
        self.sources = {u: self.sources[u] for u in self.utts}

    def __len__(self) -> int:
        return len(self.utts)

    def item_bytes(self) -> int:
        """Bytes of one item's crops (all groups)."""
        return crop_bytes(self.crops, self.dtype)

    def __getitem__(self, item: tuple[int, int]) -> tuple[list[torch.Tensor], int, int]:
        epoch, index = item
        rng = np.random.default_rng((self.seed, epoch, index))
        utt = self.utts[index]
        # Starts drawn group after group, crop after crop (the order fixes the crops).
        spans = [
            (int(rng.integers(max(1, self.num_samples[index] - samples))), samples)
            for count, samples in self.crops
            for _ in range(count)
        ]
        # One open of the file for all the crops (DINO: 6), not one per crop.
        crops = read_crops(
            self.sources[utt],
            spans,
            sample_rate=self.sample_rate,
            utt=utt,
            dtype=_NUMPY_DTYPES[self.dtype],
        )
        groups, first = [], 0
        for count, _ in self.crops:
            groups.append(torch.from_numpy(np.stack(crops[first : first + count])))
            first += count
        return groups, self.utt_labels.get(utt, -1), index


def crop_bytes(crops: Sequence[tuple[int, int]], dtype: torch.dtype = torch.int16) -> int:
    """Bytes of one utterance's crops for a crop plan ``[(count, samples), ...]``."""
    return sum(count * samples for count, samples in crops) * dtype.itemsize


def crops_to_device(crops: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch of crops on ``device`` as float32 samples: int16 ones (:class:`CropDataset`)
    are uploaded as int16 (half the bytes) and converted there; float ones are used as
    they are. Exact: int16 -> float32 and the power-of-two scale lose nothing."""
    crops = upload(crops, device)
    if crops.dtype == torch.int16:
        return crops.float().mul_(1.0 / INT16_SCALE)
    return crops


def prefetch_factor(
    batch_bytes: int, num_workers: int, budget_bytes: int = SHM_BUDGET_BYTES
) -> int:
    """Batches each loader worker prepares ahead: as many as fit ``budget_bytes`` of shared
    memory with every worker's batches in flight (``num_workers`` x prefetch x
    ``batch_bytes``), at least 1 and at most :data:`MAX_PREFETCH`."""
    if num_workers < 1:
        raise ValueError("prefetch needs loader workers (without, DataLoader takes None)")
    return max(1, min(MAX_PREFETCH, budget_bytes // (num_workers * max(1, batch_bytes))))


def loader_prefetch(
    batch_bytes: int, num_workers: int, budget_bytes: int = SHM_BUDGET_BYTES
) -> int:
    """:func:`prefetch_factor`, logging the shared memory the loader's workers may then hold,
    and warning when even one batch per worker is over the budget."""
    factor = prefetch_factor(batch_bytes, num_workers, budget_bytes)
    bound = num_workers * factor * batch_bytes
    gib = 2**30
    log.info(
        "data loader: %d workers x prefetch %d x %.1f MiB batches: at most %.2f GiB of shared "
        "memory (/dev/shm) in flight per process (budget %.2f GiB)",
        num_workers, factor, batch_bytes / 2**20, bound / gib, budget_bytes / gib,
    )  # fmt: skip
    if bound > budget_bytes:
        fitting = budget_bytes // batch_bytes
        log.warning(
            "data loader: one %.1f MiB batch per worker already needs %.2f GiB of shared "
            "memory, over the %.2f GiB budget; a small /dev/shm fails with 'Bus error': "
            "lower train.num_workers (%d fit) or enlarge /dev/shm (docker --shm-size)",
            batch_bytes / 2**20, bound / gib, budget_bytes / gib, fitting,
        )  # fmt: skip
    return factor


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

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng((self.seed, epoch, 7)).permutation(self.size)

    def global_batch_indices(self, epoch: int, step: int) -> list[int]:
        """Dataset indices of the whole global batch ``step`` of ``epoch`` (every rank's
        share): to name the utterances of a batch that went wrong."""
        begin = step * self.global_batch
        return [int(i) for i in self._permutation(epoch)[begin : begin + self.global_batch]]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        perm = self._permutation(self.epoch)
        local = self.global_batch // self.world
        for step in range(self.start_step, self.steps_per_epoch()):
            begin = step * self.global_batch + self.rank * local
            yield [(self.epoch, int(i)) for i in perm[begin : begin + local]]


# ----------------------------------------------------------------------------- data check


def find_bad_audio(
    sources: dict[str, AudioSource], nj: int | None = None
) -> list[tuple[str, str, str]]:
    """``(utterance, why, where)`` of each utterance whose audio cannot be trained on.

    Reads headers only (no decoding), ``nj`` processes (default: the CPUs, at most 8), each
    recording once however many segments it has: a check that costs seconds, not hours,
    on a million utterances. Bad: an unreadable or empty file, a segment that starts at or
    after its recording's end, or ends more than :data:`SEGMENT_OVERSHOOT` past it.
    """
    paths = list(dict.fromkeys(s.path for s in sources.values()))
    infos = dict(zip(paths, probe_audio_files(paths, nj or default_jobs())))
    bad = []
    for utt, source in sources.items():
        info = infos[source.path]
        duration = info.frames / info.sample_rate if info.sample_rate else 0.0
        if info.error:
            why = f"unreadable: {info.error}"
        elif info.frames == 0:
            why = "empty: 0 samples"
        elif source.start >= duration:
            why = f"empty: the segment starts after its recording ends ({duration:g} s)"
        elif source.end is not None and source.end > duration + SEGMENT_OVERSHOOT:
            why = f"the segment reaches past its recording's end ({duration:g} s)"
        else:
            continue
        bad.append((utt, why, describe_source(source)))
    return bad


def check_training_audio(
    sources: dict[str, AudioSource], report: Path, nj: int | None = None
) -> list[str]:
    """The utterances to leave out of training for bad audio (:func:`find_bad_audio`).

    Every bad one is listed in ``report`` (``utt<TAB>why<TAB>where``, as data preparation lists the
    files it excludes); a stale list from an earlier run is removed when none is bad. More
    than :data:`MAX_BAD_FRACTION` bad: a :class:`DataError` naming the first few (the data
    dir needs fixing, not training around); otherwise a warning, and training goes on
    without them.
    """
    bad = find_bad_audio(sources, nj)
    if not bad:
        report.unlink(missing_ok=True)
        return []
    with atomic_write(report) as f:
        f.writelines(f"{u}\t{why}\t{where}\n" for u, why, where in bad)
    shown = "\n  ".join(f"{where}: {why}" for _, why, where in bad[:SHOWN_BAD])
    more = f"\n  ... ({len(bad) - SHOWN_BAD} more)" if len(bad) > SHOWN_BAD else ""
    if len(bad) > MAX_BAD_FRACTION * len(sources):
        raise DataError(
            f"{len(bad)} of {len(sources)} training utterances have unreadable or empty audio, "
            f"more than {MAX_BAD_FRACTION:g} of them; fix the data dir (data preparation "
            f"leaves such files out) and rerun. All are listed in {report}:\n  {shown}{more}"
        )
    log.warning(
        "leaving %d of %d training utterances out for bad audio (listed in %s):\n  %s%s",
        len(bad),
        len(sources),
        report,
        shown,
        more,
    )
    return [u for u, _, _ in bad]
