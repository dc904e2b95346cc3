"""One writer per output: a stage holds ``DIR/.lock`` while it writes DIR.

A second run on the same output (a double-submitted job, a rerun in another terminal)
refuses at once, naming the holder's pid, host, start time and command, instead of racing
the first one. The lock is an ``flock`` on the file, so the kernel releases it when its
process dies, however it dies; the file's content (who held it) is only for messages, and
a file left by a run that is gone is taken over with a message saying so.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from sslsv.errors import UserError

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class OutputLocked(UserError):
    """Another run is writing the same output."""


def _describe(holder: dict) -> str:
    return (
        f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since "
        f"{holder.get('since', '?')} ({holder.get('command', '?')})"
    )


def _read_holder(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 1 << 16).decode("utf-8", "replace")
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


@contextlib.contextmanager
def output_lock(directory: str | os.PathLike, command: str | None = None) -> Iterator[None]:
    """Hold the lock of ``directory`` (created if needed) for the ``with`` block.

    Raises :class:`OutputLocked` naming the holder when another process holds it.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": command or Path(sys.argv[0]).name,
    }
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise OutputLocked(
                f"{directory} is being written by {_describe(holder)}; wait for that run to "
                f"end (a second run on the same output would race it)"
            ) from None
        # The holder before us may have removed the file between our open and our lock:
        # then this lock is on a file nobody else will see; start again on the new one.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    previous = _read_holder(fd)
    if previous and previous.get("pid") != me["pid"]:
        log.warning(
            "%s: taking over the lock left by %s: that run is gone", directory, _describe(previous)
        )
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(me) + "\n").encode())
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # while still locked: a waiting opener re-checks the inode
        os.close(fd)
