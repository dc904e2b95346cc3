"""The windowed loss reader of the training loop (sslsv.train.loop.LossWindow) against a
plain loop that reads every step: the same window means, epoch sums and last schedule
values; a non-finite loss raises naming its step; the device is read once per window; a
window's TensorBoard scalars."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from sslsv.train.loop import LossWindow, NonFiniteLossError, Progress
from sslsv.train.sync_probe import SyncProbe


def steps(n: int, seed: int = 0) -> list[tuple[torch.Tensor, dict]]:
    """n steps' (loss, metrics) as a trainer returns them: 0-dim tensors and a float."""
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(n, 2, generator=g, dtype=torch.float64).float()
    return [
        (values[i, 0].clone(), {"accuracy": values[i, 1].clone(), "margin": 0.1 * i})
        for i in range(n)
    ]


def plain_windows(data: list, log_every: int) -> list[dict]:
    """What a loop reading every step would log: per window of log_every steps (and the
    rest at the end), the mean loss and accuracy and the last margin."""
    windows = []
    for begin in range(0, len(data), log_every):
        chunk = data[begin : begin + log_every]
        windows.append(
            {
                "last_step": begin + len(chunk) - 1,
                "loss": sum(float(loss) for loss, _ in chunk) / len(chunk),
                "accuracy": sum(float(m["accuracy"]) for _, m in chunk) / len(chunk),
                "margin": chunk[-1][1]["margin"],
            }
        )
    return windows


@pytest.mark.parametrize("log_every", [1, 3, 4, 20])
def test_window_means_and_epoch_sums_match_a_plain_loop(log_every):
    data = steps(10)
    window = LossWindow(log_every)
    got = []
    for step, (loss, metrics) in enumerate(data):
        window.append(step, loss, metrics)
        if window.due:
            got.append(window.read())
    got.append(window.read())
    got = [w for w in got if w is not None]
    want = plain_windows(data, log_every)
    assert [w.last_step for w in got] == [w["last_step"] for w in want]
    for w, plain in zip(got, want):
        assert w.loss == pytest.approx(plain["loss"])
        assert w.metrics["accuracy"] == pytest.approx(plain["accuracy"])
        assert w.metrics["margin"] == plain["margin"]  # a schedule's value: the last one
    assert sum(w.steps for w in got) == window.steps == 10
    assert window.mean_loss() == pytest.approx(sum(float(loss) for loss, _ in data) / 10)
    assert window.mean("accuracy") == pytest.approx(sum(float(m["accuracy"]) for _, m in data) / 10)
    assert window.mean("absent") == 0.0 and window.read() is None and len(window) == 0


def test_a_non_finite_loss_raises_naming_its_step():
    data = steps(6)
    data[4] = (torch.tensor(float("nan")), data[4][1])
    window = LossWindow(3)
    read = []
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 4"):
        for step, (loss, metrics) in enumerate(data):
            window.append(step, loss, metrics)
            if window.due:
                read.append(window.read())
    assert len(read) == 1  # the first window was fine; the second raised when read
    # The caller's error, given what it needs: the value and the step.
    window = LossWindow(2, lambda value, step: ValueError(f"{value} {step}"))
    window.append(7, torch.tensor(math.inf))
    with pytest.raises(ValueError, match="^inf 7$"):
        window.read()


def test_the_device_is_read_once_per_window():
    """Appending never reads; each read is one host transfer for the whole window
    (counted by the probe that tests/test_host_sync.py uses for training steps)."""
    data = steps(8)
    device_tensors = [t for loss, m in data for t in (loss, m["accuracy"])]
    window = LossWindow(4)
    with SyncProbe(device_tensors) as probe:
        for step, (loss, metrics) in enumerate(data[:4]):
            window.append(step, loss, metrics)
        assert probe.summary() == {}
        window.read()
        assert list(probe.summary().values()) == [1]
        assert "tolist" in next(iter(probe.summary()))
        for step, (loss, metrics) in enumerate(data[4:], start=4):
            window.append(step, loss, metrics)
        window.read()
        assert list(probe.summary().values()) == [2]


def test_metrics_may_differ_between_steps():
    """A metric that only some steps report is averaged over those steps."""
    window = LossWindow(3)
    window.append(0, torch.tensor(1.0), {"accuracy": torch.tensor(0.5)})
    window.append(1, torch.tensor(3.0), {"accuracy": torch.tensor(1.0), "extra": torch.tensor(4)})
    window.append(2, torch.tensor(2.0))
    got = window.read()
    assert got.loss == 2.0 and got.steps == 3
    assert got.metrics == {"accuracy": 0.75, "extra": 4.0}


class Recorder:
    """A SummaryWriter's add_scalar, recorded."""

    def __init__(self) -> None:
        self.scalars: dict[str, tuple[float, int]] = {}

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars[tag] = (value, step)


def test_a_window_goes_to_tensorboard_with_every_metric():
    """train/loss, train/<metric> (means of tensors, last value of floats), train/lr and
    train/utts_per_second, at the global step of the window's last step."""
    writer = Recorder()
    trainer = SimpleNamespace(
        cfg=SimpleNamespace(train=SimpleNamespace(epochs=3)),
        writer=writer,
        optimizer=SimpleNamespace(param_groups=[{"lr": 0.002}]),
        steps_per_epoch=10,
        step=0,
        rank=1,  # no progress bar
    )
    progress = Progress(trainer, epoch=2)
    window = LossWindow(2)
    for step, (loss, metrics) in enumerate(steps(2)):
        window.append(step, loss, metrics)
    read = window.read()
    progress.utts = 8
    progress.show(read)
    assert set(writer.scalars) == {
        "train/loss", "train/accuracy", "train/margin", "train/lr", "train/utts_per_second"
    }  # fmt: skip
    assert {step for _, step in writer.scalars.values()} == {21}
    assert writer.scalars["train/loss"][0] == read.loss
    assert writer.scalars["train/margin"][0] == 0.1
    assert writer.scalars["train/lr"][0] == 0.002
    assert writer.scalars["train/utts_per_second"][0] > 0
