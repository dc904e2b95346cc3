"""The method contract (sslsv.methods.base): a new method is one file, trained through the
CLI with no other file of the package touched; a key that is not the method's is refused at
load, naming the method and its keys; the contract's defaults; what the trainer reports."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import MEAN_LINEAR, REPO

from sslsv.config.load import load_config
from sslsv.config.schema import MethodConfig
from sslsv.errors import ConfigError
from sslsv.losses import margin_at
from sslsv.methods import METHODS, Method, StepInfo, build_method, register_method
from sslsv.models.embedding import EmbeddingModel

#: A whole method in one module: its config (a key of its own, with a range) and a loss that
#: pulls embeddings to unit mean square, over one crop per utterance.
TOY_METHOD = '''
"""A toy method: one crop, loss |mean(z^2) - 1| times ``weight``."""

from dataclasses import dataclass

import torch

from sslsv.config.schema import MethodConfig, checked
from sslsv.methods import Method, StepInfo, register_method


@dataclass
class ToyConfig(MethodConfig):
    name: str = "toy"
    weight: float = checked(1.0, above=0)


@register_method("toy")
class Toy(Method):
    config_class = ToyConfig

    def __init__(self, cfg, model, num_classes=0):
        super().__init__(cfg, model, num_classes)
        self.weight = cfg.method.weight

    @classmethod
    def crop_plan(cls, cfg):
        return [(1, cfg.train.crop_seconds)]

    def forward(self, feats, labels=None, info=None):
        info = info or StepInfo()
        z = self.model.forward_features(feats[:, 0])
        loss = self.weight * (z.pow(2).mean() - 1).abs()
        return loss, {"accuracy": torch.zeros((), device=z.device), "progress": info.progress}
'''

TOY_CONFIG = """
experiment: toy
encoder:
  name: resnet
  args: {channels: [4, 8], blocks: [1, 1], embed_dim: 8}
method: {name: toy, weight: 0.5}
augment: {enabled: false}
train: {epochs: 1, batch_size: 8, num_workers: 0, crop_seconds: 0.5}
"""


def run(args: list[str], plugins: str | None, path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SSLSV_PLUGINS"}
    env["PYTHONPATH"] = os.pathsep.join([str(path), str(REPO), env.get("PYTHONPATH", "")])
    if plugins is not None:
        env["SSLSV_PLUGINS"] = plugins
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_a_method_in_one_file_trains_through_the_cli(tmp_path, tone_data_dir):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "toy_method.py").write_text(TOY_METHOD)
    config = tmp_path / "toy.yaml"
    config.write_text(TOY_CONFIG)
    exp = tmp_path / "exp"
    train = ["-m", "sslsv.bin.train", "--config", str(config), "--data", str(tone_data_dir)]
    # 16 utterances in batches of 8: two steps.
    done = run([*train, "--exp-dir", str(exp)], "toy_method", plugins)
    assert done.returncode == 0, done.stderr
    log = (exp / "log" / "train.log").read_text().splitlines()
    assert len(log) == 1 and log[0].startswith("epoch 1 loss "), log
    saved = yaml.safe_load((exp / "config.yaml").read_text())
    assert saved["method"] == {"name": "toy", "weight": 0.5}
    # Its model file serves any command that has the plugin: the config is the toy's.
    show = (
        "import sys; from sslsv.train.checkpoint import load_model\n"
        "print(load_model(sys.argv[1])[1].method)"
    )
    loaded = run(["-c", show, str(exp / "final.pt")], "toy_method", plugins)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "ToyConfig(name='toy', weight=0.5)"
    # A key that is not the toy's is refused at load, naming the method and its keys.
    typo = run([*train, "--exp-dir", str(tmp_path / "x"), "--override", "method.wieght=1"],
               "toy_method", plugins)  # fmt: skip
    assert typo.returncode == 1
    want = "unknown key 'method.wieght' for method 'toy' (its keys: name, weight)"
    assert typo.stderr.strip().endswith(want), typo.stderr
    assert not (tmp_path / "x").exists()
    # Without the plugin no command knows the method; a plugin that is not there is named.
    unknown = run([*train, "--exp-dir", str(tmp_path / "y")], None, plugins)
    assert "'method.name' is 'toy'; allowed: classifier, dino, moco, simclr" in unknown.stderr
    missing = run([*train, "--exp-dir", str(tmp_path / "y")], "toy_methd", plugins)
    assert missing.returncode == 1
    assert "SSLSV_PLUGINS: cannot import 'toy_methd'" in missing.stderr


def test_a_key_of_another_method_is_refused_at_load_naming_the_method(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("method: {name: simclr, head_out: 1024}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    keys = "margin, margin_warmup, name, projector, scale, ssps, symmetric"
    assert str(err.value) == (
        f"{path}: unknown key 'method.head_out' for method 'simclr' (its keys: {keys})"
    )
    # DINO has no margin; the classifier has neither a projector nor positive sampling.
    for name, key in (("dino", "margin"), ("classifier", "projector"), ("classifier", "ssps")):
        with pytest.raises(ConfigError, match=f"'method.{key}' for method '{name}'"):
            load_config(None, [f"method.name={name}", f"method.{key}=0"])
    # Each method's own key loads, with its range checked.
    assert load_config(None, ["method.name=moco", "method.margin=0.2"]).method.margin == 0.2
    with pytest.raises(ConfigError, match="'method.head_out' is 1; it must be >= 2"):
        load_config(None, ["method.name=dino", "method.head_out=1"])


@dataclasses.dataclass
class BareConfig(MethodConfig):
    name: str = "bare"


class Bare(Method):
    """Only what a method must write itself (not registered: other tests list the names)."""

    config_class = BareConfig


def test_the_contracts_defaults():
    cfg = load_config(None, [f"encoder.name={MEAN_LINEAR}", "train.crop_seconds=1.5"])
    cfg = dataclasses.replace(cfg, method=BareConfig())
    model = EmbeddingModel(cfg)
    bare = Bare(cfg, model)
    assert (Bare.crop_plan(cfg), Bare.needs_labels) == ([(2, 1.5)], False)
    assert bare.model is model and bare.embedding_models() == [model]
    before = [p.clone() for p in bare.parameters()]
    assert bare.seed_from_class_means(torch.ones(3, model.embed_dim)) is False
    assert all(torch.equal(a, b) for a, b in zip(before, bare.parameters()))
    with pytest.raises(NotImplementedError):
        bare(torch.zeros(2, 2, 40, 10))
    # A method is built with the config of its own class only.
    with pytest.raises(TypeError, match="needs a BareConfig"):
        Bare(load_config(None, [f"encoder.name={MEAN_LINEAR}"]), model)
    # Registration checks the class and its config's name, and leaves the registry alone.
    no_config = type("NoConfig", (Method,), {})
    misnamed = type("Misnamed", (Method,), {"config_class": BareConfig})
    for cls, why in ((no_config, "must subclass MethodConfig"), (misnamed, "defaults to")):
        with pytest.raises(TypeError, match=why):
            register_method("other")(cls)
    assert "other" not in METHODS and "bare" not in METHODS


def test_the_built_in_methods_state_what_differs_from_the_defaults():
    cfg = load_config(None, [f"encoder.name={MEAN_LINEAR}", "method.name=classifier"])
    classifier = build_method(cfg, EmbeddingModel(cfg), num_classes=3)
    assert (classifier.crop_plan(cfg), classifier.needs_labels) == ([(1, 2.0)], True)
    means = torch.randn(3, classifier.model.embed_dim)
    assert classifier.seed_from_class_means(means) is True
    torch.testing.assert_close(classifier.centres, torch.nn.functional.normalize(means, dim=-1))
    assert {n: METHODS[n].name for n in METHODS} == {n: n for n in METHODS}
    assert all(METHODS[n].config_class().name == n for n in METHODS)


@pytest.mark.parametrize("name", ["simclr", "moco", "classifier"])
def test_each_margin_method_reports_its_scheduled_margin(name):
    cfg = load_config(None, [f"encoder.name={MEAN_LINEAR}", f"method.name={name}",
                             "method.margin=0.2", "method.margin_warmup=0.5"])  # fmt: skip
    if name == "moco":
        cfg.method.queue_size = 8
    torch.manual_seed(0)
    method = build_method(cfg, EmbeddingModel(cfg), num_classes=3)
    feats = torch.randn(4, 1 if name == "classifier" else 2, 40, 10)
    labels = torch.tensor([0, 1, 2, 0])
    for progress in (0.0, 0.25, 0.8):
        loss, metrics = method(feats, labels, StepInfo(progress=progress))
        assert metrics["margin"] == pytest.approx(margin_at(progress, 0.2, 0.5))
        assert isinstance(metrics["margin"], float) and metrics["accuracy"].dim() == 0
        assert loss.dim() == 0 and loss.requires_grad


def test_train_step_returns_every_metric_of_the_method(tmp_path, tone_data_dir):
    from sslsv.train.trainer import Trainer

    cfg = load_config(None, [
        f"encoder.name={MEAN_LINEAR}", "method.margin=0.2", "method.margin_warmup=0.5",
        "augment.enabled=false", "train.batch_size=4", "train.num_workers=0",
        "train.crop_seconds=0.5", "train.epochs=2",
    ])  # fmt: skip
    trainer = Trainer(cfg, tone_data_dir, tmp_path / "exp", "cpu")
    waves = 0.1 * torch.randn(4, 2, 8000, generator=torch.Generator().manual_seed(0))
    loss, metrics = trainer.train_step(waves, 0, 1)
    progress = 1 / (2 * trainer.steps_per_epoch)
    assert set(metrics) == {"accuracy", "margin"}
    assert metrics["margin"] == pytest.approx(margin_at(progress, 0.2, 0.5))
    assert metrics["accuracy"].dim() == 0 and 0 <= float(metrics["accuracy"]) <= 1
    assert loss.dim() == 0 and bool(torch.isfinite(loss))
