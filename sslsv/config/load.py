"""Reading an experiment config: YAML (safe loader, ``base:`` files, overrides) into the
dataclasses of :mod:`sslsv.config.schema`, checked completely at load.

Before any stage runs: unknown keys, wrong types, enumerated values outside their choices,
values outside their ranges, inconsistent settings and names that no registry knows
(``method.name``, ``encoder.name`` and its ``args``) are errors naming the file, the key, the
value and what is allowed. So a typo in ``conf/*.yaml`` never falls back to a default and
never surfaces hours into a run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from sslsv.config.schema import MUSAN_DEFAULTS, Config
from sslsv.errors import ConfigError
from sslsv.fileio import atomic_write, utf8_text


def _out_of_bounds(value: Any, bounds: dict[str, float]) -> str | None:
    """Why ``value`` breaks ``bounds``, as the allowed range in words, or None."""
    if not bounds:
        return None
    for item in value if isinstance(value, list) else [value]:
        if item is None:
            continue
        ok = (
            math.isfinite(item)
            and item >= bounds.get("minimum", -math.inf)
            and item > bounds.get("above", -math.inf)
            and item < bounds.get("below", math.inf)
            and item <= bounds.get("maximum", math.inf)
        )
        if not ok:
            words = {"minimum": ">= {}", "above": "> {}", "below": "< {}", "maximum": "<= {}"}
            return "must be " + " and ".join(words[k].format(v) for k, v in bounds.items())
    return None


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
        out = cls(**kwargs)
        for f in dataclasses.fields(cls):
            why = _out_of_bounds(getattr(out, f.name), f.metadata.get("bounds", {}))
            if why:
                full = f"{where}.{f.name}" if where else f.name
                raise ConfigError(f"{source}: '{full}' is {getattr(out, f.name)!r}; it {why}")
        return out
    if origin is Literal:
        allowed = typing.get_args(cls)
        if data not in allowed or isinstance(data, bool):
            raise ConfigError(
                f"{source}: '{where}' is {data!r}; allowed: {', '.join(map(str, allowed))}"
            )
        return data
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
        if data is None and type(None) in typing.get_args(cls):
            return None
        (inner,) = [t for t in typing.get_args(cls) if t is not type(None)]
        return from_plain(inner, data, where, source)
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
        with utf8_text(path) as f:
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


def recipe_dir(path: str | os.PathLike | None) -> Path:
    """The directory that relative paths of config ``path`` are relative to: the recipe, i.e.
    the folder above ``conf/`` when the file sits in one, else the file's own folder (the
    current directory without a file). Links are not followed: a folder of links to a
    recipe's files is a recipe of its own."""
    if not path:
        return Path.cwd()
    folder = Path(path).absolute().parent
    return folder.parent if folder.name == "conf" else folder


def _resolve_paths(node: Any, base: Path) -> None:
    """Make every path field of a (nested) config absolute, against ``base``."""
    if isinstance(node, dict):
        for value in node.values():
            _resolve_paths(value, base)
        return
    if not dataclasses.is_dataclass(node):
        return
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if f.metadata.get("path") and value and not os.path.isabs(value):
            setattr(node, f.name, os.path.normpath(base / value))
        else:
            _resolve_paths(value, base)


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> Config:
    """Load ``path`` (YAML, safe loader) onto the defaults, then ``key.sub=value`` overrides;
    relative paths resolve against the config's recipe directory (:func:`recipe_dir`)."""
    data: dict = _read_yaml(Path(path)) if path else {}
    source = str(path) if path else "<defaults>"
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, value = item.split("=", 1)
        _set_path(data, key.strip(), yaml.safe_load(value))
    if overrides:
        source += f" (with overrides {' '.join(overrides)})"
    cfg = _complete(from_plain(Config, data, "", source), source)
    _resolve_paths(cfg, recipe_dir(path))
    return cfg


def config_from_dict(data: dict, source: str = "<checkpoint>") -> Config:
    """A config saved as a plain dict (in a checkpoint), checked like a file."""
    return _complete(from_plain(Config, data, "", source), source)


def _complete(cfg: Config, source: str) -> Config:
    """Check what spans several keys, fill the noise categories' defaults by name, and check
    the names that a registry must know."""

    def error(key: str, value: Any, why: str) -> ConfigError:
        return ConfigError(f"{source}: '{key}' is {value!r}; {why}")

    f = cfg.features
    if f.f_max > f.sample_rate / 2:
        nyquist = f.sample_rate / 2
        raise error("features.f_max", f.f_max, f"it must be <= sample_rate / 2 = {nyquist:g}")
    if f.f_min >= f.f_max:
        raise error("features.f_min", f.f_min, f"it must be < features.f_max {f.f_max}")
    if f.win_length > f.n_fft:
        raise error("features.win_length", f.win_length, f"it must be <= n_fft {f.n_fft}")
    for name, category in cfg.augment.noise.items():
        key = f"augment.noise.{name}"
        if not category.data_dir:
            raise ConfigError(f"{source}: '{key}.data_dir' is missing or empty")
        snr_db, num_sources = MUSAN_DEFAULTS.get(name, (None, [1, 1]))
        if category.snr_db is None:
            if snr_db is None:
                raise ConfigError(
                    f"{source}: '{key}.snr_db' is required: only categories named "
                    f"{', '.join(MUSAN_DEFAULTS)} have a default"
                )
            category.snr_db = list(snr_db)
        if category.num_sources is None:
            category.num_sources = list(num_sources)
        for field_name in ("snr_db", "num_sources"):
            pair = getattr(category, field_name)
            if len(pair) != 2 or pair[0] > pair[1]:
                raise error(f"{key}.{field_name}", pair, "it must be a [low, high] pair")
    pl = cfg.pseudo_label
    if pl.merge_to and pl.merge_threshold:
        why = f"give it or merge_threshold ({pl.merge_threshold}), not both (0: not used)"
        raise error("pseudo_label.merge_to", pl.merge_to, why)
    if pl.merge_to >= pl.kmeans_clusters:
        why = f"it must be < kmeans_clusters {pl.kmeans_clusters} (0: no merging)"
        raise error("pseudo_label.merge_to", pl.merge_to, why)
    # Imported here, not at the top: the registries import torch (seconds), which a command
    # that only reads a config section does not need until it checks one.
    from sslsv.methods import METHODS
    from sslsv.models import encoder_problem

    if cfg.method.name not in METHODS:
        raise error("method.name", cfg.method.name, f"allowed: {', '.join(sorted(METHODS))}")
    problem = encoder_problem(cfg.encoder.name, cfg.encoder.args)
    if problem:
        raise ConfigError(f"{source}: {problem}")
    return cfg


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config (every default spelled out) next to the experiment."""
    with atomic_write(Path(path)) as f:
        yaml.safe_dump(config_to_dict(cfg), f, sort_keys=False)
