"""SSL method registry: ``name -> class``. A method turns two views into a loss."""

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


def build_method(cfg: Config, model: EmbeddingModel) -> nn.Module:
    if cfg.method.name not in METHODS:
        raise ValueError(
            f"unknown method.name {cfg.method.name!r} (known: {', '.join(sorted(METHODS))})"
        )
    return METHODS[cfg.method.name](cfg, model)


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


from sslsv.methods import moco, simclr  # noqa: E402,F401
