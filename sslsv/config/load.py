"""Reading an experiment config: YAML (safe loader, ``base:`` files, overrides) into the
dataclasses of :mod:`sslsv.config.schema`, checked completely at load.

Before any stage runs: unknown keys, wrong types, enumerated values outside their choices,
values outside their ranges, inconsistent settings and names that no registry knows
(``method.name``, ``encoder.name`` and its ``args``, ``scoring.backend``) are errors naming
the file, the key, the value and what is allowed. So a typo in ``conf/*.yaml`` never falls
back to a default and never surfaces hours into a run.

The ``method`` section is read into the config class of the method it names
(:class:`sslsv.config.schema.MethodConfig` subclasses, defined beside each method): a key of
another method is an error naming the method and its keys. Configs written before each
method had its own section (a ``loss`` section beside one method section holding every
method's keys: ``config.yaml``, checkpoints, ``final.pt``, packaged models) still load, by
:func:`upgrade_legacy`.
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

from sslsv.config.schema import DEFAULT_METHOD, MUSAN_DEFAULTS, Config, MethodConfig
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
    if cls is MethodConfig:  # the section is the named method's own config class
        cls = _method_config_class(data, where, source)
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
                known = ", ".join(sorted(names))
                if issubclass(cls, MethodConfig):
                    method = data.get("name", DEFAULT_METHOD)
                    raise ConfigError(
                        f"{source}: unknown key '{full}' for method '{method}' (its keys: {known})"
                    )
                raise ConfigError(f"{source}: unknown config key '{full}' (known: {known})")
        kwargs = {
            k: from_plain(hints[k], v, f"{where}.{k}" if where else k, source)
            for k, v in data.items()
        }
        try:
            out = cls(**kwargs)
        except ValueError as e:  # a section's own check across its keys (__post_init__)
            raise ConfigError(f"{source}: {e}") from None
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


def _methods() -> dict:
    # Imported when needed, not at the top: the registry imports torch (seconds), which a
    # command that only reads a config section does not need until it checks one.
    from sslsv.methods import METHODS

    return METHODS


def _method_config_class(data: Any, where: str, source: str) -> type[MethodConfig]:
    """The config class of the method that a ``method`` section names (default: simclr)."""
    name = data.get("name", DEFAULT_METHOD) if isinstance(data, dict) else DEFAULT_METHOD
    key = f"{where}.name"
    if not isinstance(name, str):
        raise ConfigError(f"{source}: '{key}' must be str, got {type(name).__name__} {name!r}")
    methods = _methods()
    if name not in methods:
        raise ConfigError(f"{source}: '{key}' is {name!r}; allowed: {', '.join(sorted(methods))}")
    return methods[name].config_class


#: The keys of the two sections that configs written before each method had a config class
#: of its own held: ``loss`` (NT-Xent-AM / AAM settings) and ``method`` (every method's keys
#: side by side, each method reading its own).
LEGACY_LOSS_KEYS = ("scale", "margin", "symmetric", "margin_warmup")
LEGACY_METHOD_KEYS = (
    "name", "projector", "momentum", "momentum_end", "queue_size", "subcenters",
    "head_hidden", "head_bottleneck", "head_out", "local_crops", "local_crop_seconds",
    "student_temperature", "teacher_temperature", "teacher_temperature_start",
    "teacher_temperature_warmup", "center_momentum", "freeze_last_layer_epochs", "ssps",
)  # fmt: skip


def upgrade_legacy(data: dict, source: str) -> dict:
    """A config dict in the layout before each method had its own config class (it has a
    top-level ``loss`` section), in today's layout; any other dict unchanged.

    ``loss.*`` keys move into the method section where the named method has them (the
    margin and scale of simclr, moco and classifier; ``symmetric`` of simclr and moco).
    Keys of the old sections that the method does not have are dropped: the old code did
    not read them, so they had no effect on what was trained (the recipes' shared
    ``base.yaml`` files spelled out MoCo's keys for every row). The one exception is what
    the old code refused: a non-zero ``loss.margin`` for a method without a margin (DINO)
    stays an error, naming the key."""
    if "loss" not in data:
        return data
    data = dict(data)
    loss = data.pop("loss")
    loss = {} if loss is None else loss
    method = {} if data.get("method") is None else data["method"]
    if not isinstance(loss, dict):
        raise ConfigError(f"{source}: 'loss' must be a mapping, got {loss!r}")
    if not isinstance(method, dict):
        raise ConfigError(f"{source}: 'method' must be a mapping, got {method!r}")
    name = method.get("name", DEFAULT_METHOD)
    cls = _methods().get(name) if isinstance(name, str) else None
    if cls is None:
        return data  # from_plain names the unknown method, and the names it knows
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    method = {k: v for k, v in method.items() if k in fields or k not in LEGACY_METHOD_KEYS}
    for key, value in loss.items():
        if key not in LEGACY_LOSS_KEYS:
            known = ", ".join(LEGACY_LOSS_KEYS)
            raise ConfigError(f"{source}: unknown config key 'loss.{key}' (known: {known})")
        if key in fields:
            if key in method:
                raise ConfigError(
                    f"{source}: 'loss.{key}' and 'method.{key}' are both given: keep "
                    f"method.{key} (the loss section is the method's now)"
                )
            method[key] = value
        elif key == "margin" and value != 0:
            raise ConfigError(
                f"{source}: 'loss.margin' is {value!r} but method '{name}' has no margin "
                "to apply it to; set it to 0, or remove it"
            )
    data["method"] = method
    return data


def _merge_over_base(base: dict, top: dict, source: str) -> dict:
    """``top`` merged over ``base``, except that a ``method`` section of ``top`` naming
    another method than the base's (default: simclr) replaces the base's: one method's keys
    are not another's. The base's section must then hold only its own method's keys (a key
    meant for the row's method is an error, not silently dropped). In the layout before each
    method had its own section (a ``loss`` section: :func:`upgrade_legacy`) every key merges,
    as it did then."""
    merged = _deep_merge(base, top)
    mine, theirs = top.get("method"), base.get("method")
    legacy = "loss" in base or "loss" in top
    if legacy or not (isinstance(mine, dict) and isinstance(theirs, dict) and "name" in mine):
        return merged
    name = theirs.get("name", DEFAULT_METHOD)
    if mine["name"] != name:
        _method_config_class(theirs, "method", source)  # a known name, or the error
        from_plain(MethodConfig, theirs, "method", source)  # only its own keys
        merged["method"] = mine
    return merged


def default_config_dict(method: str = DEFAULT_METHOD) -> dict:
    """Every key's default (:func:`config_to_dict` of the defaults) with method ``method``."""
    return config_to_dict(Config(method=_methods()[method].config_class()))


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
    first and this file's keys are merged over it, so a study's rows differ in a few lines
    (a row whose ``method.name`` differs from the base's starts its method section afresh)."""
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
    base_path = path.parent / base
    return _merge_over_base(_read_yaml(base_path, (*seen, path)), data, str(base_path))


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
    source = str(path) if path else "<defaults>"
    data: dict = upgrade_legacy(_read_yaml(Path(path)), source) if path else {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if key.split(".")[0] == "loss":
            new = "method." + key.split(".", 1)[-1]
            raise ConfigError(f"override {item!r}: the loss settings are the method's now: {new}")
        _set_path(data, key, yaml.safe_load(value))
    if overrides:
        source += f" (with overrides {' '.join(overrides)})"
    cfg = _complete(from_plain(Config, data, "", source), source)
    _resolve_paths(cfg, recipe_dir(path))
    return cfg


def config_from_dict(data: dict, source: str = "<checkpoint>") -> Config:
    """A config saved as a plain dict (in a checkpoint), checked like a file; one saved in
    the layout before each method had its own config class is upgraded
    (:func:`upgrade_legacy`)."""
    return _complete(from_plain(Config, upgrade_legacy(data, source), "", source), source)


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
    # Imported here, not at the top: the registry imports torch (seconds), which a command
    # that only reads a config section does not need until it checks one.
    from sslsv.models import encoder_problem

    methods = _methods()
    name = cfg.method.name
    if name not in methods:
        raise error("method.name", name, f"allowed: {', '.join(sorted(methods))}")
    if type(cfg.method) is not methods[name].config_class:  # a config built in code
        want = methods[name].config_class.__name__
        raise error("method.name", name, f"its section must be a {want}")
    problem = encoder_problem(cfg.encoder.name, cfg.encoder.args)
    if problem:
        raise ConfigError(f"{source}: {problem}")
    from sslsv.backend import BACKENDS

    if cfg.scoring.backend not in BACKENDS:
        allowed = f"allowed: {', '.join(sorted(BACKENDS))}"
        raise error("scoring.backend", cfg.scoring.backend, allowed)
    return cfg


def config_to_dict(cfg: Config) -> dict:
    """The config as plain data (what config.yaml and model files hold): the method section
    flat, its ``name`` first, then the named method's keys."""
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config (every default spelled out) next to the experiment."""
    with atomic_write(Path(path)) as f:
        yaml.safe_dump(config_to_dict(cfg), f, sort_keys=False)
