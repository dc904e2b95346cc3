"""Starting the second stage's classifier from its seed model: the seed's encoder (when it
is the same encoder with the same front end) and class centres at the seed's mean embedding
of each pseudo-speaker."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from sslsv.config.load import config_to_dict
from sslsv.config.schema import Config
from sslsv.errors import DataError
from sslsv.models.embedding import EmbeddingModel
from sslsv.train import checkpoint
from sslsv.train.dataset import CropDataset

log = logging.getLogger(__name__)


def start_from_model(model: EmbeddingModel, cfg: Config, path: Path) -> bool:
    """Load the encoder and front end of model file ``path`` into ``model`` when they are
    the same (``encoder`` and ``features`` sections); otherwise keep the random start and
    say why (a ``stats`` seed has no encoder to start from). Returns whether it loaded."""
    try:
        payload = checkpoint.load_safe(path)
    except DataError as e:
        raise DataError(f"--init-model {path}: {e}") from None
    seed_cfg = payload.get("config", {}) if isinstance(payload, dict) else {}
    mine = config_to_dict(cfg)
    different = [k for k in ("encoder", "features") if seed_cfg.get(k) != mine[k]]
    if different:
        log.info(
            "%s: its %s differ from this config's: the encoder starts from random weights",
            path,
            " and ".join(different),
        )
        return False
    model.load_state_dict(payload["model"])
    log.info("encoder initialised from %s", path)
    return True


def class_means(dataset: CropDataset, embeddings: Path) -> torch.Tensor:
    """(classes, D) mean of the L2-normalised embeddings of each class's utterances."""
    from sslsv.arkio import load_embeddings

    _, x = load_embeddings(embeddings, dataset.utts)
    x = torch.nn.functional.normalize(torch.from_numpy(x).double(), dim=1)
    labels = torch.tensor([dataset.utt_labels[u] for u in dataset.utts])
    sums = torch.zeros(len(dataset.classes), x.shape[1], dtype=torch.float64)
    sums.index_add_(0, labels, x)
    return sums / torch.bincount(labels, minlength=len(dataset.classes))[:, None]
