"""No training step makes the host wait for the device: for every method, with and without
SSPS, with waveform augmentation and spec masks on, the CPU probe
(:mod:`sslsv.train.sync_probe`) sees no host read, no tensor made of Python data and no
blocking copy issued by the project's code. (tests/test_cuda.py runs the same steps under
``torch.cuda.set_sync_debug_mode("error")`` where there is a GPU.)"""

from __future__ import annotations

import pytest
import torch

from sslsv.config.load import load_config
from sslsv.train.sync_probe import PACKAGE, SyncProbe, trainer_device_tensors
from sslsv.train.trainer import Trainer

DINO_SMALL = ("method.head_hidden=16", "method.head_bottleneck=8", "method.head_out=32",
              "method.local_crops=2", "method.local_crop_seconds=0.25")  # fmt: skip
# Sampling from the first step: k-means runs in the untimed first step, sampling after.
SSPS = ("method.ssps={enabled: true, start: 0, queue_size: 64, clusters: 3, kmeans_iters: 2}",)
CASES = {
    "simclr": (),
    "moco": (),
    "dino": DINO_SMALL,
    "classifier": (),
    # The loss gate from the first step, and label correction's per-utterance tables.
    "classifier+gate": (
        "method.gate={kind: fixed, threshold: 1.0, start_epoch: 0}",
        "method.correction.enabled=true",
    ),
    "simclr+ssps": SSPS,
    "moco+ssps": SSPS,
    "dino+ssps": DINO_SMALL + SSPS,
}


def make_trainer(tmp_path, data_dir, name: str) -> Trainer:
    method = name.split("+")[0]
    cfg = load_config(
        None,
        [
            "experiment=sync",
            "encoder.name=resnet",
            "encoder.args={channels: [4, 8], blocks: [1, 1], embed_dim: 16}",
            f"method.name={method}",
            *(["method.projector=[32]"] if method in ("simclr", "moco") else []),
            "augment.enabled=true",
            f"augment.rir_dir={data_dir}",  # any audio serves as impulse responses here
            "augment.rir_prob=0.5",
            "augment.noise_prob=0.9",
            f"augment.noise={{noise: {{data_dir: {data_dir}, snr_db: [0, 15]}}, "
            f"speech: {{data_dir: {data_dir}, snr_db: [13, 20], num_sources: [1, 2]}}}}",
            "augment.spec_freq_masks=2",
            "augment.spec_time_masks=2",
            "train.batch_size=4",
            "train.num_workers=0",
            "train.crop_seconds=0.5",
            "train.epochs=2",
            *CASES[name],
        ],
    )
    return Trainer(cfg, data_dir, tmp_path / f"exp-{name}", "cpu")


def batch(name: str) -> tuple:
    g = torch.Generator().manual_seed(0)
    views = 1 if name.startswith("classifier") else 2
    waves = 0.1 * torch.randn(4, views, 8000, generator=g)
    if name.startswith("dino"):  # multi-crop: global and local crops
        waves = [waves, 0.1 * torch.randn(4, 2, 4000, generator=g)]
    labels = torch.tensor([0, 1, 0, 1]) if name.startswith("classifier") else None
    return waves, labels


@pytest.mark.parametrize("name", list(CASES))
def test_no_step_makes_the_host_wait(tmp_path, tone_data_dir, name):
    trainer = make_trainer(tmp_path, tone_data_dir, name)
    waves, labels = batch(name)
    # The first step is left out, as on a GPU (lazy initialisation; SSPS's first k-means).
    trainer.train_step(waves, 0, 0, labels, torch.arange(4))
    with SyncProbe(trainer_device_tensors(trainer)) as probe:
        for step in range(1, 4):  # MoCo's queue and SSPS's memory filled, sampling on
            loss, metrics = trainer.train_step(waves, 0, step, labels, torch.arange(4) + 4 * step)
    assert probe.summary() == {}
    assert torch.isfinite(loss) and 0 <= float(metrics["accuracy"]) <= 1
    if "ssps" in name:  # the steps did sample pseudo-positives
        assert trainer.method.ssps.centroids.shape[0] == 3


def test_ssps_epoch_refresh_makes_the_host_wait_only_after_a_resume(tmp_path, tone_data_dir):
    """The once-an-epoch k-means is sync-free too; the one host read is the filled count
    after a checkpoint is loaded."""
    trainer = make_trainer(tmp_path, tone_data_dir, "simclr+ssps")
    waves, labels = batch("simclr+ssps")
    for step in range(3):
        trainer.train_step(waves, 0, step, labels, torch.arange(4) + 4 * step)
    with SyncProbe(trainer_device_tensors(trainer)) as probe:
        trainer.train_step(waves, 1, 0, labels, torch.arange(4))  # a new epoch: k-means
    assert probe.summary() == {}
    sampler = trainer.method.ssps
    sampler.load_state_dict(sampler.state_dict())
    with SyncProbe(trainer_device_tensors(trainer)) as probe:
        trainer.train_step(waves, 2, 0, labels, torch.arange(4))
    assert sorted(probe.summary().values()) == [1, 1]  # the filled count, the epoch


def run_as_package_code(source: str, module: str, env: dict) -> SyncProbe:
    """Run ``source`` as if it were a line of ``sslsv/<module>`` (the probe counts only the
    package's own code), under the probe, with the tensor ``x`` on the device."""
    code = compile(source, str(PACKAGE / module), "exec")
    with SyncProbe([env["x"]]) as probe:
        exec(code, env)
    return probe


def test_the_probe_sees_what_the_simclr_mask_did_before():
    """The self-mask as sslsv/losses.py:75 built it before: a Python scalar assigned
    through tensor indices on the device, one copy to the device per step."""
    env = {"torch": torch, "n": 4, "x": torch.zeros(8, 8)}
    source = (
        "mask = torch.zeros_like(x, dtype=torch.bool)\n"
        "rows = torch.arange(2 * n, device=x.device)\n"
        "mask[rows, rows] = True\n"
    )
    probe = run_as_package_code(source, "losses.py", env)
    assert probe.summary() == {"host data: aten.index_put_ at sslsv/losses.py:3": 1}


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("float(x.sum())", "host read: aten._local_scalar_dense"),
        ("x.tolist()", "host read: Tensor.tolist"),
        ("torch.bincount(x.long())", "host read: aten.bincount"),
        ("x[x > 0]", "host read: aten.index"),
        ("x.nonzero()", "host read: aten.nonzero"),
        ("torch.ones(3).to(x.device)", "blocking copy: Tensor.to"),
        ("torch.ones(3).to(device=x.device)", "blocking copy: Tensor.to"),
        ("x + torch.tensor([1.0, 2.0, 3.0])", "host data: aten.add"),
    ],
)
def test_the_probe_sees_each_kind(source, kind):
    probe = run_as_package_code(source, "methods/example.py", {"torch": torch, "x": torch.ones(3)})
    assert probe.summary() == {f"{kind} at sslsv/methods/example.py:1": 1}


@pytest.mark.parametrize(
    "source",
    [
        "torch.ones(3).to(x.device, non_blocking=True) + x",
        "x.to(torch.bfloat16)",
        "torch.eye(3, dtype=torch.bool, device=x.device) & (x > 0)",
        "(x[:, None] == x[None]).sum()",
        "float(torch.ones(3).sum()); torch.ones(3).nonzero()",  # host tensors, read on the host
    ],
)
def test_the_probe_leaves_what_does_not_wait(source):
    probe = run_as_package_code(source, "methods/example.py", {"torch": torch, "x": torch.ones(3)})
    assert probe.summary() == {}


def test_the_probe_counts_only_the_packages_code():
    x = torch.ones(2)
    with SyncProbe([x]) as probe:
        float(x.sum())  # this test's own line
    assert probe.summary() == {}
