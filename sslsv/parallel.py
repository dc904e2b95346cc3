"""Run the ``--nj`` jobs of a stage, Kaldi ``run.pl`` / ``slurm.pl`` style.

Job ``J`` logs to ``LOG_DIR/NAME.J.log``; failures are reported by job number with the exit
code and the tail of the job's log. Where the jobs run is the stage's ``--cmd``, a launcher
name and its options (the recipe's ``cmd.sh`` sets one per stage):

- ``local`` (default): ``nj`` processes on this machine.
- ``slurm [SBATCH OPTIONS]``: one job array, ``sbatch --wait --array=<jobs> OPTIONS``,
  running a small wrapper script written to ``LOG_DIR/NAME.sbatch.sh``.
- ``srun [SRUN OPTIONS]``: one ``srun`` per job, for use inside an allocation.

The options are split like shell words and passed on as arguments, never executed.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

from sslsv.errors import UserError

LAUNCHERS = ("local", "slurm", "srun")
# Threads per job: what Slurm gave the task, unless OMP_NUM_THREADS is set already.
_THREADS = 'export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}";'


class JobsFailed(UserError, RuntimeError):
    """Some jobs failed; the message names each with the end of its log."""


class LauncherError(JobsFailed, ValueError):
    """The launcher settings are wrong, so no job can run (a JobsFailed for the stages)."""


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(True)[-lines:])
    except OSError:
        return "(no log)"


def parse_cmd(cmd: str) -> tuple[str, list[str]]:
    """``"slurm --partition=gpu --gpus=1"`` -> ``("slurm", ["--partition=gpu", "--gpus=1"])``."""
    try:
        words = shlex.split(cmd)
    except ValueError as e:
        raise LauncherError(f"--cmd {cmd!r}: cannot split into words: {e}") from None
    if not words or words[0] not in LAUNCHERS:
        raise LauncherError(
            f"--cmd {cmd!r}: must start with one of {', '.join(LAUNCHERS)} (see cmd.sh)"
        )
    if words[0] == "local" and len(words) > 1:
        raise LauncherError(f"--cmd {cmd!r}: the local launcher takes no options")
    return words[0], words[1:]


def run_jobs(
    command_for_job: Callable[[int], list[str]],
    nj: int,
    log_dir: str | os.PathLike,
    name: str,
    jobs: list[int] | None = None,
    cmd: str = "local",
) -> None:
    """Run jobs ``1..nj`` (or just ``jobs``) in parallel where ``cmd`` says (the module
    docstring); raise JobsFailed naming the failures."""
    launcher, slurm_options = parse_cmd(cmd)
    log_dir = Path(log_dir).absolute()
    log_dir.mkdir(parents=True, exist_ok=True)
    jobs = list(jobs) if jobs is not None else list(range(1, nj + 1))
    if not jobs:
        return
    if launcher == "slurm":
        failures = _run_slurm_array(command_for_job, jobs, log_dir, name, slurm_options)
    else:
        prefix = []
        if launcher == "srun":
            prefix = ["srun", "--ntasks=1", f"--job-name=sslsv-{name}", *slurm_options]
            # A constant script; the job's command reaches it as arguments, never as text.
            prefix += ["sh", "-c", f'{_THREADS} exec "$@"', "sslsv-job"]
        failures = _run_processes(command_for_job, nj, jobs, log_dir, name, prefix)
    if failures:
        raise JobsFailed(
            f"{len(failures)} of {len(jobs)} {name} jobs failed:\n" + "\n".join(failures)
        )


def _failure(job: int, code: int | None, log_path: Path, tail: str | None = None) -> str:
    if code is None:
        what = "did not finish (no exit status: cancelled, out of time or memory?)"
    else:
        what = f"failed (exit {code})"
    return (
        f"job {job} {what}; {log_path} ends with:\n{tail if tail is not None else _tail(log_path)}"
    )


class _JobOutput(threading.Thread):
    """Copies a job's output into its log file and keeps its last lines in memory, so that
    a failure is reported with its message even when the log cannot be written (a full
    disk: often the very reason the job failed)."""

    def __init__(self, stream: IO[bytes], log_path: Path) -> None:
        super().__init__(daemon=True)
        self.stream, self.log_path = stream, log_path
        self.last: collections.deque[str] = collections.deque(maxlen=15)
        self.log_error: OSError | None = None

    def run(self) -> None:
        try:
            log = open(self.log_path, "w", encoding="utf-8")
        except OSError as e:
            log, self.log_error = None, e
        for raw in iter(self.stream.readline, b""):
            line = raw.decode("utf-8", "replace")
            self.last.append(line)
            if log is None:
                continue
            try:
                log.write(line)
                log.flush()
            except OSError as e:  # keep reading: the job must not block on a full pipe
                self.log_error = e
                with contextlib.suppress(OSError):
                    log.close()
                log = None
        if log is not None:
            with contextlib.suppress(OSError):
                log.close()

    def tail(self) -> str:
        text = "".join(self.last)
        if self.log_error is not None:
            text += f"(the log could not be written: {self.log_error})\n"
        return text


def _run_processes(
    command_for_job: Callable[[int], list[str]],
    nj: int,
    jobs: list[int],
    log_dir: Path,
    name: str,
    prefix: list[str],
) -> list[str]:
    """One process per job (``prefix`` + command), all at once; the failure messages."""
    env = dict(os.environ)
    failures = []
    if not prefix:
        # Share this machine's cores between jobs instead of letting each grab all of them.
        threads = max(1, (os.cpu_count() or 1) // max(1, nj))
        env.setdefault("OMP_NUM_THREADS", str(threads))
    running = []
    for job in jobs:
        log_path = log_dir / f"{name}.{job}.log"
        try:
            proc = subprocess.Popen(
                [*prefix, *command_for_job(job)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
            )
        except FileNotFoundError as e:  # srun (or the program) is not installed here
            failures.append(f"job {job} could not start: {e}")
            continue
        output = _JobOutput(proc.stdout, log_path)
        output.start()
        running.append((job, proc, log_path, output))
    for job, proc, log_path, output in running:
        code = proc.wait()
        output.join()
        proc.stdout.close()
        if code != 0:
            failures.append(_failure(job, code, log_path, output.tail()))
    return failures


def _exit_file(log_dir: Path, name: str, job: int | str) -> Path:
    return log_dir / f"{name}.{job}.exit"


def _write_array_script(
    command_for_job: Callable[[int], list[str]], jobs: list[int], log_dir: Path, name: str
) -> Path:
    """The sbatch script: runs job ``$SLURM_ARRAY_TASK_ID``, records its exit code."""
    lines = [
        "#!/usr/bin/env bash",
        f"# Written by sslsv.parallel: array task J runs job J of {name!r}.",
        _THREADS,
        'job="${SLURM_ARRAY_TASK_ID:?not running as a Slurm array task}"',
        'case "$job" in',
    ]
    for job in jobs:
        lines.append(f"  {job}) {shlex.join(command_for_job(job))} ;;")
    lines += [
        '  *) echo "no job $job in this array" >&2; exit 2 ;;',
        "esac",
        "code=$?",
        # Written then renamed, so that the parent never reads a half-written code.
        f'exit_file={shlex.quote(str(log_dir / name))}."$job".exit',
        'echo "$code" > "$exit_file.tmp" && mv -f "$exit_file.tmp" "$exit_file"',
        'exit "$code"',
    ]
    script = log_dir / f"{name}.sbatch.sh"
    tmp = script.with_name(script.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.chmod(0o755)
    os.replace(tmp, script)
    return script


def _run_slurm_array(
    command_for_job: Callable[[int], list[str]],
    jobs: list[int],
    log_dir: Path,
    name: str,
    options: list[str],
) -> list[str]:
    """One ``sbatch --wait`` job array over ``jobs``; the failure messages."""
    for job in jobs:
        _exit_file(log_dir, name, job).unlink(missing_ok=True)
        (log_dir / f"{name}.{job}.log").unlink(missing_ok=True)
    script = _write_array_script(command_for_job, jobs, log_dir, name)
    submit_log = log_dir / f"{name}.sbatch.log"
    cmd = [
        "sbatch",
        "--wait",
        f"--array={','.join(map(str, jobs))}",
        f"--job-name=sslsv-{name}",
        f"--chdir={os.getcwd()}",
        f"--output={log_dir / name}.%a.log",
        *options,
        str(script),
    ]
    with open(submit_log, "w", encoding="utf-8") as out:
        out.write(shlex.join(cmd) + "\n")
        out.flush()
        try:
            code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode
        except FileNotFoundError:
            return ["sbatch not found: --cmd slurm needs Slurm's sbatch on PATH"]
    started = [j for j in jobs if (log_dir / f"{name}.{j}.log").exists()]
    if code != 0 and not started:
        # A refused submission (bad partition, time limit...): sbatch's own words say why.
        return [
            f"sbatch exited with {code}, no job ran; {submit_log} ends with:\n" + _tail(submit_log)
        ]
    failures = []
    for job in jobs:
        try:
            job_code = int(_exit_file(log_dir, name, job).read_text().strip())
        except (OSError, ValueError):
            job_code = None
        if job_code != 0:
            failures.append(_failure(job, job_code, log_dir / f"{name}.{job}.log"))
    return failures


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
