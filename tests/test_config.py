import dataclasses
import re
import typing
from pathlib import Path

import pytest

from sslsv.config.load import config_from_dict, config_to_dict, load_config, save_config
from sslsv.config.schema import Config
from sslsv.errors import ConfigError
from sslsv.methods.classifier import ClassifierConfig
from sslsv.methods.dino import DINOConfig
from sslsv.methods.moco import MoCoConfig
from sslsv.methods.simclr import SimCLRConfig

REPO = Path(__file__).resolve().parents[1]


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*train\.epochz"):
        load_config(path)


def test_wrong_type_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("method:\n  margin: high\n")
    with pytest.raises(ConfigError, match="method.margin"):
        load_config(path)


def test_round_trip_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("experiment: x\nmethod: {margin: 0.2}\n")
    cfg = load_config(path, ["train.epochs=3", "method.symmetric=false"])
    assert (cfg.experiment, cfg.method.margin, cfg.train.epochs, cfg.method.symmetric) == (
        "x",
        0.2,
        3,
        False,
    )
    save_config(cfg, tmp_path / "out.yaml")
    assert load_config(tmp_path / "out.yaml") == cfg


def test_base_files_merge_and_loops_are_errors(tmp_path):
    (tmp_path / "base.yaml").write_text("experiment: b\nmethod: {margin: 0.2, scale: 10}\n")
    (tmp_path / "row.yaml").write_text("base: base.yaml\nexperiment: r\nmethod: {margin: 0.0}\n")
    cfg = load_config(tmp_path / "row.yaml")
    assert (cfg.experiment, cfg.method.margin, cfg.method.scale) == ("r", 0.0, 10.0)
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
        ("method.scale=0", "'method.scale' is 0.0; it must be > 0"),
        ("method.margin=2.0", "'method.margin' is 2.0; it must be >= 0 and < 1"),
        ("method.ssps.clusters=0", "'method.ssps.clusters' is 0; it must be >= 1"),
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
    attribute, or a recipe asks for it with `sslsv.bin.config --get`. The method section is
    each built-in method's own config class."""
    from sslsv.methods import METHODS

    sources = (REPO / "sslsv").rglob("*.py")
    code = "".join(p.read_text() for p in sources if p.parent.name != "config")
    scripts = [REPO / "egs" / "TEMPLATE" / "sv.sh", *(REPO / "steps").glob("*.sh")]
    recipes = "".join(p.read_text() for p in scripts)
    keys = list(_fields(Config))
    assert len({"simclr", "moco", "dino", "classifier"} & set(METHODS)) == 4
    for name in ("simclr", "moco", "dino", "classifier"):
        keys += list(_fields(METHODS[name].config_class, "method."))
    unread = [
        key
        for key, name in keys
        if not re.search(rf"\.{name}\b", code) and f"--get {key}" not in recipes
    ]
    assert len(keys) > 60 and unread == []


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


# -------------------------------------------- configs written before per-method config classes

#: The method and loss sections as config.yaml, checkpoints and model files held them before
#: each method had its own config class: every method's keys side by side in one section, the
#: loss settings in another, all spelled out at their defaults of the time.
OLD_METHOD = {
    "name": "simclr", "projector": [], "momentum": 0.999, "momentum_end": 1.0,
    "queue_size": 32768, "subcenters": 1, "head_hidden": 2048, "head_bottleneck": 256,
    "head_out": 65536, "local_crops": 4, "local_crop_seconds": 2.0, "student_temperature": 0.1,
    "teacher_temperature": 0.04, "teacher_temperature_start": 0.04,
    "teacher_temperature_warmup": 0.0, "center_momentum": 0.9, "freeze_last_layer_epochs": 1,
    "ssps": {"enabled": False, "start": 0.5, "queue_size": 50000, "clusters": 2500,
             "kmeans_iters": 10, "draws": 8},
}  # fmt: skip
OLD_LOSS = {"scale": 30.0, "margin": 0.1, "symmetric": True, "margin_warmup": 0.0}


def old_layout(cfg: Config) -> dict:
    """``cfg`` as the old code saved it: its method's keys and loss keys at their places in
    the two old sections, every other old key at its old default."""
    new = config_to_dict(cfg)
    method = new.pop("method")
    new["method"] = {**OLD_METHOD, **{k: v for k, v in method.items() if k not in OLD_LOSS}}
    new["loss"] = {**OLD_LOSS, **{k: v for k, v in method.items() if k in OLD_LOSS}}
    if method["name"] == "dino":
        new["loss"]["margin"] = 0.0  # what the old code required of DINO
    return new


def test_an_old_layout_dict_loads_as_its_methods_config():
    # The old recipes' base.yaml gave every row MoCo's momentum and queue size: keys that
    # SimCLR, DINO and the classifier did not read, dropped whatever their value.
    ignored = {"momentum": 0.99, "queue_size": 1024}
    simclr = {**config_to_dict(Config()), "method": {**OLD_METHOD, **ignored},
              "loss": {**OLD_LOSS, "margin": 0.2, "symmetric": False}}  # fmt: skip
    cfg = config_from_dict(simclr)
    assert cfg.method == SimCLRConfig(margin=0.2, symmetric=False)
    moco = {**simclr, "method": {**OLD_METHOD, **ignored, "name": "moco"}, "loss": OLD_LOSS}
    assert config_from_dict(moco).method == MoCoConfig(momentum=0.99, queue_size=1024)
    classifier = {**simclr, "method": {**OLD_METHOD, "name": "classifier", "subcenters": 2},
                  "loss": {**OLD_LOSS, "margin": 0.2, "margin_warmup": 0.3}}  # fmt: skip
    want = ClassifierConfig(subcenters=2, margin=0.2, margin_warmup=0.3)
    assert config_from_dict(classifier).method == want
    dino = {**simclr, "method": {**OLD_METHOD, "name": "dino", "head_out": 1024},
            "loss": {**OLD_LOSS, "margin": 0.0}}  # fmt: skip
    assert config_from_dict(dino).method == DINOConfig(head_out=1024)
    # What the old code refused stays refused: a margin for DINO (the old default 0.1).
    dino["loss"] = OLD_LOSS
    with pytest.raises(ConfigError, match=r"^<checkpoint>: 'loss.margin' is 0.1 but method 'dino'"):
        config_from_dict(dino)
    # Keys of neither old section are still unknown keys.
    with pytest.raises(ConfigError, match="unknown key 'method.typo' for method 'simclr'"):
        config_from_dict({**simclr, "method": {**OLD_METHOD, "typo": 1}})
    with pytest.raises(ConfigError, match="unknown config key 'loss.typo'"):
        config_from_dict({**simclr, "loss": {"typo": 1}})


def test_an_old_layout_file_with_base_files_loads_as_it_did(tmp_path):
    """The old librispeech layout: a base with MoCo's keys under a simclr section, a MoCo
    row that names moco only, a DINO row with loss.margin 0: every key merges as it did."""
    (tmp_path / "base.yaml").write_text(
        "method: {name: simclr, momentum: 0.99, queue_size: 1024}\n"
        "loss: {scale: 30.0, margin: 0.1, symmetric: true}\n"
    )
    (tmp_path / "moco.yaml").write_text("base: base.yaml\nmethod: {name: moco}\n")
    (tmp_path / "dino.yaml").write_text(
        "base: base.yaml\nmethod: {name: dino, head_out: 64}\nloss: {margin: 0.0}\n"
    )
    assert load_config(tmp_path / "moco.yaml").method == MoCoConfig(momentum=0.99, queue_size=1024)
    # DINO read momentum too: the base's 0.99 is its momentum, as it was.
    assert load_config(tmp_path / "dino.yaml").method == DINOConfig(head_out=64, momentum=0.99)
    with pytest.raises(ConfigError, match=r"'loss.margin=0.2': .* now: method.margin$"):
        load_config(tmp_path / "moco.yaml", ["loss.margin=0.2"])


def test_a_row_naming_another_method_starts_its_method_section_afresh(tmp_path):
    (tmp_path / "base.yaml").write_text("method: {name: simclr, margin: 0.2, projector: [8]}\n")
    (tmp_path / "cls.yaml").write_text("base: base.yaml\nmethod: {name: classifier}\n")
    (tmp_path / "row.yaml").write_text("base: base.yaml\nmethod: {symmetric: false}\n")
    assert load_config(tmp_path / "cls.yaml").method == ClassifierConfig()
    assert load_config(tmp_path / "row.yaml").method == SimCLRConfig(
        margin=0.2, projector=[8], symmetric=False
    )
    # A key meant for the row's method in the base's section is an error, not dropped.
    (tmp_path / "base.yaml").write_text("method: {name: simclr, queue_size: 64}\n")
    (tmp_path / "moco.yaml").write_text("base: base.yaml\nmethod: {name: moco}\n")
    with pytest.raises(ConfigError, match=r"base\.yaml: unknown key 'method.queue_size' for"):
        load_config(tmp_path / "moco.yaml")


def test_a_model_file_and_an_experiment_of_the_old_layout_still_serve(tmp_path, tone_data_dir):
    """final.pt and a training checkpoint with an old-layout config: the model loads with
    its method's config, the experiment continues (resumes, its config.yaml unchanged)."""
    import torch
    import yaml

    from sslsv.bin import train as train_cli
    from sslsv.train.checkpoint import load_model, load_safe, model_payload

    exp = tmp_path / "exp"
    overrides = ["method.name=moco", "method.queue_size=8", "method.margin=0.2",
                 "encoder.name=resnet",
                 "encoder.args={channels: [4, 8], blocks: [1, 1], embed_dim: 8}",
                 "augment.enabled=false", "train.batch_size=4", "train.num_workers=0",
                 "train.crop_seconds=0.5"]  # fmt: skip
    args = ["--data", str(tone_data_dir), "--exp-dir", str(exp), "--override", *overrides]
    config = tmp_path / "c.yaml"
    config.write_text("experiment: old\n")
    assert train_cli.main(["--config", str(config), *args, "train.epochs=1"]) == 0
    cfg = load_config(config, [*overrides, "train.epochs=1"])
    old = old_layout(cfg)
    assert old["method"]["momentum"] == 0.999 and old["loss"]["margin"] == 0.2
    # Rewrite what the old code would have written: config.yaml, the checkpoint, final.pt.
    (exp / "config.yaml").write_text(yaml.safe_dump(old))
    ckpt = exp / "checkpoints" / "epoch-0001.pt"
    state = load_safe(ckpt)
    torch.save({**state, "config": old}, ckpt)
    torch.save(model_payload(old, load_safe(exp / "final.pt")["model"]), exp / "final.pt")
    model, loaded = load_model(exp / "final.pt")
    assert loaded.method == cfg.method and model.embed_dim == 8
    # One more epoch: the saved config (old layout) is the same experiment, it resumes.
    (exp / "final.pt").unlink()
    assert train_cli.main(["--config", str(config), *args, "train.epochs=2"]) == 0
    assert (exp / "checkpoints" / "epoch-0002.pt").exists()
    # And a real change is still named.
    changed = [*args, "train.epochs=2", "method.margin=0.3"]
    assert train_cli.main(["--config", str(config), *changed]) == 1
