"""SimCLR: two views of each utterance, negatives from the whole (global) batch.

With ``method.ssps.enabled`` (:mod:`sslsv.methods.ssps`) an anchor's positive, once sampling
has started, is the stored second-view projection of another utterance of its cluster; the
reference embedding that places it is the encoder embedding of its first view."""

from __future__ import annotations

import torch
from torch import nn

from sslsv import distributed
from sslsv.config.schema import Config
from sslsv.losses import nt_xent_am_with_accuracy
from sslsv.methods import StepInfo, make_projector, register_method
from sslsv.methods.ssps import PositiveSampler
from sslsv.models.embedding import EmbeddingModel


@register_method("simclr")
class SimCLR(nn.Module):
    def __init__(self, cfg: Config, model: EmbeddingModel) -> None:
        super().__init__()
        self.loss_cfg = cfg.loss
        self.model = model
        self.projector = make_projector(model.embed_dim, cfg.method.projector)
        self.ssps = None
        if cfg.method.ssps.enabled:
            out_dim = cfg.method.projector[-1] if cfg.method.projector else model.embed_dim
            self.ssps = PositiveSampler(cfg.method.ssps, model.embed_dim, out_dim, cfg.train.seed)

    def forward(
        self,
        feats: torch.Tensor,
        margin: float,
        labels: torch.Tensor | None = None,
        info: StepInfo | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """``feats``: (B, 2, n_mels, T) log-mels of two views -> (loss, metrics)."""
        batch = feats.shape[0]
        # One encoder pass over both views, so batch norm sees them together.
        embeddings = self.model.forward_features(feats.transpose(0, 1).flatten(0, 1))
        z = self.projector(embeddings)
        z1, z2 = z[:batch], z[batch:]
        if self.ssps is not None and info is not None and info.indices is not None:
            ref = embeddings[:batch].detach()
            if self.ssps.active(info.progress):
                pos, found = self.ssps.sample(info.indices, ref, info.epoch, info.global_step)
                z2 = torch.where(found[:, None], pos, z2.float())  # the loss is float32
            self.ssps.enqueue(info.indices, ref, z[batch:].detach())
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
