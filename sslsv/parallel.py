"""Run ``--nj`` jobs of a stage as local processes, Kaldi ``run.pl`` style.

Each job logs to ``LOG_DIR/NAME.JOB.log``; a failure is reported with the job number,
exit code and the tail of its log.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


class JobsFailed(RuntimeError):
    pass


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(True)[-lines:])
    except OSError:
        return "(no log)"


def run_jobs(
    command_for_job: Callable[[int], list[str]],
    nj: int,
    log_dir: str | os.PathLike,
    name: str,
    jobs: list[int] | None = None,
) -> None:
    """Run jobs ``1..nj`` (or just ``jobs``) in parallel; raise JobsFailed naming failures."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # Share the cores between jobs instead of letting each grab all of them.
    threads = max(1, (os.cpu_count() or 1) // max(1, nj))
    env.setdefault("OMP_NUM_THREADS", str(threads))
    running = []
    for job in jobs if jobs is not None else range(1, nj + 1):
        log_path = log_dir / f"{name}.{job}.log"
        log = open(log_path, "w", encoding="utf-8")
        proc = subprocess.Popen(command_for_job(job), stdout=log, stderr=subprocess.STDOUT, env=env)
        running.append((job, proc, log, log_path))
    failures = []
    for job, proc, log, log_path in running:
        code = proc.wait()
        log.close()
        if code != 0:
            failures.append(
                f"job {job} failed (exit {code}); {log_path} ends with:\n{_tail(log_path)}"
            )
    if failures:
        raise JobsFailed(
            f"{len(failures)} of {len(running)} {name} jobs failed:\n" + "\n".join(failures)
        )


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
