"""DINO: self-distillation with no labels (Caron et al., 2021), as the authors' toolkit and
WeSpeaker's ``examples/voxceleb/v3/dino`` apply it to speakers.

A student (encoder + head) and a teacher, an exponential moving average of the student whose
momentum follows a cosine from ``method.momentum`` (the references: 0.996) to
``method.momentum_end`` (1) over training. Each utterance gives 2 global crops
(``train.crop_seconds``) and ``method.local_crops`` local crops
(``method.local_crop_seconds``), each an independent random segment; the teacher sees the
global crops, the student all of them, and the loss is the cross-entropy between the
teacher's centred, sharpened distribution over ``head_out`` prototypes and the student's,
over every pair of different crops (:func:`sslsv.losses.dino_loss`). The centre is a moving
average (``center_momentum``) of the teacher's outputs over the global batch; the teacher
temperature warms up linearly from ``teacher_temperature_start`` to
``teacher_temperature`` over the first ``teacher_temperature_warmup`` of training; the
prototypes (the head's last layer) are not updated during the first
``freeze_last_layer_epochs`` epochs.

The teacher is the model (``self.model``: ``final.pt``, validation, extraction), as in the
authors' toolkit, which embeds with its momentum encoder: the average of the student over
the last steps is the smoother model.

No additive margin: DINO has no positive-pair logit to subtract it from (the nearest
analogue, a margin on the teacher's chosen prototype in the student's logits, is not part
of any reference recipe), so its config has no margin key.

With ``method.ssps.enabled`` (:mod:`sslsv.methods.ssps`), the teacher's first global crop of
an anchor is replaced, once sampling has started, by the stored teacher embedding of a
pseudo-positive utterance: every student crop but that one is then taught by another
utterance of the anchor's cluster. The memory holds teacher encoder embeddings (the head
is applied at use, so a 65,536-prototype output is never stored).

Differences from the references: local crops are independent segments (the authors' code
takes each local crop as the first half of a global-length crop); Adam and the trainer's
step schedule as for the other methods (both references use SGD or AdamW with a cosine
schedule and weight-decay schedules); no gradient clipping.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from sslsv import distributed
from sslsv.config.schema import Config, MethodConfig, checked
from sslsv.devices import at_least_float32, full_precision
from sslsv.losses import dino_loss
from sslsv.methods.base import Method, Metrics, StepInfo, ema_update, register_method
from sslsv.methods.ssps import PositiveSampler, SSPSConfig
from sslsv.models.embedding import EmbeddingModel


@dataclass
class DINOConfig(MethodConfig):
    name: str = "dino"
    # The teacher's EMA momentum at the start, then a cosine to momentum_end (1 in the
    # references; lower for runs of a few hundred steps).
    momentum: float = checked(0.999, minimum=0, maximum=1)
    momentum_end: float = checked(1.0, minimum=0, maximum=1)
    # Head: 3-layer MLP with batch norm and GELU, L2-normalised bottleneck, weight-normalised
    # last layer of head_out prototypes.
    head_hidden: int = checked(2048, minimum=1)
    head_bottleneck: int = checked(256, minimum=1)
    head_out: int = checked(65536, minimum=2)
    # Crops: 2 global of train.crop_seconds (teacher and student), local_crops of
    # local_crop_seconds (the student only).
    local_crops: int = checked(4, minimum=0)
    local_crop_seconds: float = checked(2.0, above=0)
    # Temperatures (the teacher's: teacher_temperature_start, linearly to
    # teacher_temperature over the first teacher_temperature_warmup of training).
    student_temperature: float = checked(0.1, above=0)
    teacher_temperature: float = checked(0.04, above=0)
    teacher_temperature_start: float = checked(0.04, above=0)
    teacher_temperature_warmup: float = checked(0.0, minimum=0, maximum=1)
    center_momentum: float = checked(0.9, minimum=0, maximum=1)
    freeze_last_layer_epochs: int = checked(1, minimum=0)  # no update of the prototypes
    ssps: SSPSConfig = field(default_factory=SSPSConfig)


def teacher_momentum(progress: float, start: float, end: float = 1.0) -> float:
    """The EMA momentum after ``progress`` (0-1) of training: cosine from ``start`` to ``end``."""
    return end - (end - start) * (math.cos(math.pi * min(max(progress, 0.0), 1.0)) + 1) / 2


def teacher_temperature(progress: float, start: float, end: float, warmup: float) -> float:
    """Linear from ``start`` to ``end`` over the first ``warmup`` of training, then ``end``."""
    if warmup <= 0 or progress >= warmup:
        return end
    return start + (end - start) * max(progress, 0.0) / warmup


class DINOHead(nn.Module):
    """3-layer MLP (batch norm, GELU) to an L2-normalised bottleneck, then cosine logits to
    ``out_dim`` prototypes: a weight-normalised last layer with its norm fixed at 1."""

    def __init__(self, in_dim: int, hidden: int, bottleneck: int, out_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.GELU(),
            nn.Linear(hidden, bottleneck),
        )
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        self.prototypes = nn.Parameter(torch.empty(out_dim, bottleneck))
        nn.init.kaiming_uniform_(self.prototypes, a=math.sqrt(5))  # nn.Linear's default

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mlp(x)
        # The logits to the prototypes in float32, also under bf16: divided by a teacher
        # temperature of 0.04 they are the loss's input, and bf16 would round them by ~0.1.
        with full_precision(x.device.type):
            x = F.normalize(at_least_float32(x), dim=-1)
            return F.linear(x, F.normalize(self.prototypes, dim=1))


@register_method("dino")
class DINO(Method):
    config_class = DINOConfig

    @classmethod
    def crop_plan(cls, cfg: Config) -> list[tuple[int, float]]:
        plan = [(2, cfg.train.crop_seconds)]
        if cfg.method.local_crops:
            plan.append((cfg.method.local_crops, cfg.method.local_crop_seconds))
        return plan

    def __init__(self, cfg: Config, model: EmbeddingModel, num_classes: int = 0) -> None:
        super().__init__(cfg, model, num_classes)
        mc: DINOConfig = cfg.method
        self.cfg = mc
        self.student = model
        self.student_head = DINOHead(
            model.embed_dim, mc.head_hidden, mc.head_bottleneck, mc.head_out
        )
        self.model = copy.deepcopy(model).requires_grad_(False)  # the teacher
        self.teacher_head = copy.deepcopy(self.student_head).requires_grad_(False)
        self.register_buffer("center", torch.zeros(mc.head_out))
        self.ssps = None
        if mc.ssps.enabled:
            self.ssps = PositiveSampler(mc.ssps, model.embed_dim, model.embed_dim, cfg.train.seed)
        self._frozen = False
        # Zeroed rather than cut from the graph, so DDP still sees a gradient for every weight.
        self.student_head.prototypes.register_hook(lambda g: g * 0 if self._frozen else g)

    def embedding_models(self) -> list[EmbeddingModel]:
        return [self.student, self.model]

    @torch.no_grad()
    def _update_teacher(self, momentum: float) -> None:
        ema_update(self.model, self.student, momentum)
        ema_update(self.teacher_head, self.student_head, momentum)

    @torch.no_grad()
    def _update_center(self, teacher: torch.Tensor) -> None:
        batch_center = distributed.all_reduce_mean(teacher.float().mean(dim=(0, 1)))
        self.center.mul_(self.cfg.center_momentum).add_(
            batch_center, alpha=1 - self.cfg.center_momentum
        )

    def forward(
        self,
        feats: torch.Tensor | list[torch.Tensor],
        labels: torch.Tensor | None = None,
        info: StepInfo | None = None,
    ) -> tuple[torch.Tensor, Metrics]:
        """``feats``: [(B, 2, n_mels, T) global crops, (B, local_crops, n_mels, T') local
        crops] (or the global crops alone) -> (loss, metrics)."""
        info = info or StepInfo()
        groups = list(feats) if isinstance(feats, (list, tuple)) else [feats]
        global_crops = groups[0]
        batch, crops_t = global_crops.shape[:2]
        mc = self.cfg
        self._frozen = info.epoch < mc.freeze_last_layer_epochs
        self._update_teacher(teacher_momentum(info.progress, mc.momentum, mc.momentum_end))
        with torch.no_grad():
            embeddings = self.model.forward_features(global_crops.transpose(0, 1).flatten(0, 1))
            if self.ssps is not None and info.indices is not None:
                anchors = embeddings[:batch]
                if self.ssps.active(info.progress):
                    pos, found = self.ssps.sample(
                        info.indices, anchors, info.epoch, info.global_step
                    )
                    first = torch.where(found[:, None], pos.to(embeddings.dtype), anchors)
                    embeddings = torch.cat([first, embeddings[batch:]])
                self.ssps.enqueue(info.indices, anchors, anchors)
            teacher = self.teacher_head(embeddings).unflatten(0, (crops_t, batch))
        student = torch.cat(
            [
                self.student_head(
                    self.student.forward_features(group.transpose(0, 1).flatten(0, 1))
                ).unflatten(0, (group.shape[1], batch))
                for group in groups
            ]
        )
        temperature = teacher_temperature(
            info.progress, mc.teacher_temperature_start, mc.teacher_temperature,
            mc.teacher_temperature_warmup,
        )  # fmt: skip
        loss = dino_loss(student, teacher, self.center, mc.student_temperature, temperature)
        self._update_center(teacher)
        with torch.no_grad():
            # Share of (teacher crop, other student crop) pairs choosing the same prototype.
            chosen_t, chosen_s = teacher.argmax(dim=-1), student.argmax(dim=-1)
            agree = (chosen_t[:, None] == chosen_s[None]).float().mean(dim=2)  # (T, S)
            agree.fill_diagonal_(0.0)
            accuracy = agree.sum() / (agree.numel() - crops_t)
        return loss, {"accuracy": accuracy}
