"""The training augmenter built from the ``augment:`` config section.

The section is checked (ranges, MUSAN-style defaults per category name) when the config
loads (:mod:`sslsv.config.load`); here its sets are loaded at the training sample rate.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from sslsv.augment.augmenter import Augmenter, NoiseCategory
from sslsv.augment.sets import load_augmentation_set
from sslsv.config.schema import AugmentConfig

log = logging.getLogger(__name__)


def _present(data_dir: str, key: str) -> bool:
    if (Path(data_dir) / "wav.scp").is_file():
        return True
    log.warning("%s: no data dir at %s; not used", key, data_dir)
    return False


def build_augmenter(
    cfg: AugmentConfig,
    sample_rate: int,
    device: torch.device | str | None = None,
    num_samples: int | None = None,
) -> Augmenter | None:
    """The configured augmenter, or None when ``augment.enabled`` is false.

    A noise category or RIR set whose data dir does not exist (say, music when neither MUSAN
    nor music files were given to data preparation) is left out with a warning naming it. With
    ``device`` and ``num_samples`` (the crop length) the sets are laid out on the device now
    (:meth:`Augmenter.prepare`).
    """
    if not cfg.enabled:
        return None
    rirs = None
    if cfg.rir_dir and _present(cfg.rir_dir, "augment.rir_dir"):
        rirs = load_augmentation_set(cfg.rir_dir, sample_rate)
    max_seconds = cfg.max_noise_seconds or None
    categories = [
        NoiseCategory(
            name=name,
            clips=load_augmentation_set(category.data_dir, sample_rate, max_seconds),
            snr_db=tuple(category.snr_db),
            num_sources=tuple(category.num_sources),
            weight=category.weight,
        )
        for name, category in cfg.noise.items()
        if _present(category.data_dir, f"augment.noise.{name}")
    ]
    augmenter = Augmenter(rirs, cfg.rir_prob, categories, cfg.noise_prob)
    if device is not None and num_samples is not None:
        augmenter.prepare(device, num_samples)
    log.info(augmenter.describe())
    return augmenter
