"""MoCo v2-style: momentum key encoder and a queue of negative keys per view.

Queries of each view are scored against the key of the other view (positive, margin
subtracted: NT-Xent-AM, with ``scale``, ``margin`` and ``margin_warmup`` as SimCLR's) and
against that view's queue (negatives); ``symmetric``: both views are queries, else view 1
only. Under DDP the key encoder sees a
batch shuffled across processes (shuffled batch norm) and the queues take the keys of all
processes, so every rank holds the same queue.

With ``method.ssps.enabled`` (:mod:`sslsv.methods.ssps`) both views' positive keys of an
anchor, once sampling has started, are the stored key of another utterance of its cluster,
placed by the anchor's first-view key; the negative queues are unchanged.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from sslsv import distributed
from sslsv.config.schema import Config, checked
from sslsv.devices import at_least_float32, full_precision
from sslsv.losses import margin_logits_loss
from sslsv.methods.base import (
    AdditiveMarginConfig,
    Method,
    Metrics,
    StepInfo,
    ema_update,
    make_projector,
    register_method,
)
from sslsv.methods.ssps import PositiveSampler, SSPSConfig
from sslsv.models.embedding import EmbeddingModel


@dataclass
class MoCoConfig(AdditiveMarginConfig):
    name: str = "moco"
    # Hidden/out sizes of an optional MLP projector; empty means none.
    projector: list[int] = checked(factory=list, minimum=1)
    momentum: float = checked(0.999, minimum=0, maximum=1)  # the key encoder's EMA
    queue_size: int = checked(32768, minimum=1)  # negative keys per view
    # NT-Xent-AM (scale, margin, margin_warmup: AdditiveMarginConfig). Symmetric: both
    # views are anchors against both views.
    symmetric: bool = True
    ssps: SSPSConfig = field(default_factory=SSPSConfig)


@register_method("moco")
class MoCo(Method):
    config_class = MoCoConfig

    def __init__(self, cfg: Config, model: EmbeddingModel, num_classes: int = 0) -> None:
        super().__init__(cfg, model, num_classes)
        mc: MoCoConfig = cfg.method
        self.cfg = mc
        self.momentum = mc.momentum
        self.projector = make_projector(model.embed_dim, mc.projector)
        self.key_model = copy.deepcopy(model).requires_grad_(False)
        self.key_projector = copy.deepcopy(self.projector).requires_grad_(False)
        out_dim = mc.projector[-1] if mc.projector else model.embed_dim
        generator = torch.Generator().manual_seed(cfg.train.seed)
        queue = F.normalize(torch.randn(2, mc.queue_size, out_dim, generator=generator), dim=-1)
        self.register_buffer("queue", queue)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.ssps = None
        if mc.ssps.enabled:
            self.ssps = PositiveSampler(mc.ssps, out_dim, out_dim, cfg.train.seed)

    @torch.no_grad()
    def _update_key_encoder(self) -> None:
        for online, key in (
            (self.model, self.key_model),
            (self.projector, self.key_projector),
        ):
            ema_update(key, online, self.momentum)
            key_buffers = list(key.buffers())
            if key_buffers:
                torch._foreach_copy_(key_buffers, list(online.buffers()))

    @torch.no_grad()
    def _keys(self, feats: torch.Tensor) -> torch.Tensor:
        """Keys of (N, n_mels, T) features, batch-norm statistics shuffled across ranks."""
        local = feats.shape[0]
        everything = distributed.gather_no_grad(feats)
        order = torch.randperm(everything.shape[0], device=feats.device)
        distributed.broadcast_(order)
        mine = order[distributed.rank() * local : (distributed.rank() + 1) * local]
        keys = self.key_projector(self.key_model.forward_features(everything[mine]))
        keys = F.normalize(keys.float(), dim=-1)
        # Undo the shuffle: gather everyone's keys, put them back in global order.
        all_keys = torch.empty(everything.shape[0], keys.shape[1], device=keys.device)
        all_keys[order] = distributed.gather_no_grad(keys)
        return all_keys

    @torch.no_grad()
    def _enqueue(self, keys: list[torch.Tensor]) -> None:
        size = self.queue.shape[1]
        n = keys[0].shape[0]
        idx = (self.queue_ptr + torch.arange(n, device=self.queue.device)) % size
        for view, k in enumerate(keys):
            self.queue[view, idx] = k.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + n) % size)

    def forward(
        self,
        feats: torch.Tensor,
        labels: torch.Tensor | None = None,
        info: StepInfo | None = None,
    ) -> tuple[torch.Tensor, Metrics]:
        """``feats``: (B, 2, n_mels, T) log-mels of two views -> (loss, metrics)."""
        info = info or StepInfo()
        batch = feats.shape[0]
        views = feats.transpose(0, 1)
        queries = self.projector(self.model.forward_features(views.flatten(0, 1)))
        queries = F.normalize(queries, dim=-1)
        q = [queries[:batch], queries[batch:]]
        self._update_key_encoder()
        start = distributed.rank() * batch
        all_keys = [self._keys(views[v]) for v in (0, 1)]
        keys = [k[start : start + batch] for k in all_keys]
        if self.ssps is not None and info.indices is not None:
            own = keys
            if self.ssps.active(info.progress):
                pos, found = self.ssps.sample(info.indices, keys[0], info.epoch, info.global_step)
                keys = [torch.where(found[:, None], pos.to(k.dtype), k) for k in keys]
            self.ssps.enqueue(info.indices, own[0], own[1])
        # Query of view v: positive = key of the other view, negatives = that view's queue.
        pairs = [(0, 1), (1, 0)] if self.cfg.symmetric else [(0, 1)]
        margin = self.cfg.margin_at(info.progress)
        losses, accuracies = [], []
        with full_precision(queries.device.type):  # float32 cosines, also under bf16
            for qv, kv in pairs:
                query = at_least_float32(q[qv])
                positive = (query * keys[kv]).sum(dim=1, keepdim=True)
                negatives = query @ self.queue[kv].clone().T
                cos = torch.cat([positive, negatives], dim=1)
                target = torch.zeros(batch, dtype=torch.long, device=cos.device)
                loss, acc = margin_logits_loss(cos, target, self.cfg.scale, margin, None)
                losses.append(loss)
                accuracies.append(acc)
        self._enqueue(all_keys)
        accuracy = torch.stack(accuracies).mean()
        return torch.stack(losses).mean(), {"accuracy": accuracy, "margin": margin}
