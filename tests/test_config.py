import dataclasses
import re
import typing
from pathlib import Path

import pytest

from sslsv.config.load import load_config, save_config
from sslsv.config.schema import Config
from sslsv.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*train\.epochz"):
        load_config(path)


def test_wrong_type_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("loss:\n  margin: high\n")
    with pytest.raises(ConfigError, match="loss.margin"):
        load_config(path)


def test_round_trip_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("experiment: x\nloss: {margin: 0.2}\n")
    cfg = load_config(path, ["train.epochs=3", "loss.symmetric=false"])
    assert (cfg.experiment, cfg.loss.margin, cfg.train.epochs, cfg.loss.symmetric) == (
        "x",
        0.2,
        3,
        False,
    )
    save_config(cfg, tmp_path / "out.yaml")
    assert load_config(tmp_path / "out.yaml") == cfg


def test_base_files_merge_and_loops_are_errors(tmp_path):
    (tmp_path / "base.yaml").write_text("experiment: b\nloss: {margin: 0.2, scale: 10}\n")
    (tmp_path / "row.yaml").write_text("base: base.yaml\nexperiment: r\nloss: {margin: 0.0}\n")
    cfg = load_config(tmp_path / "row.yaml")
    assert (cfg.experiment, cfg.loss.margin, cfg.loss.scale) == ("r", 0.0, 10.0)
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_config(tmp_path / "a.yaml")


@pytest.mark.parametrize(
    "key,value,allowed",
    [
        ("train.precision", "fp16", "fp32, bf16"),
        ("scoring.backend", "pdla", "cosine, plda"),
        ("scoring.norm", "snorm", "none, z, t, s, as"),
        ("method.name", "byol", "classifier, dino, moco, simclr"),
        ("encoder.name", "resnet34", "ecapa_tdnn, fast_resnet34, resnet"),
    ],
)
def test_enumerated_key_typo_names_key_value_allowed_values_and_file(tmp_path, key, value, allowed):
    path = tmp_path / "typo.yaml"
    section, name = key.split(".")
    path.write_text(f"{section}: {{{name}: {value}}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    if key == "encoder.name":  # other tests may register encoders of their own
        from sslsv.models import ENCODERS

        assert set(allowed.split(", ")) <= set(ENCODERS)
        allowed = ", ".join(sorted(ENCODERS))
    assert str(err.value) == f"{path}: '{key}' is {value!r}; allowed: {allowed}"


@pytest.mark.parametrize(
    "override,message",
    [
        ("loss.scale=0", "'loss.scale' is 0.0; it must be > 0"),
        ("loss.margin=2.0", "'loss.margin' is 2.0; it must be >= 0 and < 1"),
        ("train.batch_size=0", "'train.batch_size' is 0; it must be >= 2"),
        ("train.epochs=0", "'train.epochs' is 0; it must be >= 1"),
        ("train.crop_seconds=-1", "'train.crop_seconds' is -1.0; it must be > 0"),
        ("train.checkpoint_every_steps=-1", "it must be >= 0"),
        ("scoring.p_target=[0.01, 1.5]", "'scoring.p_target' is [0.01, 1.5]; it must be > 0"),
        ("features.f_max=9000", "'features.f_max' is 9000.0; it must be <= sample_rate / 2 = 8000"),
        ("encoder.args={depth: 3}", "'encoder.args' ['depth'] unknown for 'fast_resnet34'"),
    ],
)
def test_values_out_of_range_are_refused_at_load(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, [override])


def test_every_recipe_config_loads():
    """Every key of every egs/*/conf/*.yaml is a known field with a valid value."""
    configs = sorted((REPO / "egs").glob("*/conf/*.yaml"))
    assert len(configs) >= 10
    for path in configs:
        load_config(path)


def _fields(cls, prefix=""):
    """(dotted key, field name) of every field of a config dataclass, nested ones included."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        yield key, f.name
        inner = [t for t in typing.get_args(hints[f.name]) if dataclasses.is_dataclass(t)]
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _fields(hints[f.name], f"{key}.")
        for t in inner:  # dict[str, NoiseCategoryConfig]
            yield from _fields(t, f"{key}.<name>.")


def test_every_config_field_is_read_somewhere():
    """In the spirit of SpeechBrain's tests/consistency/test_yaml.py: a key that nothing reads
    cannot exist. A field counts as read when the package (sslsv/config/ aside) accesses it as an
    attribute, or a recipe asks for it with `sslsv.bin.config --get`."""
    sources = (REPO / "sslsv").rglob("*.py")
    code = "".join(p.read_text() for p in sources if p.parent.name != "config")
    recipes = "".join(p.read_text() for p in (REPO / "egs").glob("*/run.sh"))
    unread = [
        key
        for key, name in _fields(Config)
        if not re.search(rf"\.{name}\b", code) and f"--get {key}" not in recipes
    ]
    assert unread == []


COMMANDS = sorted(p.stem for p in (REPO / "sslsv" / "bin").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_says_what_it_reads_and_writes(command, capsys):
    """CLI conventions: main(argv) -> int; --help (exit 0) says what the command reads and
    writes (or prints) and offers --verbose."""
    import importlib

    module = importlib.import_module(f"sslsv.bin.{command}")
    assert typing.get_type_hints(module.main)["return"] is int
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--verbose" in text
    assert re.search(r"\bread", text, re.I) and re.search(r"\b(writ|print)", text, re.I), text
