"""A speaker classifier trained with the additive-angular-margin softmax (AAM, ArcFace).

The second stage of label-free training: the labels are the pseudo-speakers of a clustered
training set (``data/<train>_pl<round>/utt2spk``); with the true ``utt2spk`` the same method
gives the supervised ceiling. One crop per utterance; ``method.scale`` and
``method.margin`` (ramped in over ``method.margin_warmup``) are the AAM's scale and angular
margin, ``method.subcenters`` centres per class. With a seed model and its embeddings of the
training set, the centres start at the classes' mean embeddings
(:meth:`Classifier.seed_from_class_means`).

``method.gate`` and ``method.correction`` (:mod:`sslsv.methods.gating`): loss-gated training
(only the utterances whose loss is under the gate give a gradient) and label correction
(confident predictions above the gate replace their pseudo-labels), as in DLG-LC.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from sslsv import distributed
from sslsv.config.schema import Config, checked
from sslsv.devices import at_least_float32, full_precision
from sslsv.losses import aam_softmax_rows, aam_softmax_with_accuracy
from sslsv.methods.base import AdditiveMarginConfig, Method, Metrics, StepInfo, register_method
from sslsv.methods.gating import CorrectionConfig, GateConfig, LossGate
from sslsv.models.embedding import EmbeddingModel


@dataclass
class ClassifierConfig(AdditiveMarginConfig):
    name: str = "classifier"
    # AAM-softmax to the class centres: scale, margin (radians, at the target's angle),
    # margin_warmup (AdditiveMarginConfig).
    # Centres per class (sub-centre ArcFace when > 1: robust to noisy labels).
    subcenters: int = checked(1, minimum=1)
    gate: GateConfig = field(default_factory=GateConfig)
    correction: CorrectionConfig = field(default_factory=CorrectionConfig)

    def __post_init__(self) -> None:
        if self.correction.enabled and self.gate.kind == "none":
            raise ValueError(
                "method.correction.enabled needs a gate: method.gate.kind fixed or gmm "
                "(label correction relabels the utterances above it)"
            )


@register_method("classifier")
class Classifier(Method):
    config_class = ClassifierConfig
    needs_labels = True

    def __init__(self, cfg: Config, model: EmbeddingModel, num_classes: int = 0) -> None:
        super().__init__(cfg, model, num_classes)
        if num_classes < 2:
            raise ValueError(f"the classifier needs at least 2 classes, got {num_classes}")
        self.cfg: ClassifierConfig = cfg.method
        self.subcenters = self.cfg.subcenters
        self.centres = nn.Parameter(torch.empty(num_classes * self.subcenters, model.embed_dim))
        nn.init.xavier_normal_(self.centres)
        self.gate = None
        if self.cfg.gate.kind != "none":
            self.gate = LossGate(self.cfg.gate, self.cfg.correction)

    @classmethod
    def crop_plan(cls, cfg: Config) -> list[tuple[int, float]]:
        return [(1, cfg.train.crop_seconds)]

    @torch.no_grad()
    def seed_from_class_means(self, class_means: torch.Tensor) -> bool:
        """Start the centres at the classes' mean embeddings (C, D) by the seed model, so
        that the first steps refine the seed's geometry instead of pulling it towards
        random centres; sub-centres of a class start there with a little noise (identical
        ones would never part: only the nearest gets a gradient)."""
        centres = F.normalize(class_means.float(), dim=-1).repeat_interleave(self.subcenters, 0)
        if self.subcenters > 1:
            generator = torch.Generator().manual_seed(0)
            centres += 0.01 * torch.randn(centres.shape, generator=generator)
        self.centres.copy_(centres)
        return True

    def attach_training_set(self, labels: torch.Tensor) -> None:
        if self.gate is not None:
            self.gate.attach(labels)

    def end_epoch(self, epoch: int) -> dict[str, float]:
        return self.gate.end_epoch(epoch) if self.gate is not None else {}

    def training_labels(self) -> torch.Tensor | None:
        return self.gate.labels if self.gate is not None and self.cfg.correction.enabled else None

    def forward(
        self,
        feats: torch.Tensor,
        labels: torch.Tensor | None = None,
        info: StepInfo | None = None,
    ) -> tuple[torch.Tensor, Metrics]:
        """``feats``: (B, 1, n_mels, T) log-mels, ``labels``: (B,) class indices."""
        if labels is None:
            raise ValueError("the classifier needs the labels of its batch")
        info = info or StepInfo()
        margin = self.cfg.margin_at(info.progress)
        embeddings = self.model.forward_features(feats[:, 0])
        with full_precision(embeddings.device.type):  # float32 cosines, also under bf16
            cos = F.linear(
                F.normalize(at_least_float32(embeddings), dim=-1), F.normalize(self.centres, dim=-1)
            )
            if self.gate is None:
                loss, accuracy = aam_softmax_with_accuracy(
                    cos, labels, self.cfg.scale, margin, self.subcenters
                )
                return loss, {"accuracy": accuracy, "margin": margin}
            if info.indices is None:
                raise ValueError("the gated classifier needs the rows' training-set indices")
            labels = self.gate.labels_of(info.indices)
            losses, prediction, confidence = aam_softmax_rows(
                cos, labels, self.cfg.scale, margin, self.subcenters
            )
            keep = self.gate.keep(losses)
            kept_globally = self.gate.record(info.indices, losses, prediction, confidence)
            # The mean over the global batch's kept rows: DDP averages the processes'
            # gradients, hence the world size.
            scale = distributed.world_size() / kept_globally.clamp_min(1)
            loss = (losses * keep).sum() * scale
            accuracy = (prediction == labels).float().mean()
        return loss, {"accuracy": accuracy, "kept": keep.float().mean(), "margin": margin}
