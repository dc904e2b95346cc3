"""A speaker classifier trained with the additive-angular-margin softmax (AAM, ArcFace).

The second stage of label-free training: the labels are the pseudo-speakers of a clustered
training set (``data/<train>_pl<round>/utt2spk``); with the true ``utt2spk`` the same method
gives the supervised ceiling. One crop per utterance; margin and scale are ``loss.margin``
and ``loss.scale`` (with ``loss.margin_warmup``), ``method.subcenters`` centres per class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sslsv.config.schema import Config
from sslsv.devices import at_least_float32, full_precision
from sslsv.losses import aam_softmax_with_accuracy
from sslsv.methods import StepInfo, register_method
from sslsv.models.embedding import EmbeddingModel


@register_method("classifier")
class Classifier(nn.Module):
    views = 1
    needs_labels = True

    def __init__(self, cfg: Config, model: EmbeddingModel, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"the classifier needs at least 2 classes, got {num_classes}")
        self.loss_cfg = cfg.loss
        self.subcenters = cfg.method.subcenters
        self.model = model
        self.centres = nn.Parameter(torch.empty(num_classes * self.subcenters, model.embed_dim))
        nn.init.xavier_normal_(self.centres)

    @torch.no_grad()
    def init_centres(self, class_means: torch.Tensor) -> None:
        """Start the centres at the classes' mean embeddings (C, D) by the seed model, so
        that the first steps refine the seed's geometry instead of pulling it towards
        random centres; sub-centres of a class start there with a little noise (identical
        ones would never part: only the nearest gets a gradient)."""
        centres = F.normalize(class_means.float(), dim=-1).repeat_interleave(self.subcenters, 0)
        if self.subcenters > 1:
            generator = torch.Generator().manual_seed(0)
            centres += 0.01 * torch.randn(centres.shape, generator=generator)
        self.centres.copy_(centres)

    def forward(
        self,
        feats: torch.Tensor,
        margin: float,
        labels: torch.Tensor | None = None,
        info: StepInfo | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """``feats``: (B, 1, n_mels, T) log-mels, ``labels``: (B,) class indices."""
        if labels is None:
            raise ValueError("the classifier needs the labels of its batch")
        embeddings = self.model.forward_features(feats[:, 0])
        with full_precision(embeddings.device.type):  # float32 cosines, also under bf16
            cos = F.linear(
                F.normalize(at_least_float32(embeddings), dim=-1), F.normalize(self.centres, dim=-1)
            )
            loss, accuracy = aam_softmax_with_accuracy(
                cos, labels, self.loss_cfg.scale, margin, self.subcenters
            )
        return loss, {"accuracy": accuracy}
