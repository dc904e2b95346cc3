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

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

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
