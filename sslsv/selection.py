"""A model selection criterion that reads no label: the split-utterance EER.

Label-free systems are published with checkpoints and rounds chosen on VoxCeleb1-O, that is
with speaker labels. This criterion needs audio only: each utterance of an unlabelled set
gives two crops, one from its first half and one from its second; the two crops of an
utterance are a pair of the same speaker for certain, crops of two utterances almost always
of two speakers. The EER of those pairs, scored by cosine, is the criterion (lower is
better). It never opens ``utt2spk``, ``spk2utt`` or a trial list: only ``wav.scp`` (and
``segments``) through :func:`sslsv.datadir.io.read_audio_sources`.

Beside it, the alignment (mean squared distance of the two crops' unit embeddings) and the
uniformity (log of the mean Gaussian potential over all crop pairs) of Wang and Isola (2020),
the embedding statistics the issue lists as candidates; ``bench/selection_criterion.py``
measures how each ranks checkpoints and rounds against the true EER.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sslsv.audio import read_audio
from sslsv.datadir.io import read_audio_sources
from sslsv.errors import DataError
from sslsv.metrics import compute_eer
from sslsv.models.embedding import EmbeddingModel

#: Seed of the subset of utterances when a set has more than ``max_utts``.
SUBSET_SEED = 0


@dataclass(frozen=True)
class SplitPairs:
    """The two crops of every chosen utterance: (N, 2, samples) float32 waveforms."""

    utts: list[str]
    crops: torch.Tensor


def split_crops(signal: np.ndarray, crop: int) -> np.ndarray:
    """Two crops of ``crop`` samples: the middle of the first half and of the second half
    (disjoint when the utterance is at least two crops long; a half shorter than a crop is
    looped to it)."""
    half = len(signal) // 2
    out = []
    for part in (signal[:half], signal[half:]):
        if len(part) < crop:
            part = np.resize(part, crop) if len(part) else np.zeros(crop, np.float32)
        start = (len(part) - crop) // 2
        out.append(part[start : start + crop])
    return np.stack(out).astype(np.float32)


def read_split_pairs(
    data_dir: str | Path, sample_rate: int, crop_seconds: float, max_utts: int
) -> SplitPairs:
    """The split crops of ``data_dir``'s utterances (a seeded subset of ``max_utts`` when it
    has more, 0: all), from its audio alone."""
    sources = read_audio_sources(data_dir)
    utts = sorted(sources)
    if len(utts) < 2:
        raise DataError(f"{data_dir}: the split-utterance criterion needs 2+ utterances")
    if 0 < max_utts < len(utts):
        chosen = np.random.default_rng(SUBSET_SEED).choice(len(utts), max_utts, replace=False)
        utts = [utts[i] for i in np.sort(chosen)]
    crop = round(crop_seconds * sample_rate)
    crops = [
        split_crops(read_audio(sources[u], sample_rate=sample_rate, utt=u), crop) for u in utts
    ]
    return SplitPairs(utts, torch.from_numpy(np.stack(crops)))


@torch.inference_mode()
def embed_pairs(
    model: EmbeddingModel, pairs: SplitPairs, device: torch.device, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Unit embeddings of the first and of the second crops: two (N, D) arrays; the model's
    train/eval mode is restored."""
    was_training = model.training
    model.eval()
    try:
        flat = pairs.crops.reshape(-1, pairs.crops.shape[-1])
        out = [
            F.normalize(model(chunk.to(device)).float(), dim=1).cpu()
            for chunk in flat.split(batch_size)
        ]
    finally:
        model.train(was_training)
    embeddings = torch.cat(out).reshape(len(pairs.utts), 2, -1).numpy()
    return embeddings[:, 0], embeddings[:, 1]


def criterion(first: np.ndarray, second: np.ndarray) -> dict[str, float]:
    """``split_eer`` (percent) of the same-utterance pairs (targets) against every pair of
    crops of two utterances (non-targets), scored by cosine; ``alignment`` and
    ``uniformity`` (t = 2) of the unit embeddings. Lower is better for all three."""
    n = first.shape[0]
    scores = first @ second.T
    labels = np.eye(n, dtype=bool)
    eer, _ = compute_eer(scores.ravel(), labels.ravel())
    alignment = float(np.mean(np.sum((first - second) ** 2, axis=1)))
    both = np.concatenate([first, second])
    sq = np.maximum(2 - 2 * both @ both.T, 0)
    off = ~np.eye(2 * n, dtype=bool)
    uniformity = float(np.log(np.mean(np.exp(-2 * sq[off]))))
    return {"split_eer": 100.0 * eer, "alignment": alignment, "uniformity": uniformity}


def evaluate(model: EmbeddingModel, pairs: SplitPairs, device: torch.device) -> dict[str, float]:
    """The criterion of ``model`` on ``pairs``."""
    return criterion(*embed_pairs(model, pairs, device))
