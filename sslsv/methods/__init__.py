"""Training methods: the contract (:mod:`sslsv.methods.base`: :class:`Method`, its config
base :class:`MethodConfig`, :func:`register_method`) and the registry ``name -> class``.

Built in: ``simclr`` (:mod:`~sslsv.methods.simclr`) and ``moco``
(:mod:`~sslsv.methods.moco`), two views and NT-Xent-AM, no labels; ``dino``
(:mod:`~sslsv.methods.dino`), multi-crop self-distillation, no labels; ``classifier``
(:mod:`~sslsv.methods.classifier`), one view and AAM-softmax over class labels. SimCLR,
MoCo and DINO can draw their positives by self-supervised positive sampling
(:mod:`~sslsv.methods.ssps`).

Plugins: the modules named in the environment variable ``SSLSV_PLUGINS`` (comma-separated,
importable from ``PYTHONPATH``) are imported after the built-in methods, so that the methods
they register are known to every command (see :mod:`sslsv.methods.base` for what such a
module holds).
"""

from __future__ import annotations

import importlib
import os

from sslsv.config.schema import MethodConfig
from sslsv.errors import ConfigError
from sslsv.methods.base import (
    METHODS,
    Method,
    Metrics,
    StepInfo,
    build_method,
    ema_update,
    make_projector,
    method_class,
    register_method,
)

__all__ = [
    "METHODS",
    "Method",
    "MethodConfig",
    "Metrics",
    "StepInfo",
    "build_method",
    "ema_update",
    "make_projector",
    "method_class",
    "register_method",
]

#: Environment variable: modules (comma-separated) that register methods of their own.
PLUGINS_ENV = "SSLSV_PLUGINS"


def _import_plugins() -> None:
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ConfigError(f"{PLUGINS_ENV}: cannot import {module!r} ({e})") from None


from sslsv.methods import classifier, dino, moco, simclr  # noqa: E402,F401

_import_plugins()
