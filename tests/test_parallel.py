"""Job launcher: local processes, a Slurm job array (fake sbatch), one srun per job (fake)."""

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from sslsv.parallel import JobsFailed, run_jobs

# Prints its arguments and threads as JSON; job 2 fails, job 4 kills the shell that runs it
# (as Slurm does on a time limit) before that shell can record an exit code.
JOB = """
import json, os, signal, sys
print(json.dumps({"argv": sys.argv[1:], "threads": os.environ.get("OMP_NUM_THREADS")}))
sys.stdout.flush()
if sys.argv[1] == "2":
    print("boom in job 2", file=sys.stderr)
    sys.exit(3)
if sys.argv[1] == "4":
    os.kill(os.getppid(), signal.SIGKILL)
"""
ODD = ["a b", "it's", "$HOME", "*", "x;y", '"q"', ""]

# Records its arguments; with --wait, runs each array task like Slurm would, one log each.
FAKE_SBATCH = """#!{python}
import json, os, subprocess, sys
args = sys.argv[1:]
with open(os.environ["FAKE_SLURM_RECORD"], "a") as f:
    f.write(json.dumps(["sbatch", *args]) + "\\n")
if os.environ.get("FAKE_SBATCH_REFUSE"):
    print("sbatch: error: invalid partition specified: nowhere")
    sys.exit(1)
assert "--wait" in args, "run_jobs must wait for the array"
opts = dict(a[2:].split("=", 1) for a in args[:-1] if a.startswith("--") and "=" in a)
worst = 0
for task in opts["array"].split(","):
    with open(opts["output"].replace("%a", task), "w") as log:
        env = dict(os.environ, SLURM_ARRAY_TASK_ID=task, SLURM_CPUS_PER_TASK="3")
        code = subprocess.run(["bash", args[-1]], stdout=log, stderr=subprocess.STDOUT,
                              cwd=opts["chdir"], env=env).returncode
    worst = max(worst, code != 0)
sys.exit(worst)
"""

# Records its arguments, then runs the command after the leading --options.
FAKE_SRUN = """#!{python}
import json, os, subprocess, sys
args = sys.argv[1:]
with open(os.environ["FAKE_SLURM_RECORD"], "a") as f:
    f.write(json.dumps(["srun", *args]) + "\\n")
first = next(i for i, a in enumerate(args) if not a.startswith("--"))
env = dict(os.environ, SLURM_CPUS_PER_TASK="3")
sys.exit(subprocess.run(args[first:], env=env).returncode)
"""


def job_command(job: int) -> list[str]:
    return [sys.executable, "-c", JOB, str(job), *ODD]


def job_output(log: Path) -> dict:
    return json.loads(log.read_text().splitlines()[0])


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Fake sbatch and srun first on PATH; returns the file their calls are recorded in."""
    bin_dir = tmp_path / "fake bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("srun", FAKE_SRUN)):
        path = bin_dir / name
        path.write_text(text.format(python=sys.executable))
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    record = tmp_path / "slurm calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_RECORD", str(record))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    return record


def calls(record: Path) -> list[list[str]]:
    return [json.loads(line) for line in record.read_text().splitlines()]


def test_local_reports_failing_job_with_number_and_log_tail(tmp_path):
    log_dir = tmp_path / "log dir"
    with pytest.raises(JobsFailed) as err:
        run_jobs(job_command, 3, log_dir, "demo", cmd="local")
    message = str(err.value)
    assert "1 of 3 demo jobs failed" in message
    assert f"job 2 failed (exit 3); {log_dir / 'demo.2.log'}" in message
    assert "boom in job 2" in message
    for job in (1, 3):
        assert job_output(log_dir / f"demo.{job}.log")["argv"] == [str(job), *ODD]


def test_local_runs_only_the_given_jobs(tmp_path):
    run_jobs(job_command, 5, tmp_path, "demo", jobs=[1, 3], cmd="local")
    assert sorted(p.name for p in tmp_path.glob("demo.*.log")) == ["demo.1.log", "demo.3.log"]


#: A stage's --cmd as cmd.sh sets it: the launcher, then its options (the last one wins).
SLURM = "slurm --partition=cpu --time=2:00:00 --mem=1G --partition=big"
SRUN = "srun --partition=cpu --time=2:00:00 --mem=1G --partition=big"


def test_slurm_array_runs_jobs_and_reports_failures(tmp_path, fake_slurm, monkeypatch):
    monkeypatch.chdir(tmp_path)
    log_dir = tmp_path / "exp dir" / "log"
    with pytest.raises(JobsFailed) as err:
        run_jobs(job_command, 5, log_dir, "demo", jobs=[1, 2, 3, 4], cmd=SLURM)
    message = str(err.value)
    assert "2 of 4 demo jobs failed" in message
    assert f"job 2 failed (exit 3); {log_dir / 'demo.2.log'} ends with:" in message
    assert "boom in job 2" in message
    assert "job 4 did not finish" in message
    assert "job 1 " not in message and "job 3 " not in message

    (sbatch,) = calls(fake_slurm)
    assert sbatch[0] == "sbatch" and "--wait" in sbatch
    assert "--array=1,2,3,4" in sbatch
    assert f"--output={log_dir}/demo.%a.log" in sbatch
    assert f"--chdir={tmp_path}" in sbatch
    # The options in the order given (Slurm takes the last of a repeated one); the script last.
    assert sbatch[-5:-1] == ["--partition=cpu", "--time=2:00:00", "--mem=1G", "--partition=big"]
    assert Path(sbatch[-1]) == log_dir / "demo.sbatch.sh"
    for job in (1, 3):
        out = job_output(log_dir / f"demo.{job}.log")
        assert out["argv"] == [str(job), *ODD]  # quoting survived the shell script
        assert out["threads"] == "3"  # from SLURM_CPUS_PER_TASK
        assert (log_dir / f"demo.{job}.exit").read_text().strip() == "0"


def test_slurm_rerun_forgets_old_exit_codes(tmp_path, fake_slurm):
    log_dir = tmp_path / "log"
    run_jobs(job_command, 3, log_dir, "demo", jobs=[1, 3], cmd=SLURM)
    with pytest.raises(JobsFailed, match="job 2 failed"):
        run_jobs(job_command, 3, log_dir, "demo", jobs=[2], cmd=SLURM)
    assert [c[2] for c in calls(fake_slurm)] == ["--array=1,3", "--array=2"]


def test_slurm_refused_submission_shows_sbatch_message(tmp_path, fake_slurm, monkeypatch):
    monkeypatch.setenv("FAKE_SBATCH_REFUSE", "1")
    with pytest.raises(JobsFailed) as err:
        run_jobs(job_command, 2, tmp_path, "demo", cmd=SLURM)
    assert "sbatch exited with 1, no job ran" in str(err.value)
    assert "invalid partition specified" in str(err.value)


def test_srun_runs_one_step_per_job(tmp_path, fake_slurm):
    with pytest.raises(JobsFailed) as err:
        run_jobs(job_command, 3, tmp_path, "demo", cmd=SRUN)
    assert "1 of 3 demo jobs failed" in str(err.value)
    assert "job 2 failed (exit 3)" in str(err.value) and "boom in job 2" in str(err.value)
    recorded = calls(fake_slurm)
    assert len(recorded) == 3
    for call in recorded:
        assert call[:3] == ["srun", "--ntasks=1", "--job-name=sslsv-demo"]
        assert call[3:7] == ["--partition=cpu", "--time=2:00:00", "--mem=1G", "--partition=big"]
    for job in (1, 3):
        out = job_output(tmp_path / f"demo.{job}.log")
        assert out == {"argv": [str(job), *ODD], "threads": "3"}


def test_bad_launcher_settings_are_errors_the_stages_report(tmp_path):
    with pytest.raises(JobsFailed, match="--cmd 'pbs -q x': must start with one of local, slurm"):
        run_jobs(job_command, 1, tmp_path, "demo", cmd="pbs -q x")
    with pytest.raises(JobsFailed, match="cannot split into words"):
        run_jobs(job_command, 1, tmp_path, "demo", cmd="slurm --partition='cpu")
    with pytest.raises(JobsFailed, match="the local launcher takes no options"):
        run_jobs(job_command, 1, tmp_path, "demo", cmd="local --mem=1G")
    assert not list(tmp_path.glob("demo.*")), "nothing may run with bad settings"


def test_missing_srun_or_sbatch_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(JobsFailed, match="job 1 could not start"):
        run_jobs(job_command, 2, tmp_path, "demo", cmd=SRUN)
    with pytest.raises(JobsFailed, match="sbatch not found"):
        run_jobs(job_command, 2, tmp_path, "demo", cmd=SLURM)


def test_a_failure_is_reported_even_when_its_log_cannot_be_written(tmp_path):
    """A full output disk is often why a job failed, and then its log is not written either:
    the report still carries the end of the job's output."""
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    os.symlink("/dev/full", log_dir / "demo.2.log")  # every write: ENOSPC
    with pytest.raises(JobsFailed) as err:
        run_jobs(job_command, 2, log_dir, "demo", jobs=[2], cmd="local")
    message = str(err.value)
    assert "job 2 failed (exit 3)" in message and "boom in job 2" in message
    assert "the log could not be written" in message and "No space left" in message
