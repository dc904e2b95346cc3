"""The epoch loop of training and what it logs.

A step's loss (and the method's metrics) stay on the device until they are read, in
windows of ``train.log_every`` steps and one transfer each: reading a value makes the host
wait for everything queued on the device, so reading every step would leave a GPU idle
while the host prepares the next step. :class:`LossWindow` keeps them, checks that the
losses are finite, sums them over the epoch and gives each window's means to the progress
bar and TensorBoard (:class:`Progress`). :func:`run_epochs` drives a
:class:`~sslsv.train.trainer.Trainer` through its epochs: its steps, step checkpoints, the
agreement of all ranks to stop on a signal (:mod:`sslsv.train.signals`), and after each
epoch its validation, checkpoint and line in ``train.log``.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TextIO

import torch
from tqdm import tqdm

from sslsv import distributed
from sslsv.errors import UserError
from sslsv.fileio import atomic_write
from sslsv.train import signals

if TYPE_CHECKING:
    from sslsv.train.trainer import Trainer

log = logging.getLogger(__name__)

#: Utterance ids a non-finite-loss error names; a bigger batch is listed in full in a file.
SHOWN_UTTS = 16

#: A step's metrics by name: 0-dim device tensors (read with the loss, logged as their
#: window's mean) or Python floats (a schedule's value such as the margin: the last one).
Metrics = dict[str, "torch.Tensor | float"]


class NonFiniteLossError(UserError, FloatingPointError):
    """The loss became NaN or infinite: bad audio in the batch, or a too high learning
    rate. A UserError (one line, exit status 1): a setting or the data needs changing."""


@dataclass(frozen=True)
class Window:
    """What one read of :class:`LossWindow` found: the last step read (0-based, in its
    epoch), how many steps, their mean loss, and per metric the mean (tensor metrics) or
    the last value (float metrics)."""

    last_step: int
    steps: int
    loss: float
    metrics: dict[str, float]


#: A step appended and not read yet: (step, loss, tensor metrics, float metrics).
_Step = tuple[int, torch.Tensor, dict[str, torch.Tensor], dict[str, float]]


def _plain_non_finite(value: float, step: int) -> NonFiniteLossError:
    return NonFiniteLossError(f"loss is {value} at step {step}")


class LossWindow:
    """Per-step losses and metrics kept on the device, read in windows (one transfer each).

    ``append`` after every step (no host wait); ``read`` when :attr:`due` (or before
    anything that must not follow a non-finite loss, such as a checkpoint): it raises
    ``non_finite(value, step)`` for the first non-finite loss, adds the window to the epoch
    sums (one object per epoch: :meth:`mean_loss`, :meth:`mean`) and returns its means.
    Tensor metrics must be on the loss's device (they are stacked with it).
    """

    def __init__(
        self,
        log_every: int,
        non_finite: Callable[[float, int], BaseException] | None = None,
    ) -> None:
        self.log_every = max(1, log_every)
        self.non_finite = non_finite or _plain_non_finite
        self._pending: list[_Step] = []
        self.steps = 0  # steps read so far (the epoch's, when one window object per epoch)
        self.loss_sum = 0.0
        self._metric_sums: dict[str, float] = {}
        self._metric_steps: dict[str, int] = {}

    def __len__(self) -> int:
        """Steps appended and not read yet."""
        return len(self._pending)

    @property
    def due(self) -> bool:
        """``log_every`` steps wait to be read."""
        return len(self._pending) >= self.log_every

    def append(self, step: int, loss: torch.Tensor, metrics: Metrics | None = None) -> None:
        """Keep step ``step``'s 0-dim loss and its metrics (detached: no graph is kept)."""
        tensors, floats = {}, {}
        for name, value in (metrics or {}).items():
            if isinstance(value, torch.Tensor):
                tensors[name] = value.detach()
            else:
                floats[name] = float(value)
        self._pending.append((step, loss.detach(), tensors, floats))

    def read(self) -> Window | None:
        """Read the pending steps from the device in one transfer (None when none wait)."""
        if not self._pending:
            return None
        pending, self._pending = self._pending, []
        # Every value of the window in one tensor: one stack, one copy to the host.
        flat = [v for _, loss, tensors, _ in pending for v in (loss, *tensors.values())]
        values = iter(torch.stack(flat).tolist())
        losses: list[float] = []
        window_sums: dict[str, float] = {}
        window_steps: dict[str, int] = {}
        last_floats: dict[str, float] = {}
        for step, _, tensors, floats in pending:
            loss = next(values)
            if not math.isfinite(loss):
                raise self.non_finite(loss, step)
            losses.append(loss)
            self.loss_sum += loss
            self.steps += 1
            for name in tensors:
                value = next(values)
                window_sums[name] = window_sums.get(name, 0.0) + value
                window_steps[name] = window_steps.get(name, 0) + 1
                self._metric_sums[name] = self._metric_sums.get(name, 0.0) + value
                self._metric_steps[name] = self._metric_steps.get(name, 0) + 1
            last_floats.update(floats)
        means = {name: window_sums[name] / window_steps[name] for name in window_sums}
        return Window(
            last_step=pending[-1][0],
            steps=len(losses),
            loss=sum(losses) / len(losses),
            metrics={**means, **last_floats},
        )

    def mean_loss(self) -> float:
        """The mean loss of every step read so far (0 before any)."""
        return self.loss_sum / max(self.steps, 1)

    def mean(self, name: str) -> float:
        """The mean of tensor metric ``name`` over every step read so far (0 without any)."""
        return self._metric_sums.get(name, 0.0) / max(self._metric_steps.get(name, 0), 1)


class Progress:
    """An epoch's progress bar (rank 0's) and the TensorBoard scalars of each window read:
    ``train/loss``, ``train/<metric>`` for each metric, ``train/lr`` and
    ``train/utts_per_second``."""

    def __init__(self, trainer: Trainer, epoch: int) -> None:
        tc = trainer.cfg.train
        self.writer = trainer.writer
        self.optimizer = trainer.optimizer
        self.first_global_step = epoch * trainer.steps_per_epoch
        self.start = time.time()
        self.utts = 0
        self.bar = tqdm(
            total=trainer.steps_per_epoch,
            initial=trainer.step,
            desc=f"epoch {epoch + 1}/{tc.epochs}",
            disable=trainer.rank != 0,
            dynamic_ncols=True,
            # In a log file (no terminal) a line every 30 s is plenty.
            mininterval=0.1 if sys.stderr.isatty() else 30.0,
        )

    def elapsed(self) -> float:
        return time.time() - self.start

    def utts_per_second(self) -> float:
        return self.utts / max(self.elapsed(), 1e-9)

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def show(self, window: Window | None) -> None:
        if window is None:
            return
        speed = self.utts_per_second()
        self.bar.set_postfix(loss=f"{window.loss:.3f}", utt_s=f"{speed:.0f}", refresh=False)
        if self.writer:
            global_step = self.first_global_step + window.last_step
            self.writer.add_scalar("train/loss", window.loss, global_step)
            for name, value in window.metrics.items():
                self.writer.add_scalar(f"train/{name}", value, global_step)
            self.writer.add_scalar("train/lr", self.lr(), global_step)
            self.writer.add_scalar("train/utts_per_second", speed, global_step)


def epoch_line(epoch: int, window: LossWindow, progress: Progress) -> str:
    """The epoch's line in train.log (its format is what scripts and tests read)."""
    elapsed = progress.elapsed()
    return (
        f"epoch {epoch} loss {window.mean_loss():.4f} accuracy {window.mean('accuracy'):.4f} "
        f"lr {progress.lr():.3g} utts/s {progress.utts / max(elapsed, 1e-9):.1f} "
        f"time {elapsed:.1f}s"
    )


def method_epoch_line(trainer: Trainer, epoch: int) -> str | None:
    """Run the method's end of epoch ``epoch`` (0-based); its report as a train.log line
    (``method epoch N name value ...``, N 1-based like the epoch line), or None."""
    report = trainer.method.end_epoch(epoch)
    if not report:
        return None
    if trainer.writer:
        step = (epoch + 1) * trainer.steps_per_epoch
        for name, value in report.items():
            trainer.writer.add_scalar(f"method/{name}", value, step)
    values = " ".join(f"{name} {value:.4g}" for name, value in report.items())
    return f"method epoch {epoch + 1} {values}"


def non_finite_loss(trainer: Trainer, value: float, epoch: int, step: int) -> NonFiniteLossError:
    """The error for a non-finite loss, naming the utterances of its global batch (all of
    them in ``log/non_finite_batch.txt`` when more than :data:`SHOWN_UTTS`)."""
    utts = [trainer.dataset.utts[i] for i in trainer.sampler.global_batch_indices(epoch, step)]
    shown = " ".join(utts[:SHOWN_UTTS])
    if len(utts) > SHOWN_UTTS:
        listing = trainer.exp_dir / "log" / "non_finite_batch.txt"
        if trainer.rank == 0:
            with atomic_write(listing) as f:
                f.writelines(u + "\n" for u in utts)
        shown += f" ... ({len(utts) - SHOWN_UTTS} more; all {len(utts)} in {listing})"
    return NonFiniteLossError(
        f"loss is {value} at epoch {epoch + 1} step {step} (global step "
        f"{epoch * trainer.steps_per_epoch + step}), nothing saved after it; the batch's "
        f"utterances: {shown}; check their audio, or lower train.lr"
    )


class Stop(NamedTuple):
    """Where a signal stopped an epoch: the signal's name and the checkpoint written there
    (None on ranks other than 0)."""

    signal_name: str
    checkpoint: Path | None


def run_epochs(
    trainer: Trainer, request: signals.StopRequest | None, log_file: TextIO | None
) -> None:
    """Train from the trainer's position to ``train.epochs``. When ``request`` records a
    stop signal, every rank stops at the same step with a checkpoint, and
    :class:`signals.TrainingStopped` is raised once rank 0 has said where."""
    tc = trainer.cfg.train
    agreement = signals.StopAgreement(
        request, trainer.world, trainer.device, trainer.rank, tc.log_every
    )
    while trainer.epoch < tc.epochs:
        stop = run_epoch(trainer, agreement, log_file)
        if stop is None:
            continue
        message = signals.stop_message(
            stop.signal_name,
            request.received_at if request else None,
            trainer.epoch,
            trainer.step,
            trainer.steps_per_epoch,
            tc.epochs,
            stop.checkpoint,
        )
        if trainer.rank == 0:
            signals.record_stop(message, trainer.exp_dir, log_file)
        # Only now let every rank go: torchrun ends the others as soon as one exits.
        distributed.barrier()
        raise signals.TrainingStopped(message, stop.signal_name, stop.checkpoint)


def run_epoch(
    trainer: Trainer, agreement: signals.StopAgreement, log_file: TextIO | None
) -> Stop | None:
    """One epoch from the trainer's position; returns where a signal stopped it (after
    writing that checkpoint), else None (the epoch is done, validated and logged)."""
    tc = trainer.cfg.train
    epoch = trainer.epoch
    trainer.method.train()
    trainer.sampler.set_position(epoch, trainer.step)
    progress = Progress(trainer, epoch)
    window = LossWindow(
        tc.log_every, lambda value, step: non_finite_loss(trainer, value, epoch, step)
    )
    for crops, labels, indices in trainer.loader:
        step = trainer.step
        loss, metrics = trainer.train_step(crops, epoch, step, labels, indices)
        window.append(step, loss, metrics)
        trainer.step += 1
        progress.utts += tc.batch_size
        every = tc.checkpoint_every_steps
        mid_epoch = trainer.step < trainer.steps_per_epoch
        save_now = bool(every) and trainer.step % every == 0 and mid_epoch
        read_now = save_now or window.due
        signal_name = agreement.after_step(epoch, step, mid_epoch, read_now)
        if read_now or signal_name:
            # Also before a checkpoint: nothing is saved after a non-finite loss.
            progress.show(window.read())
        path = trainer.save(epoch_end=False) if save_now or signal_name else None
        progress.bar.update(1)
        if signal_name:
            progress.bar.close()
            return Stop(signal_name, path)
    progress.show(window.read())
    progress.bar.close()
    # The method's end of epoch (a loss gate's next threshold, label correction) before
    # the checkpoint, so that the checkpoint holds its effect.
    method_line = method_epoch_line(trainer, epoch)
    trainer.epoch, trainer.step = epoch + 1, 0
    trainer.scheduler.step()
    # Validation before the checkpoint, so that the checkpoint holds its result (best).
    validation = trainer.validate()
    epoch_checkpoint = trainer.epoch % tc.checkpoint_every == 0 or trainer.epoch == tc.epochs
    path = trainer.save(epoch_end=True) if epoch_checkpoint else None
    if log_file:
        lines = [
            epoch_line(trainer.epoch, window, progress),
            *([method_line] if method_line else []),
            *([validation] if validation else []),
        ]
        log_file.writelines(line + "\n" for line in lines)
        log_file.flush()
        for line in lines:
            log.info("%s", line)
    # After the last epoch only final.pt is left: finish rather than stop.
    if trainer.epoch < tc.epochs:
        signal_name = agreement.agreed()
        if signal_name:
            if not epoch_checkpoint:
                # None is due here (train.checkpoint_every): a step checkpoint at the next
                # epoch's start instead, which the averaging into final.pt does not see, so
                # that the result is the uninterrupted one.
                path = trainer.save(epoch_end=False)
            return Stop(signal_name, path)
    return None
