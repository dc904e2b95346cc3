"""Training method registry: ``name -> class``. A method turns a batch of crops (B, views,
n_mels, T) into a loss: SimCLR and MoCo two views without labels, the classifier one view
with a class label per utterance.

A method class says what it needs with two class attributes: ``views`` (crops per
utterance, default 2) and ``needs_labels`` (default False; True: it is built with
``num_classes`` and gets the labels of the data dir's ``utt2spk``)."""

from __future__ import annotations

from collections.abc import Callable

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


def views_of(cls: type[nn.Module]) -> int:
    return getattr(cls, "views", 2)


def needs_labels(cls: type[nn.Module]) -> bool:
    return getattr(cls, "needs_labels", False)


def build_method(cfg: Config, model: EmbeddingModel, num_classes: int = 0) -> nn.Module:
    cls = method_class(cfg)
    if needs_labels(cls):
        return cls(cfg, model, num_classes)
    return cls(cfg, model)


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


from sslsv.methods import classifier, moco, simclr  # noqa: E402,F401
