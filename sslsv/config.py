"""Typed experiment configuration, loaded from YAML with strict key checking.

Every section is a dataclass. Unknown keys are errors naming the key and the file, so a
typo in ``conf/*.yaml`` never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sslsv.fileio import atomic_write


class ConfigError(ValueError):
    """Invalid configuration; the message names the file and the key."""


@dataclass
class FeaturesConfig:
    """Log-mel front end (the paper's: 40 bins, 25 ms Hamming, 10 ms hop, 512-point FFT)."""

    sample_rate: int = 16000
    n_mels: int = 40
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    f_min: float = 20.0
    f_max: float = 7600.0
    log_offset: float = 1e-6


@dataclass
class EncoderConfig:
    """An encoder from the registry (``sslsv.models``) and its constructor arguments."""

    name: str = "fast_resnet34"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class LossConfig:
    """NT-Xent-AM: cosine logits times ``scale``; ``margin`` subtracted from positives."""

    scale: float = 30.0
    margin: float = 0.1
    symmetric: bool = True
    # Share of training (0-1) over which the margin ramps linearly from 0 to ``margin``.
    margin_warmup: float = 0.0


@dataclass
class MethodConfig:
    """SSL method: ``simclr`` or ``moco``."""

    name: str = "simclr"
    # Hidden/out sizes of an optional MLP projector; empty means none (the paper's SimCLR).
    projector: list[int] = field(default_factory=list)
    momentum: float = 0.999
    queue_size: int = 32768


@dataclass
class NoiseCategoryConfig:
    """One noise category. Unset ``snr_db``/``num_sources`` take the MUSAN-style defaults of
    the category's name: noise 0-15 dB, speech 13-20 dB from 3-7 talkers, music 5-15 dB."""

    data_dir: str = ""
    snr_db: list[float] | None = None
    num_sources: list[int] | None = None
    weight: float = 1.0


@dataclass
class AugmentConfig:
    """Waveform augmentation of each crop: reverberation, then additive noise."""

    enabled: bool = True
    rir_dir: str = ""
    rir_prob: float = 0.5
    noise_prob: float = 0.8
    noise: dict[str, NoiseCategoryConfig] = field(default_factory=dict)
    # Cap on seconds of noise audio held in memory per category.
    max_noise_seconds: float = 3600.0


@dataclass
class TrainConfig:
    epochs: int = 150
    batch_size: int = 256  # global, whatever the number of processes
    crop_seconds: float = 2.0
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_decay: float = 0.95
    lr_decay_every: int = 5  # epochs
    num_workers: int = 4
    seed: int = 0
    precision: str = "fp32"  # fp32 | bf16
    compile: bool = False
    channels_last: bool = False  # NHWC layout for 2-D convolutions (ResNets; tensor cores)
    deterministic: bool = False
    sync_batchnorm: bool = True
    checkpoint_every: int = 1  # epochs
    checkpoint_every_steps: int = 0  # also mid-epoch (0: no); resumes continue at that step
    keep_checkpoints: int = 5
    average_last: int = 1  # average the last N epoch checkpoints into final.pt
    log_every: int = 10  # steps: loss read from the device, progress bar and TensorBoard


@dataclass
class ExtractConfig:
    """Stage 3. ``crop_seconds: 0`` embeds each utterance whole, one at a time; otherwise an
    utterance is ``num_crops`` evenly spaced crops (the reference sslsv protocol), and the
    crops of ``batch_size // num_crops`` utterances (at least one) share a forward pass."""

    crop_seconds: float = 0.0
    num_crops: int = 6
    batch_size: int = 256
    num_workers: int = 4  # DataLoader readers per job on CUDA; CPU jobs read in-process


@dataclass
class ScoringConfig:
    """Stages 4-5. ``cosine`` with mean subtraction and per-utterance cohorts is label-free;
    ``plda`` (and LDA) and ``cohort_speaker_means`` use the training set's speaker labels."""

    backend: str = "cosine"  # cosine | plda
    subtract_mean: bool = True  # cosine: subtract the mean training embedding
    lda_dim: int = 0  # plda: LDA dimension before PLDA (0: none)
    whiten: bool = False  # plda: whiten before LDA/PLDA
    plda_iters: int = 10
    norm: str = "none"  # none | z | t | s | as, cohort = the training set's embeddings
    top_k: int = 300  # as-norm: cohort scores per side
    cohort_speaker_means: bool = False
    p_target: list[float] = field(default_factory=lambda: [0.01])


@dataclass
class Config:
    experiment: str = "simclr_ntxent_am"
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)


def from_plain(cls: Any, data: Any, where: str, source: str) -> Any:
    """Build a (nested) dataclass or typed value from plain YAML data, strictly."""
    origin = typing.get_origin(cls)
    if dataclasses.is_dataclass(cls):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: '{where}' must be a mapping, got {data!r}")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key not in names:
                full = f"{where}.{key}" if where else key
                raise ConfigError(
                    f"{source}: unknown config key '{full}' (known: {', '.join(sorted(names))})"
                )
        kwargs = {
            k: from_plain(hints[k], v, f"{where}.{k}" if where else k, source)
            for k, v in data.items()
        }
        return cls(**kwargs)
    if origin is dict:
        key_type, value_type = typing.get_args(cls)
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: '{where}' must be a mapping, got {data!r}")
        return {str(k): from_plain(value_type, v, f"{where}.{k}", source) for k, v in data.items()}
    if origin is list:
        (item_type,) = typing.get_args(cls)
        if not isinstance(data, list):
            raise ConfigError(f"{source}: '{where}' must be a list, got {data!r}")
        return [from_plain(item_type, v, f"{where}[{i}]", source) for i, v in enumerate(data)]
    if origin in (typing.Union, types.UnionType):
        return data
    if cls is Any:
        return data
    if cls is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if cls in (int, float, str, bool) and not (
        isinstance(data, cls) and not (cls is int and isinstance(data, bool))
    ):
        raise ConfigError(
            f"{source}: '{where}' must be {cls.__name__}, got {type(data).__name__} {data!r}"
        )
    return data


def _set_path(tree: dict, dotted: str, value: Any) -> None:
    node = tree
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: '{part}' is not a section")
    node[last] = value


def _deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """Read a config file; a top-level ``base: other.yaml`` (relative to this file) is loaded
    first and this file's keys are merged over it, so a study's rows differ in a few lines."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: 'base' chain loops back to itself")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError:
        where = f" (base of {seen[-1]})" if seen else ""
        raise ConfigError(f"{path}: config file not found{where}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: 'base' must be a file name, got {base!r}")
    return _deep_merge(_read_yaml(path.parent / base, (*seen, path)), data)


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> Config:
    """Load ``path`` (YAML, safe loader) onto the defaults, then ``key.sub=value`` overrides."""
    data: dict = _read_yaml(Path(path)) if path else {}
    source = str(path) if path else "<defaults>"
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, value = item.split("=", 1)
        _set_path(data, key.strip(), yaml.safe_load(value))
    if overrides:
        source += f" (with overrides {' '.join(overrides)})"
    return from_plain(Config, data, "", source)


def config_from_dict(data: dict, source: str = "<checkpoint>") -> Config:
    return from_plain(Config, data, "", source)


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config (every default spelled out) next to the experiment."""
    with atomic_write(Path(path)) as f:
        yaml.safe_dump(config_to_dict(cfg), f, sort_keys=False)
