"""What a scoring back end is, the registry of back ends, and saving them as plain arrays.

A back end is a class registered by name (:func:`register_backend`), in a module of its own
that ``sslsv/backend/__init__.py`` imports; the config check (``scoring.backend``), the
options and choices of ``sslsv.bin.score`` and the saved files all come from the registry.
A new back end is one module and its registration; a setting of its own is also a field of
:class:`sslsv.config.schema.ScoringConfig` (what configs and the command line set).

Each back end turns raw embeddings into *prepared* ones once (``prepare``), then scores
prepared embeddings pairwise (``score_pairs``) or all-against-all (``score_matrix``, used by
score normalisation).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sslsv.config.schema import ScoringConfig
from sslsv.errors import DataError
from sslsv.fileio import atomic_write

__all__ = [
    "BACKENDS",
    "FORMAT",
    "Backend",
    "TrainingSet",
    "backend_class",
    "backend_options",
    "load_backend",
    "register_backend",
    "save_backend",
]

#: The format of a saved back end: the ``format`` array of its ``.npz`` and the ``format``
#: of the stamp that says what it was trained on (``sslsv.bin.score --backend-model``). Bump
#: when the arrays change or when a back end trained on the same inputs changes: saved ones
#: are then retrained; list the old value in ``_READS`` while its arrays still load.
FORMAT = "sslsv-backend-1"

#: Formats of saved back ends that this version reads: the same arrays.
_READS = (FORMAT, "sslsv-backend-v1")  # -v1: the name the files had until the registry


@dataclass(frozen=True)
class TrainingSet:
    """What a back end is trained on: the training set's embeddings (rows) and, for a back
    end that uses them (``needs_labels``), one speaker label per row."""

    x: np.ndarray
    speakers: list[str] | None = None


class Backend:
    """A scoring back end. A subclass sets the class attributes and implements the methods
    that raise NotImplementedError here."""

    #: Its registered name (set by :func:`register_backend`): ``scoring.backend``.
    name: ClassVar[str] = ""
    #: The ``scoring:`` keys it depends on, each with its ``sslsv.bin.score --help`` text.
    options: ClassVar[dict[str, str]] = {}
    #: Whether training needs the training set's speaker labels (``--train-utt2spk``).
    needs_labels: ClassVar[bool] = False
    #: Whether training is worth keeping: ``sslsv.bin.score --backend-model`` saves it and
    #: loads it again while its inputs are unchanged (a mean is cheaper to redo than check).
    saved: ClassVar[bool] = False

    @classmethod
    def needs_training(cls, cfg: ScoringConfig) -> str | None:
        """What in ``cfg`` needs the training set, in words for an error ("scoring.backend
        plda"), or None when the back end is complete without one."""
        return f"scoring.backend {cls.name}"

    @classmethod
    def settings_of(cls, cfg: ScoringConfig) -> dict[str, Any]:
        """The values of ``cfg`` that a back end trained with it depends on."""
        return {key: getattr(cfg, key) for key in cls.options}

    @classmethod
    def fit(cls, cfg: ScoringConfig, train: TrainingSet | None) -> Backend:
        """The back end of ``cfg`` trained on ``train`` (None when :meth:`needs_training`
        is None). A ValueError when the data cannot train it."""
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """The config values this trained back end was made with (those of
        :meth:`settings_of`)."""
        raise NotImplementedError

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """Raw embeddings (rows) -> what ``score_pairs`` and ``score_matrix`` take. A
        ValueError for an embedding it cannot prepare (all zeros)."""
        raise NotImplementedError

    def score_pairs(
        self, enroll: np.ndarray, test: np.ndarray, enroll_idx: np.ndarray, test_idx: np.ndarray
    ) -> np.ndarray:
        """Score of ``(enroll[enroll_idx[i]], test[test_idx[i]])`` for every i."""
        raise NotImplementedError

    def score_matrix(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Score of every row of ``a`` against every row of ``b``."""
        raise NotImplementedError

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Its trained state as plain arrays (what :func:`save_backend` writes)."""
        raise NotImplementedError

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Backend:
        """The back end that :meth:`to_arrays` gave ``arrays``; a KeyError names a missing
        array."""
        raise NotImplementedError


BACKENDS: dict[str, type[Backend]] = {}

_SCORING_KEYS = {f.name for f in dataclasses.fields(ScoringConfig)}


def register_backend(name: str) -> Callable[[type[Backend]], type[Backend]]:
    """Class decorator: register a back end as ``name`` (``scoring.backend: name``)."""

    def add(cls: type[Backend]) -> type[Backend]:
        if name in BACKENDS:
            raise ValueError(f"back end {name!r} registered twice")
        unknown = sorted(set(cls.options) - _SCORING_KEYS)
        if unknown:
            raise ValueError(
                f"back end {name!r}: options {unknown} are not scoring: keys (add them to "
                "sslsv.config.schema.ScoringConfig)"
            )
        cls.name = name
        BACKENDS[name] = cls
        return cls

    return add


def backend_class(name: str) -> type[Backend]:
    """The back end registered as ``name``; a ValueError names the registered ones."""
    if name not in BACKENDS:
        raise ValueError(f"unknown back end {name!r} (known: {', '.join(sorted(BACKENDS))})")
    return BACKENDS[name]


def reads_training_set(cfg: ScoringConfig) -> bool:
    """Whether scoring with ``cfg`` reads the training set's embeddings: to train its back
    end (a mean to subtract, PLDA) or as the cohort of a score normalisation."""
    return backend_class(cfg.backend).needs_training(cfg) is not None or cfg.norm != "none"


def backend_options() -> dict[str, list[str]]:
    """Each ``scoring:`` key that a registered back end depends on, with the names of the
    back ends that do, in registration order."""
    users: dict[str, list[str]] = {}
    for name, cls in BACKENDS.items():
        for key in cls.options:
            users.setdefault(key, []).append(name)
    return users


def save_backend(path: str | os.PathLike, backend: Backend) -> None:
    """Write ``backend`` as plain arrays to ``path`` (``.npz``), atomically."""
    arrays = {"format": np.array(FORMAT), "kind": np.array(backend.name)}
    arrays.update(backend.to_arrays())
    with atomic_write(Path(path), "wb") as f:
        np.savez(f, **arrays)


def load_backend(path: str | os.PathLike) -> Backend:
    """Read a back end written by :func:`save_backend` (no pickle: plain arrays only)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable .npz back-end file ({e})") from None
    if "format" not in arrays:
        raise DataError(f"{path}: not an sslsv back end (no 'format' array)")
    found = str(arrays.pop("format"))
    if found not in _READS:
        raise DataError(
            f"{path}: back end of format {found!r}, which this version does not read "
            f"({', '.join(_READS)}): train it again (give --train)"
        )
    kind = str(arrays.pop("kind", ""))
    if kind not in BACKENDS:
        raise DataError(
            f"{path}: unknown back-end kind {kind!r} (known: {', '.join(sorted(BACKENDS))})"
        )
    try:
        return BACKENDS[kind].from_arrays(arrays)
    except KeyError as e:
        raise DataError(f"{path}: {kind} back end lacks array {e}") from None
