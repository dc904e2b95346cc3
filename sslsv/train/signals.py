"""Stopping training on a signal, at a step boundary, with a checkpoint (preemption).

A cluster ends a job with a signal: Slurm sends ``SIGTERM`` at the time limit (then
``SIGKILL`` after ``KillWait``), ``SIGUSR1`` ahead of it with ``--signal=USR1@SECONDS``, and
a terminal sends ``SIGINT``. Killed mid-epoch, a run loses everything since its last
checkpoint; stopped here, it finishes the step under way, writes a checkpoint at that step,
and exits with :data:`EXIT_STOPPED`, so that the job script can requeue it and the rerun
resumes exactly there.

The handler only records the signal (anything more, even logging, is unsafe in a signal
handler: it may interrupt a write to the same stream); the training loop looks at it
between steps. A second ``SIGINT`` aborts at once (Ctrl-C twice); repeated ``SIGTERM`` and
``SIGUSR1`` are ignored, since one stop is already under way (under Slurm and torchrun a
process may get the same signal twice: from Slurm and forwarded by torchrun).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TextIO

from sslsv.fileio import atomic_write

log = logging.getLogger(__name__)

#: The exit status of a run stopped by a signal after saving its checkpoint: sysexits.h's
#: EX_TEMPFAIL ("temporary failure, try again"). Job scripts requeue on it.
EXIT_STOPPED = 75

#: The signals that stop training, in the order they are reported when several arrived.
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)

#: Written by rank 0 when a run stops on a signal, removed when the next run starts: under
#: torchrun the exit status of a stopped rank does not reach the job script (torchrun exits
#: with 1 whenever a rank fails), so a job script tests for this file instead.
STOP_MARKER = "log/stopped"


class TrainingStopped(Exception):
    """Training stopped on a signal after writing a checkpoint; rerun to resume.

    Not a :class:`sslsv.errors.UserError`: nothing is wrong, and the command ends with
    :data:`EXIT_STOPPED`, not 1.
    """

    def __init__(self, message: str, signal_name: str, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.signal_name = signal_name
        self.checkpoint = checkpoint


def signal_name(signum: int | None) -> str | None:
    """``SIGTERM`` for 15; None for None."""
    return signal.Signals(signum).name if signum is not None else None


def stop_marker(exp_dir: str | os.PathLike) -> Path:
    """Where a stopped run leaves its :data:`STOP_MARKER` in ``exp_dir``."""
    return Path(exp_dir) / STOP_MARKER


def ignore_stop_signals(_worker_id: int = 0) -> None:
    """For DataLoader workers (their ``worker_init_fn``): the main process decides when to
    stop and then ends them. Left at the default action, a ``SIGUSR1`` or ``SIGTERM`` that
    Slurm sends to every process of the job would kill a worker, and the main process would
    fail on the lost worker before it could save its checkpoint."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


class StopRequest:
    """While active (a ``with`` block), records the first stop signal instead of dying.

    ``position`` is called when the signal arrives and its value kept in
    :attr:`received_at` (training passes its global step count, so that the stop line can
    say how much work the stop cost). Outside the main thread signals cannot be handled in
    Python: then the block changes nothing and :attr:`signum` stays ``None``.
    """

    def __init__(self, position: Callable[[], int] | None = None) -> None:
        self.position = position
        self.signum: int | None = None
        self.received_at: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            self.received_at = self.position() if self.position else None
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl-C again: do not wait for the step to end

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


# -- agreement between ranks ------------------------------------------------------------------


class StopAgreement:
    """When the ranks of a run look at their stop flags, and how they agree to stop.

    One process looks at its flag (a Python attribute) after every step. Several must stop
    at the same step, whichever of them got the signal: they agree by an all-reduce, a
    collective that every rank must call at the same point, and so only where the host
    waits for the device anyway (when the losses are read, every ``log_every`` steps). A
    rank that got the signal in between says so once, for the log.
    """

    def __init__(
        self,
        request: StopRequest | None,
        world: int,
        device: object,
        rank: int = 0,
        log_every: int = 1,
    ) -> None:
        """``device``: where the all-reduce runs (a ``torch.device``: the process group's)."""
        self.request = request
        self.world = world
        self.device = device
        self.rank = rank
        self.log_every = log_every
        self._announced = False

    def after_step(self, epoch: int, step: int, mid_epoch: bool, reading: bool) -> str | None:
        """After step ``step`` (0-based) of ``epoch``: the signal that stops training there,
        or None. ``reading``: the losses are read after this step (so the host waits);
        ``mid_epoch``: steps of the epoch are left (at its end, :meth:`agreed` is called
        after the epoch's checkpoint and validation instead)."""
        if mid_epoch and (self.world == 1 or reading):
            return self.agreed()
        local = self.request.signum if self.request else None
        if local is not None and not self._announced:
            self._announced = True
            log.info(
                "rank %d: %s received after step %d of epoch %d; all ranks stop within "
                "%d steps (train.log_every)",
                self.rank, signal_name(local), step + 1, epoch + 1, self.log_every,
            )  # fmt: skip
        return None

    def agreed(self) -> str | None:
        """The name of the signal that stops training, or None; with several processes a
        collective (call it at the same point on every rank)."""
        local = self.request.signum if self.request else None
        if self.world == 1:
            return signal_name(local)
        # torch only here: the training command imports this module before its cheap checks.
        import torch

        from sslsv import distributed

        flags = torch.tensor([float(local == s) for s in STOP_SIGNALS])
        flags = distributed.all_reduce_mean(flags.to(self.device)).tolist()
        return next((s.name for s, f in zip(STOP_SIGNALS, flags) if f > 0), None)


def stop_message(
    signal_name: str,
    received_at: int | None,
    epoch: int,
    step: int,
    steps_per_epoch: int,
    epochs: int,
    checkpoint: Path | None,
) -> str:
    """The line that says where training stopped: ``epoch`` and ``step`` are the position
    the stop checkpoint resumes at (the next step to run, 0-based); ``received_at`` is this
    process's :attr:`StopRequest.received_at` (None: another process got the signal)."""
    when = (
        f"received after global step {received_at}"
        if received_at is not None
        else "received by another process"
    )
    # At an epoch's start the stop came after the last step of the epoch before.
    done = step or steps_per_epoch
    shown_epoch = epoch if step else epoch - 1
    return (
        f"stopped on {signal_name} ({when}) after step {done}/{steps_per_epoch} of "
        f"epoch {shown_epoch + 1}/{epochs} (global step {epoch * steps_per_epoch + step}); "
        f"checkpoint {checkpoint}; exit status {EXIT_STOPPED}: rerun to resume"
    )


def record_stop(message: str, exp_dir: str | os.PathLike, log_file: TextIO | None) -> None:
    """Rank 0, after the stop checkpoint: log ``message``, add it to ``log_file``
    (train.log) and leave it in the stop marker, which job scripts test for."""
    log.warning("%s", message)
    if log_file:
        log_file.write(message + "\n")
        log_file.flush()
    with atomic_write(stop_marker(exp_dir)) as f:
        f.write(message + "\n")
