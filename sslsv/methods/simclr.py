"""SimCLR: two views of each utterance, negatives from the whole (global) batch."""

from __future__ import annotations

import torch
from torch import nn

from sslsv import distributed
from sslsv.config.schema import Config
from sslsv.losses import nt_xent_am_with_accuracy
from sslsv.methods import make_projector, register_method
from sslsv.models.embedding import EmbeddingModel


@register_method("simclr")
class SimCLR(nn.Module):
    def __init__(self, cfg: Config, model: EmbeddingModel) -> None:
        super().__init__()
        self.loss_cfg = cfg.loss
        self.model = model
        self.projector = make_projector(model.embed_dim, cfg.method.projector)

    def forward(
        self, feats: torch.Tensor, margin: float, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict]:
        """``feats``: (B, 2, n_mels, T) log-mels of two views -> (loss, metrics)."""
        batch = feats.shape[0]
        # One encoder pass over both views, so batch norm sees them together.
        z = self.projector(self.model.forward_features(feats.transpose(0, 1).flatten(0, 1)))
        z1, z2 = z[:batch], z[batch:]
        loss, accuracy = nt_xent_am_with_accuracy(
            z1,
            z2,
            scale=self.loss_cfg.scale,
            margin=margin,
            symmetric=self.loss_cfg.symmetric,
            offset=distributed.rank() * batch,
            z1_all=distributed.gather_with_grad(z1),
            z2_all=distributed.gather_with_grad(z2),
        )
        return loss, {"accuracy": accuracy}
