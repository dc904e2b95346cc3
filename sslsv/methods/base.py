"""The contract of a training method: what the trainer, the checkpoints and the config
loader may rely on, and nothing else (the trainer has no method name and no method-specific
branch).

A method is a :class:`Method` (an ``nn.Module``) registered under a name with
:func:`register_method`; its settings are its own config dataclass (``config_class``, a
subclass of :class:`MethodConfig` defined beside it), which the ``method:`` section of an
experiment config is read into: ``method: {name: simclr, margin: 0.2}``. A key that is not
the named method's is a config error naming the method and its keys.

What a method provides (defaults in :class:`Method`):

- ``crop_plan(cfg)`` (classmethod): ``[(crops, seconds), ...]`` per utterance, one group
  per crop length; default two crops of ``train.crop_seconds``. With one group ``forward``
  gets a (B, crops, n_mels, T) tensor, with several a list of them, one per group.
- ``needs_labels`` (class attribute, default False): True, it is built with
  ``num_classes`` and gets the class index of each utterance (the data dir's ``utt2spk``).
- ``model``: the :class:`EmbeddingModel` that checkpoints keep as the model (``final.pt``),
  that validation and extraction embed with.
- ``embedding_models()``: every EmbeddingModel it trains or runs (what ``train.compile``
  compiles); default ``[self.model]``.
- ``seed_from_class_means(class_means)``: called once, before training, when the encoder
  starts from a seed model and the seed's embeddings of the training set are given; (C, D)
  mean embedding per class. Default: nothing, returns False.
- ``attach_training_set(labels)``: called once, before training (and before a checkpoint
  is loaded), with the (N,) class index of every training utterance in training-set order
  (-1 for a method without labels): methods with per-utterance state size it here.
  Default: nothing.
- ``end_epoch(epoch)`` -> ``{name: float}``: called on every process after the steps of
  epoch ``epoch`` (0-based), before validation and the epoch's checkpoint (which then holds
  its effect); what it returns is logged as the epoch's ``method`` line. Default: ``{}``.
- ``training_labels()``: the (N,) class indices the method trains on now, when it changes
  them (label correction), else None (default); written beside ``final.pt``.
- ``forward(feats, labels, info)`` -> ``(loss, metrics)``: the local batch's mean loss
  (0-dim tensor with a gradient) and metrics by name, each a 0-dim device tensor (a batch
  mean; the trainer averages it over processes with the loss, in one all-reduce) or a
  Python float (a schedule's value at this step, e.g. ``"margin"``). ``"accuracy"`` is
  required. ``info`` is the step's :class:`StepInfo` (progress for schedules, epoch, the
  rows' training-set indices). Methods with schedules compute them from ``info.progress``.

Adding a method is one Python module. It defines the config dataclass (``@dataclass class
ToyConfig(MethodConfig)``: ``name: str = "toy"``, the registered name, then its keys with
their defaults, ``checked(...)`` from :mod:`sslsv.config.schema` for ranges) and the method
(``@register_method("toy") class Toy(Method)`` with ``config_class = ToyConfig``, an
``__init__(cfg, model, num_classes=0)`` that calls ``super().__init__(cfg, model,
num_classes)`` and reads ``cfg.method``, and ``forward``; the other entries above where the
defaults do not fit). To be found, the module is imported when :mod:`sslsv.methods` is: a
module outside the package by naming it in the environment variable ``SSLSV_PLUGINS``
(comma-separated module names, importable from ``PYTHONPATH``), so that every command,
training, extraction and the API alike, knows ``method.name: toy`` with no file of the
package touched; a built-in method by adding its module to the import line at the end of
``sslsv/methods/__init__.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from sslsv.config.schema import Config, MethodConfig, checked
from sslsv.losses import margin_at

if TYPE_CHECKING:
    from sslsv.models.embedding import EmbeddingModel

#: What ``forward`` returns besides the loss: name -> 0-dim device tensor or float.
Metrics = dict[str, "torch.Tensor | float"]


@dataclass
class AdditiveMarginConfig(MethodConfig):
    """The config of a method whose loss has a positive-pair or target logit, and so an
    additive margin there: cosines times ``scale`` (1 / temperature), ``margin`` subtracted
    from the positive's cosine (NT-Xent-AM) or added to the target's angle (AAM-softmax;
    0: none), ramped linearly from 0 over the first ``margin_warmup`` (share) of training."""

    scale: float = checked(30.0, above=0)
    margin: float = checked(0.1, minimum=0, below=1)
    margin_warmup: float = checked(0.0, minimum=0, maximum=1)

    def margin_at(self, progress: float) -> float:
        """The margin after ``progress`` (0-1) of training."""
        return margin_at(progress, self.margin, self.margin_warmup)


@dataclass(frozen=True)
class StepInfo:
    """Where a training step is: ``progress`` (0-1, steps done / all steps) for schedules,
    ``epoch`` and ``global_step``, and ``indices``, the local rows' training-set indices
    on the device (positive sampling keeps a memory per utterance)."""

    progress: float = 0.0
    epoch: int = 0
    global_step: int = 0
    indices: torch.Tensor | None = None


class Method(nn.Module):
    """Base class of training methods: the defaults of the contract (module docstring)."""

    #: The registry name (set by :func:`register_method`).
    name: ClassVar[str] = ""
    #: The method's config dataclass: what ``method:`` of a config is read into.
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    #: True: built with ``num_classes``, and ``forward`` gets the batch's class indices.
    needs_labels: ClassVar[bool] = False

    def __init__(self, cfg: Config, model: EmbeddingModel, num_classes: int = 0) -> None:
        super().__init__()
        if not isinstance(cfg.method, self.config_class):
            raise TypeError(
                f"{type(self).__name__} needs a {self.config_class.__name__} as cfg.method, "
                f"got {type(cfg.method).__name__}"
            )
        self.model = model

    @classmethod
    def crop_plan(cls, cfg: Config) -> list[tuple[int, float]]:
        """``[(crops, seconds), ...]`` per utterance: one group per crop length."""
        return [(2, cfg.train.crop_seconds)]

    def embedding_models(self) -> list[EmbeddingModel]:
        """Every EmbeddingModel of the method (what ``train.compile`` compiles)."""
        return [self.model]

    def seed_from_class_means(self, class_means: torch.Tensor) -> bool:
        """Start from the seed model's (C, D) mean embedding per class; True if used."""
        return False

    def attach_training_set(self, labels: torch.Tensor) -> None:
        """Per-utterance state for the (N,) training set's class indices (-1: none)."""

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """After the steps of epoch ``epoch`` (0-based): what to log for it."""
        return {}

    def training_labels(self) -> torch.Tensor | None:
        """The (N,) class indices trained on now, when the method changes them."""
        return None

    def forward(
        self,
        feats: torch.Tensor | list[torch.Tensor],
        labels: torch.Tensor | None = None,
        info: StepInfo | None = None,
    ) -> tuple[torch.Tensor, Metrics]:
        """(loss, metrics) of a batch; ``info`` None: the first step of training."""
        raise NotImplementedError


METHODS: dict[str, type[Method]] = {}


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: register a :class:`Method` under ``name`` (its ``method.name``).
    Its ``config_class`` must be a :class:`MethodConfig` dataclass whose ``name`` defaults to
    ``name``, so that a default config names its method."""

    def add(cls: type[Method]) -> type[Method]:
        config = cls.config_class
        if not (issubclass(cls, Method) and dataclasses.is_dataclass(config)):
            raise TypeError(
                f"method {name!r}: {cls.__name__} must subclass Method and name a config "
                "dataclass (config_class)"
            )
        if config is MethodConfig or not issubclass(config, MethodConfig):
            raise TypeError(f"method {name!r}: {config.__name__} must subclass MethodConfig")
        default = next(f.default for f in dataclasses.fields(config) if f.name == "name")
        if default != name:
            raise TypeError(f"method {name!r}: {config.__name__}.name defaults to {default!r}")
        cls.name = name
        METHODS[name] = cls
        return cls

    return add


def method_class(cfg: Config) -> type[Method]:
    if cfg.method.name not in METHODS:
        raise ValueError(
            f"unknown method.name {cfg.method.name!r} (known: {', '.join(sorted(METHODS))})"
        )
    return METHODS[cfg.method.name]


def build_method(cfg: Config, model: EmbeddingModel, num_classes: int = 0) -> Method:
    return method_class(cfg)(cfg, model, num_classes)


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
