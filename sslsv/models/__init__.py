"""Encoder registry: ``name -> class``. A new encoder is one file plus one decorator."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

ENCODERS: dict[str, type[nn.Module]] = {}


def register_encoder(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def add(cls: type[nn.Module]) -> type[nn.Module]:
        if name in ENCODERS:
            raise ValueError(f"encoder {name!r} registered twice")
        ENCODERS[name] = cls
        return cls

    return add


def build_encoder(name: str, n_mels: int, args: dict) -> nn.Module:
    """Instantiate encoder ``name``; unknown names or arguments are errors naming them."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder.name {name!r} (known: {', '.join(sorted(ENCODERS))})")
    cls = ENCODERS[name]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "n_mels"}
    unknown = set(args) - accepted
    if unknown:
        raise ValueError(
            f"unknown encoder.args {sorted(unknown)} for {name!r} (accepted: {sorted(accepted)})"
        )
    return cls(n_mels=n_mels, **args)


# Importing the modules registers their encoders.
from sslsv.models import ecapa_tdnn, resnet  # noqa: E402,F401
