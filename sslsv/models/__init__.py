"""Encoder registry: ``name -> class``.

A new encoder is one file with a ``@register_encoder("name")`` class, plus its module on the
import line at the end of this file; an encoder outside the package is a module named in
``SSLSV_PLUGINS`` instead (:mod:`sslsv.methods`, imported by every config load, imports it),
with no file of the package touched."""

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


def encoder_problem(name: str, args: dict) -> str | None:
    """Why ``encoder.name`` and ``encoder.args`` name no registered encoder, or None."""
    if name not in ENCODERS:
        return f"'encoder.name' is {name!r}; allowed: {', '.join(sorted(ENCODERS))}"
    accepted = set(inspect.signature(ENCODERS[name].__init__).parameters) - {"self", "n_mels"}
    unknown = set(args) - accepted
    if unknown:
        return f"'encoder.args' {sorted(unknown)} unknown for {name!r}; allowed: {sorted(accepted)}"
    return None


def build_encoder(name: str, n_mels: int, args: dict) -> nn.Module:
    """Instantiate encoder ``name``; unknown names or arguments are errors naming them."""
    problem = encoder_problem(name, args)
    if problem:
        raise ValueError(problem)
    return ENCODERS[name](n_mels=n_mels, **args)


# Importing the modules registers their encoders.
from sslsv.models import ecapa_tdnn, resnet, stats  # noqa: E402,F401
