"""Training method registry: ``name -> class``. A method turns a batch of crops (B, views,
n_mels, T) into a loss: SimCLR and MoCo two views without labels, the classifier one view
with a class label per utterance, DINO several crops of two lengths (multi-crop).

A method class says what it needs with class attributes: ``views`` (crops per utterance,
default 2) or, for crops of several lengths, a ``crop_plan(cfg)`` classmethod returning
``[(count, seconds), ...]`` (one group per length; then ``forward`` gets a list of
(B, count, n_mels, T) tensors, one per group); ``needs_labels`` (default False; True: it is
built with ``num_classes`` and gets the labels of the data dir's ``utt2spk``).

``forward(feats, margin, labels=None, info=None)`` returns (loss, metrics); ``info`` is the
step's :class:`StepInfo` (position in training, the batch's utterance indices). A method's
``model`` attribute is the :class:`EmbeddingModel` that checkpoints keep as the model
(``final.pt``), validation embeds and stage 5 extracts: the online encoder for SimCLR, MoCo
and the classifier, the EMA teacher for DINO."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from sslsv.config.schema import Config
from sslsv.models.embedding import EmbeddingModel

METHODS: dict[str, type[nn.Module]] = {}


def register_method(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def add(cls: type[nn.Module]) -> type[nn.Module]:
        METHODS[name] = cls
        return cls

    return add


def method_class(cfg: Config) -> type[nn.Module]:
    if cfg.method.name not in METHODS:
        raise ValueError(
            f"unknown method.name {cfg.method.name!r} (known: {', '.join(sorted(METHODS))})"
        )
    return METHODS[cfg.method.name]


@dataclass(frozen=True)
class StepInfo:
    """Where a training step is: ``progress`` (0-1, steps done / all steps) for schedules,
    ``epoch`` and ``global_step``, and ``indices``, the local rows' training-set indices
    on the device (positive sampling keeps a memory per utterance)."""

    progress: float = 0.0
    epoch: int = 0
    global_step: int = 0
    indices: torch.Tensor | None = None


def views_of(cls: type[nn.Module]) -> int:
    return getattr(cls, "views", 2)


def crop_plan(cls: type[nn.Module], cfg: Config) -> list[tuple[int, float]]:
    """``[(crops, seconds), ...]`` per utterance: one group per crop length."""
    plan = getattr(cls, "crop_plan", None)
    if plan is not None:
        return plan(cfg)
    return [(views_of(cls), cfg.train.crop_seconds)]


def needs_labels(cls: type[nn.Module]) -> bool:
    return getattr(cls, "needs_labels", False)


def build_method(cfg: Config, model: EmbeddingModel, num_classes: int = 0) -> nn.Module:
    cls = method_class(cfg)
    if needs_labels(cls):
        return cls(cfg, model, num_classes)
    return cls(cfg, model)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target <- momentum * target + (1 - momentum) * online`` for every parameter, as one
    multi-tensor kernel rather than two small kernels per parameter (buffers untouched)."""
    target_params = list(target.parameters())
    if target_params:
        online_params = [p.detach() for p in online.parameters()]
        torch._foreach_lerp_(target_params, online_params, 1 - momentum)


def make_projector(in_dim: int, sizes: list[int]) -> nn.Module:
    """MLP projector (Linear-BN-ReLU ... Linear); identity when ``sizes`` is empty."""
    if not sizes:
        return nn.Identity()
    layers: list[nn.Module] = []
    dims = [in_dim, *sizes]
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 1:
            layers += [nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


from sslsv.methods import classifier, dino, moco, simclr  # noqa: E402,F401
