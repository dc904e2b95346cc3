"""Extraction's engine: utterances of a data dir -> one embedding each, in batches.

Two protocols:

- full utterances (``crop_seconds: 0``, the default): each utterance goes through the model
  whole, one at a time (lengths differ, and padding would change the result);
- evenly spaced crops (``crop_seconds > 0``): ``num_crops`` crops of ``crop_seconds``, the
  first at the start of the utterance and the last at its end (a shorter utterance is looped
  to the crop length), as the reference sslsv toolkit evaluates (6 crops there). The
  embedding is the mean of the L2-normalised crop embeddings, whose dot products are the
  mean crop-pair cosines. The crops of ``batch_size // num_crops`` utterances share one
  forward pass: the path that keeps a GPU busy.

DataLoader workers read the audio (or stored features) and stack the batches ahead of the
model, in data-dir order; log-mels from audio are computed on the model's device. Whole
utterances run with cuDNN autotuning off (each new length would be tuned again).

Devices: :func:`job_device` places job ``j`` of ``--nj`` on a GPU (the device names
themselves are checked by :func:`sslsv.devices.check_device`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from sslsv.arkio import read_matrix
from sslsv.audio import is_silent, read_audio
from sslsv.config.schema import ExtractConfig
from sslsv.datadir.io import read_audio_sources
from sslsv.devices import DeviceError, cudnn_benchmark, upload
from sslsv.errors import DataError
from sslsv.fileio import read_dict
from sslsv.inputs import check_length
from sslsv.models.embedding import EmbeddingModel


def job_device(device: str, job: int, nj: int, device_count: int) -> str:
    """The device of job ``job`` (1-based) of ``nj``: with ``device`` "cuda", the visible
    GPUs in turn (job j on ``cuda:(j-1) mod device_count``), so that ``nj`` jobs spread
    over every GPU instead of all starting a CUDA context on GPU 0; any other device as
    it is."""
    if not 1 <= job <= nj:
        raise ValueError(f"job {job} is not one of 1..{nj}")
    if device != "cuda":
        return device
    if device_count < 1:
        raise DeviceError("--device cuda: no CUDA device visible here; use --device cpu")
    return f"cuda:{(job - 1) % device_count}"


def crop_starts(length: int, crop: int, num_crops: int) -> list[int]:
    """Evenly spaced starts of ``num_crops`` crops of ``crop`` samples (or frames) over
    ``length``: the first at 0, the last ending at the end, the others rounded down (exact
    integer arithmetic); a single crop is centred; all 0 when the signal is too short."""
    slack = max(0, length - crop)
    if num_crops == 1:
        return [slack // 2]
    return [i * slack // (num_crops - 1) for i in range(num_crops)]


def take_crops(signal: np.ndarray, crop: int, num_crops: int) -> np.ndarray:
    """(..., T) -> (num_crops, ..., crop): evenly spaced crops along the last axis, the
    signal looped (repeated from its start) when it is shorter than one crop."""
    if signal.shape[-1] < crop:
        reps = -(-crop // signal.shape[-1])
        signal = np.concatenate([signal] * reps, axis=-1)[..., :crop]
    starts = crop_starts(signal.shape[-1], crop, num_crops)
    return np.stack([signal[..., s : s + crop] for s in starts])


class UtteranceSource(Dataset):
    """Item i -> (utt, array): the model's input for utterance i of a data dir.

    From the audio (``wav.scp``, and ``segments`` when present), at the model's sample
    rate: a waveform (1, L) or crops (n, crop_samples). From ``feats.scp``: raw log-mels
    (1, n_mels, T) or frame crops (n, n_mels, crop_frames). ``utts``, when given, keeps only
    those utterances (still in data-dir order).
    """

    def __init__(
        self,
        data_dir: Path,
        use_feats: bool,
        options: ExtractConfig,
        model: EmbeddingModel,
        utts: Collection[str] | None = None,
    ) -> None:
        self.feats_scp = data_dir / "feats.scp"
        if use_feats:
            self.items = list(read_dict(self.feats_scp).items())
        else:
            self.items = list(read_audio_sources(data_dir).items())
        if utts is not None:
            self.items = [item for item in self.items if item[0] in utts]
        self.use_feats, self.options = use_feats, options
        self.front_end = model.fbank.cfg
        self.sample_rate = self.front_end.sample_rate
        crop_samples = round(options.crop_seconds * self.sample_rate)
        if options.crop_seconds:
            # Before any utterance: every crop would end in torch's padding error otherwise.
            check_length(
                crop_samples, self.front_end, f"{data_dir}: crop_seconds {options.crop_seconds:g}"
            )
        self.crop = model.fbank.num_frames(crop_samples) if use_feats else crop_samples

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[str, torch.Tensor, bool]:
        """(utterance, model input, whether its audio is digitally silent)."""
        utt, source = self.items[index]
        if self.use_feats:
            signal = np.asarray(read_matrix(source, self.feats_scp, utt), dtype=np.float32).T
            silent = False  # feature computation flagged it
        else:
            signal = read_audio(source, sample_rate=self.sample_rate, utt=utt)
            silent = is_silent(signal)
        if signal.shape[-1] == 0:
            raise DataError(f"utterance {utt!r}: {getattr(source, 'path', source)} is empty")
        # The API's rule (sslsv.inputs): also for crops, which would loop a few samples.
        where = f"utterance {utt!r} ({getattr(source, 'path', source)})"
        check_length(signal.shape[-1], self.front_end, where, frames=self.use_feats)
        if self.options.crop_seconds == 0:
            return utt, torch.from_numpy(np.ascontiguousarray(signal[None])), silent
        crops = torch.from_numpy(take_crops(signal, self.crop, self.options.num_crops))
        return utt, crops, silent


def mean_of_crops(embeddings: torch.Tensor, num_utts: int) -> torch.Tensor:
    """(utterances x crops, D) crop embeddings -> (utterances, D): the mean of the
    L2-normalised crop embeddings of each utterance (the crop protocol's embedding)."""
    return F.normalize(embeddings.float(), dim=-1).unflatten(0, (num_utts, -1)).mean(dim=1)


@torch.inference_mode()
def embed_data_dir(
    model: EmbeddingModel,
    data_dir: Path,
    use_feats: bool,
    device: str | torch.device,
    writer: Callable[[str, np.ndarray], None],
    options: ExtractConfig | None = None,
    silent: list[str] | None = None,
    utts: Collection[str] | None = None,
) -> int:
    """Write one embedding per utterance of ``data_dir`` through ``writer``, in order.

    ``use_feats``: read ``feats.scp`` (raw log-mels as sslsv.bin.compute_features writes
    them) instead of computing log-mels from ``wav.scp``. Digitally silent utterances are
    appended to ``silent`` when given. ``utts``, when given, embeds only those utterances of
    the data dir (a set, for fast membership tests). Returns the number of utterances.

    Whole utterances (``crop_seconds`` 0) run with cuDNN autotuning off, whatever the
    caller set (the trainer turns it on for its fixed-size crops); crops keep the caller's
    setting.
    """
    options = options or ExtractConfig()
    device = torch.device(device)
    source = UtteranceSource(Path(data_dir), use_feats, options, model, utts)
    full = options.crop_seconds == 0
    # Crops: every utterance has ``num_crops``, so a batch is a whole number of utterances,
    # stacked by the workers (into shared memory) rather than by this process.
    loader = DataLoader(
        source,
        batch_size=None if full else max(1, options.batch_size // options.num_crops),
        num_workers=options.num_workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if options.num_workers > 0 else None,
    )
    count = 0
    with cudnn_benchmark(False) if full else contextlib.nullcontext():
        for utts, x, quiet in loader:
            if full:
                utts, quiet = [utts], [quiet]
            else:
                x = x.flatten(0, 1)  # (utterances x crops, ...)
            if silent is not None:
                silent += [u for u, q in zip(utts, quiet, strict=True) if q]
            x = upload(x, device)
            embeddings = model.forward_features(x) if use_feats else model(x)
            if not full:
                embeddings = mean_of_crops(embeddings, len(utts))
            embeddings = embeddings.float().cpu().numpy()
            for utt, embedding in zip(utts, embeddings, strict=True):
                if not np.isfinite(embedding).all():
                    raise DataError(f"utterance {utt!r}: non-finite embedding (broken audio?)")
                writer(utt, embedding)
            count += len(utts)
    return count
