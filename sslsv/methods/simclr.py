"""SimCLR: two views of each utterance, negatives from the whole (global) batch, and the
NT-Xent-AM loss (:func:`sslsv.losses.nt_xent_am`): scaled cosines with an additive margin
subtracted from the positive pair, ramped in over ``margin_warmup`` of training.

With ``method.ssps.enabled`` (:mod:`sslsv.methods.ssps`) an anchor's positive, once sampling
has started, is the stored second-view projection of another utterance of its cluster; the
reference embedding that places it is the encoder embedding of its first view."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from sslsv import distributed
from sslsv.config.schema import Config, checked
from sslsv.losses import nt_xent_am
from sslsv.methods.base import (
    AdditiveMarginConfig,
    Method,
    Metrics,
    StepInfo,
    make_projector,
    register_method,
)
from sslsv.methods.ssps import PositiveSampler, SSPSConfig
from sslsv.models.embedding import EmbeddingModel


@dataclass
class SimCLRConfig(AdditiveMarginConfig):
    name: str = "simclr"
    # Hidden/out sizes of an optional MLP projector; empty means none (the paper's SimCLR).
    projector: list[int] = checked(factory=list, minimum=1)
    # NT-Xent-AM (scale, margin, margin_warmup: AdditiveMarginConfig). Symmetric: both
    # views are anchors against both views.
    symmetric: bool = True
    ssps: SSPSConfig = field(default_factory=SSPSConfig)


@register_method("simclr")
class SimCLR(Method):
    config_class = SimCLRConfig

    def __init__(self, cfg: Config, model: EmbeddingModel, num_classes: int = 0) -> None:
        super().__init__(cfg, model, num_classes)
        self.cfg: SimCLRConfig = cfg.method
        self.projector = make_projector(model.embed_dim, self.cfg.projector)
        self.ssps = None
        if self.cfg.ssps.enabled:
            out_dim = self.cfg.projector[-1] if self.cfg.projector else model.embed_dim
            self.ssps = PositiveSampler(self.cfg.ssps, model.embed_dim, out_dim, cfg.train.seed)

    def forward(
        self,
        feats: torch.Tensor,
        labels: torch.Tensor | None = None,
        info: StepInfo | None = None,
    ) -> tuple[torch.Tensor, Metrics]:
        """``feats``: (B, 2, n_mels, T) log-mels of two views -> (loss, metrics)."""
        info = info or StepInfo()
        batch = feats.shape[0]
        # One encoder pass over both views, so batch norm sees them together.
        embeddings = self.model.forward_features(feats.transpose(0, 1).flatten(0, 1))
        z = self.projector(embeddings)
        z1, z2 = z[:batch], z[batch:]
        if self.ssps is not None and info.indices is not None:
            ref = embeddings[:batch].detach()
            if self.ssps.active(info.progress):
                pos, found = self.ssps.sample(info.indices, ref, info.epoch, info.global_step)
                z2 = torch.where(found[:, None], pos, z2.float())  # the loss is float32
            self.ssps.enqueue(info.indices, ref, z[batch:].detach())
        margin = self.cfg.margin_at(info.progress)
        loss, accuracy = nt_xent_am(
            z1,
            z2,
            scale=self.cfg.scale,
            margin=margin,
            symmetric=self.cfg.symmetric,
            offset=distributed.rank() * batch,
            z1_all=distributed.gather_with_grad(z1),
            z2_all=distributed.gather_with_grad(z2),
        )
        return loss, {"accuracy": accuracy, "margin": margin}
