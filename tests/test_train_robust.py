"""Stage 2 under real-world trouble: preemption signals, bad audio, a non-finite loss,
damaged checkpoints, a second run on the same experiment, a failed first attempt."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import make_tone_data_dir

from sslsv.audio import AudioSource
from sslsv.bin import train as train_cli
from sslsv.errors import DataError
from sslsv.fileio import read_dict, write_table
from sslsv.train import checkpoint, dataset
from sslsv.train.checkpoint import load_safe
from sslsv.train.trainer import Trainer

# tests/test_train.py's tiny experiment: 16 utterances, batch 4, so 4 steps per epoch.
TINY = """
experiment: tiny
encoder:
  name: resnet
  args: {{channels: [4, 8, 8, 16], blocks: [1, 1, 1, 1], embed_dim: {embed_dim}}}
augment:
  enabled: true
  noise_prob: 0.5
  noise:
    noise: {{data_dir: "{noise}", snr_db: [5, 15]}}
train: {{epochs: 3, batch_size: 4, num_workers: 0, crop_seconds: 0.5, deterministic: true,
        average_last: 2, keep_checkpoints: 2}}
"""
STEPS_PER_EPOCH = 4
EXIT_STOPPED = 75  # sslsv.train.signals.EXIT_STOPPED, spelled out: it is the interface


def write_config(path: Path, noise: Path, embed_dim: int = 16) -> Path:
    # The training utterances double as a noise set: enough for a test of the mechanics.
    path.write_text(TINY.format(noise=noise, embed_dim=embed_dim))
    return path


def train_args(config: Path, data: Path, exp: Path, *overrides: str) -> list[str]:
    args = ["--config", str(config), "--data", str(data), "--exp-dir", str(exp)]
    return [*args, "--override", *overrides] if overrides else args


def assert_same_weights(want: dict, got: dict) -> None:
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key


def one_error_line(err: str) -> str:
    """The CLI's single error line: no traceback, nothing else on stderr from the error."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A data dir, its config, and the final weights of an uninterrupted 3-epoch run."""
    root = tmp_path_factory.mktemp("tiny")
    data = make_tone_data_dir(root)
    config = write_config(root / "tiny.yaml", data)
    straight = root / "straight"
    assert train_cli.main(train_args(config, data, straight)) == 0
    return data, config, load_safe(straight / "final.pt")["model"]


# ----------------------------------------------------------------------------- 1. signals


def test_sigterm_mid_epoch_saves_that_step_exits_75_and_resumes_exactly(tmp_path, tiny):
    """A separate process, SIGTERM in epoch 2: it finishes the step under way, saves it,
    exits with 75; the rerun ends with the weights of an uninterrupted run."""
    data, config, want = tiny
    exp = tmp_path / "exp"
    # Periodic checkpoints every 2 steps only to see from outside that epoch 2 is under way.
    cmd = [sys.executable, "-m", "sslsv.bin.train",
           *train_args(config, data, exp, "train.checkpoint_every_steps=2")]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = exp / "checkpoints" / "step-000000006.pt"  # epoch 2, after its step 2
    deadline = time.time() + 120
    while not seen.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert seen.exists(), "mid-epoch checkpoint never appeared"
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_STOPPED, err[-3000:]
    assert not (exp / "final.pt").exists()

    line = (exp / "log" / "stopped").read_text().strip()
    assert line in (exp / "log" / "train.log").read_text() and line in err
    m = re.search(
        r"stopped on SIGTERM \(received after global step (\d+)\) after step \d/4 of "
        r"epoch (\d)/3 \(global step (\d+)\); checkpoint (\S+);",
        line,
    )
    assert m, line
    received, epoch, saved, path = int(m[1]), int(m[2]), int(m[3]), Path(m[4])
    # It was running epoch 2 when the signal came, and lost at most the step under way.
    assert 6 <= received <= saved <= received + 1 < 12
    assert epoch == 2 if saved < 8 else epoch >= 2
    state = load_safe(path)
    assert state["epoch"] * STEPS_PER_EPOCH + state["step"] == saved
    assert checkpoint.load_latest(exp / "checkpoints", STEPS_PER_EPOCH)["step"] == state["step"]

    assert train_cli.main(train_args(config, data, exp, "train.checkpoint_every_steps=2")) == 0
    assert_same_weights(want, load_safe(exp / "final.pt")["model"])
    assert not (exp / "log" / "stopped").exists()


def send_to_myself(sig: signal.Signals) -> None:
    # Unhandled, SIGUSR1 would end pytest and SIGINT interrupt it: fail the test instead.
    handler = signal.getsignal(sig)
    assert handler not in (signal.SIG_DFL, signal.default_int_handler, None), "no handler"
    os.kill(os.getpid(), sig)


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGINT])
def test_signal_during_a_step_stops_after_it(tmp_path, tiny, monkeypatch, capsys, sig):
    """In process, the signal sent from inside global step 6 (epoch 2, step 2 of 4): the
    checkpoint is exactly that step; the rerun gives the uninterrupted weights."""
    data, config, want = tiny
    exp = tmp_path / "exp"
    real_step = Trainer.train_step

    def step_then_signal(self, waves, epoch, step, *rest):
        out = real_step(self, waves, epoch, step, *rest)
        if (epoch, step) == (1, 1):
            send_to_myself(sig)
        return out

    monkeypatch.setattr(Trainer, "train_step", step_then_signal)
    assert train_cli.main(train_args(config, data, exp)) == EXIT_STOPPED
    monkeypatch.undo()
    line = (exp / "log" / "stopped").read_text()
    assert (
        f"stopped on {sig.name} (received after global step 5) after step 2/4 of epoch 2/3 "
        "(global step 6)"
    ) in line
    path = exp / "checkpoints" / "step-000000006.pt"
    assert f"checkpoint {path};" in line
    state = load_safe(path)
    assert (state["epoch"], state["step"]) == (1, 2)
    assert signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler)  # restored
    assert train_cli.main(train_args(config, data, exp)) == 0
    assert_same_weights(want, load_safe(exp / "final.pt")["model"])


def test_signal_at_an_epoch_end_without_an_epoch_checkpoint_keeps_the_result(
    tmp_path, tiny, monkeypatch
):
    """With train.checkpoint_every=2 no epoch checkpoint is due after epoch 1: the stop
    writes a step checkpoint there instead, which final.pt's averaging does not see."""
    data, config, _ = tiny
    real_step = Trainer.train_step
    # Mid-epoch checkpoints too: the stop must not take one of them for its own.
    every2 = ("train.checkpoint_every=2", "train.checkpoint_every_steps=2")

    def step_then_signal(self, waves, epoch, step, *rest):
        out = real_step(self, waves, epoch, step, *rest)
        if (epoch, step) == (0, 3):  # the last step of epoch 1
            send_to_myself(signal.SIGUSR1)
        return out

    straight = tmp_path / "straight"
    assert train_cli.main(train_args(config, data, straight, *every2)) == 0
    exp = tmp_path / "exp"
    monkeypatch.setattr(Trainer, "train_step", step_then_signal)
    assert train_cli.main(train_args(config, data, exp, *every2)) == EXIT_STOPPED
    monkeypatch.undo()
    state = load_safe(exp / "checkpoints" / "step-000000004.pt")
    assert (state["epoch"], state["step"]) == (1, 0)
    assert not list((exp / "checkpoints").glob("epoch-*.pt"))
    assert train_cli.main(train_args(config, data, exp, *every2)) == 0
    assert_same_weights(
        load_safe(straight / "final.pt")["model"], load_safe(exp / "final.pt")["model"]
    )


def _ranks(torchrun_pid: int) -> dict[int, int]:
    """Rank -> pid of torchrun's worker processes (their RANK variable)."""
    found = {}
    for task in Path(f"/proc/{torchrun_pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            rank = next(int(v[5:]) for v in env if v.startswith(b"RANK="))
            found[rank] = int(child)
    return found


def test_two_processes_stop_at_the_same_step(tmp_path, tiny):
    """torchrun with 2 gloo processes, SIGTERM to rank 1 only: rank 0 learns it through
    the stop flag's all-reduce, both stop at the same step, rank 0 saves it."""
    data, config, _ = tiny
    exp = tmp_path / "exp"
    torchrun = Path(sys.executable).parent / "torchrun"
    # Flags are agreed where losses are read: every 3 steps (step 3 of each epoch here)
    # and at each epoch end.
    proc = subprocess.Popen(
        [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "sslsv.bin.train",
         *train_args(config, data, exp, "train.log_every=3")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    deadline = time.time() + 240
    while not (exp / "checkpoints" / "epoch-0001.pt").exists() and time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        time.sleep(0.01)
    ranks = _ranks(proc.pid)
    assert sorted(ranks) == [0, 1]
    os.kill(ranks[1], signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode != 0 and not (exp / "final.pt").exists(), err[-3000:]
    # torchrun reports each rank's exit status: rank 1, which got the signal, stopped
    # with 75 (rank 0 may be ended by torchrun once rank 1 has gone, after its checkpoint).
    codes = dict(re.findall(r"rank\s*:\s*(\d+).*\n\s*exitcode\s*:\s*(-?\d+)", err))
    assert codes.get("1") == str(EXIT_STOPPED), err[-3000:]
    line = (exp / "log" / "stopped").read_text()
    m = re.search(r"stopped on SIGTERM \(received by another process\) .* \(global step (\d+)\)"
                  r"; checkpoint (\S+);", line)  # fmt: skip
    assert m, line
    saved = int(m[1])
    assert saved in (4, 7, 8, 11), line  # the agreement points from epoch 1's end
    state = load_safe(m[2])
    assert state["world_size"] == 2
    assert state["epoch"] * STEPS_PER_EPOCH + state["step"] == saved
    # Rank 1 said when it got the signal: agreement came within log_every steps.
    got = re.search(r"rank 1: SIGTERM received after step (\d+) of epoch 2", err)
    if got:  # absent when the signal came right before an agreement point
        assert saved - (STEPS_PER_EPOCH + int(got[1])) <= 3


# ----------------------------------------------------------------------------- 2. init.pt


@pytest.mark.parametrize("failure", ["batch_size", "utt2dur"])
def test_failed_first_attempt_leaves_no_init_pt_for_another_encoder(
    tmp_path, tone_data_dir, capsys, failure
):
    """A first attempt that fails its data checks writes neither init.pt nor config.yaml;
    the second (another encoder) writes both, matching its final.pt."""
    exp = tmp_path / "exp"
    first = write_config(tmp_path / "first.yaml", tone_data_dir, embed_dim=16)
    second = write_config(tmp_path / "second.yaml", tone_data_dir, embed_dim=8)
    bad_data = tmp_path / "bad"
    shutil.copytree(tone_data_dir, bad_data)
    overrides = ["train.epochs=1"]
    if failure == "batch_size":
        overrides.append("train.batch_size=32")  # 16 utterances
    else:
        (bad_data / "utt2dur").unlink()
    assert train_cli.main(train_args(first, bad_data, exp, *overrides)) == 1
    one_error_line(capsys.readouterr().err)
    assert not (exp / "init.pt").exists() and not (exp / "config.yaml").exists()

    assert train_cli.main(train_args(second, tone_data_dir, exp, "train.epochs=1")) == 0
    init, final = load_safe(exp / "init.pt"), load_safe(exp / "final.pt")
    config = (exp / "config.yaml").read_text()
    assert "embed_dim: 8" in config
    assert init["config"] == final["config"]
    assert init["config"]["encoder"]["args"]["embed_dim"] == 8
    assert {k: v.shape for k, v in init["model"].items()} == {
        k: v.shape for k, v in final["model"].items()
    }


# ----------------------------------------------------------------------------- 3. audio check


def _corrupt(path: Path) -> None:
    path.write_bytes(b"this is not audio" * 10)


def test_bad_audio_above_the_limit_refuses_before_writing_anything(tmp_path, tone_data_dir, capsys):
    wavs = read_dict(tone_data_dir / "wav.scp")
    _corrupt(Path(wavs["spk1-utt2"]))
    sf.write(wavs["spk3-utt0"], np.zeros(0, dtype=np.float32), 16000)  # empty
    exp = tmp_path / "exp"
    config = write_config(tmp_path / "tiny.yaml", tone_data_dir)
    assert train_cli.main(train_args(config, tone_data_dir, exp, "train.epochs=1")) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "2 of 16 training utterances" in line and str(exp / "bad_audio.txt") in line
    listed = (exp / "bad_audio.txt").read_text().splitlines()
    assert [row.split("\t")[0] for row in listed] == ["spk1-utt2", "spk3-utt0"]
    assert listed[0].split("\t")[1].startswith("unreadable")
    assert listed[1].split("\t")[1].startswith("empty")
    for name in ("init.pt", "config.yaml", "checkpoints"):
        assert not (exp / name).exists(), name


def test_bad_audio_within_the_limit_is_left_out(tmp_path, tone_data_dir, monkeypatch, caplog):
    """At or below the limit: a warning, the list, and training on the others (the limit
    raised here so that 1 bad file in 16 is within it)."""
    wavs = read_dict(tone_data_dir / "wav.scp")
    _corrupt(Path(wavs["spk2-utt1"]))
    monkeypatch.setattr(dataset, "MAX_BAD_FRACTION", 0.1)
    exp = tmp_path / "exp"
    config = write_config(tmp_path / "tiny.yaml", tone_data_dir)
    # No augmentation: its noise set here is the training data, bad file included.
    overrides = ("train.epochs=1", "augment.enabled=false")
    assert train_cli.main(train_args(config, tone_data_dir, exp, *overrides)) == 0
    assert (exp / "final.pt").exists()
    assert (exp / "bad_audio.txt").read_text().startswith("spk2-utt1\tunreadable")
    assert "leaving 1 of 16 training utterances out" in caplog.text
    # 15 utterances left, batch 4: 3 steps (a step of the bad file would have failed).
    adam = load_safe(exp / "checkpoints" / "epoch-0001.pt")["optimizer"]["state"][0]
    assert float(adam["step"]) == 3


def test_bad_fraction_limit_is_one_percent(tmp_path):
    """1 bad in 100 warns and leaves it out; 2 in 100 refuse."""
    sources = {}
    for i in range(100):
        path = tmp_path / f"u{i:03d}.wav"
        sf.write(path, np.zeros(160, dtype=np.float32), 16000)
        sources[f"u{i:03d}"] = AudioSource(str(path))
    _corrupt(Path(sources["u007"].path))
    report = tmp_path / "bad_audio.txt"
    assert dataset.check_training_audio(sources, report) == ["u007"]
    _corrupt(Path(sources["u050"].path))
    with pytest.raises(DataError, match=r"(?s)2 of 100 .*u007\.wav: unreadable"):
        dataset.check_training_audio(sources, report)
    assert len(report.read_text().splitlines()) == 2


def test_segments_probe_each_recording_once_and_catch_spans_past_the_end(tmp_path, monkeypatch):
    """With segments: one header read per recording; a span past its recording's end (or
    starting after it) is bad, one within rounding of it is not."""
    wav = tmp_path / "reco.wav"
    sf.write(wav, np.zeros(16000 * 3, dtype=np.float32), 16000)  # 3 s
    data = tmp_path / "data"
    write_table(data / "wav.scp", {"reco": str(wav)})
    write_table(
        data / "segments",
        {"a": "reco 0 1", "b": "reco 1 3.02", "c": "reco 2.5 4", "d": "reco 3.5 -1"},
    )
    probed = []
    real_probe = dataset.probe_audio_files

    def spy(paths, nj=1):
        probed.extend(paths)
        return real_probe(paths, nj)

    monkeypatch.setattr(dataset, "probe_audio_files", spy)
    from sslsv.datadir.io import read_audio_sources

    bad = dataset.find_bad_audio(read_audio_sources(data))
    assert probed == [str(wav)]
    assert {utt: why.split(":")[0] for utt, why, _ in bad} == {
        "c": "the segment reaches past its recording's end (3 s)",
        "d": "empty",
    }


# ----------------------------------------------------------------------------- 4. non-finite


def test_non_finite_loss_is_one_line_naming_the_batch(tmp_path, tone_data_dir, monkeypatch,
                                                      capsys):  # fmt: skip
    real_step = Trainer.train_step

    def nan_at_step_1(self, waves, epoch, step, *rest):
        loss, metrics = real_step(self, waves, epoch, step, *rest)
        return (loss * float("nan") if step == 1 else loss), metrics

    monkeypatch.setattr(Trainer, "train_step", nan_at_step_1)
    exp = tmp_path / "exp"
    config = write_config(tmp_path / "tiny.yaml", tone_data_dir)
    # A checkpoint due right after the bad step must not be written.
    overrides = ("train.epochs=1", "train.checkpoint_every_steps=2", "train.log_every=10")
    assert train_cli.main(train_args(config, tone_data_dir, exp, *overrides)) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "loss is nan at epoch 1 step 1" in line
    # The batch of step 1: the sampler's seeded shuffle (seed 0, epoch 0), wav.scp order.
    utts = list(read_dict(tone_data_dir / "wav.scp"))
    batch = [utts[i] for i in np.random.default_rng((0, 0, 7)).permutation(16)[4:8]]
    named = re.search(r"utterances: ([^;]+);", line)[1].split()
    assert named == batch
    assert not list(exp.glob("checkpoints/*.pt")) and not (exp / "final.pt").exists()


# ----------------------------------------------------------------------------- 5. checkpoints


def _fake_epoch(ckpt_dir: Path, epoch: int, value: float) -> Path:
    path = ckpt_dir / f"epoch-{epoch:04d}.pt"
    checkpoint.save_atomic({"model": {"w": torch.full((3,), value)}}, path)
    return path


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_averaging_skips_unreadable_checkpoints(tmp_path, caplog):
    ckpt = tmp_path / "checkpoints"
    for epoch, value in [(1, 1.0), (2, 2.0), (3, 4.0)]:
        _fake_epoch(ckpt, epoch, value)
    _truncate(ckpt / "epoch-0002.pt")
    averaged = checkpoint.average_epoch_models(ckpt, 10, last=3)
    assert torch.equal(averaged["w"], torch.full((3,), 2.5))
    assert "epoch-0002.pt" in caplog.text
    # Epochs past the ones asked for are not averaged (nor read).
    _truncate(ckpt / "epoch-0003.pt")
    assert torch.equal(checkpoint.average_epoch_models(ckpt, 10, 1, upto_epoch=1)["w"],
                       torch.full((3,), 1.0))  # fmt: skip
    _truncate(ckpt / "epoch-0001.pt")
    with pytest.raises(DataError, match="no readable epoch checkpoint"):
        checkpoint.average_epoch_models(ckpt, 10, last=3)


def test_damaged_checkpoints_fall_back_and_do_not_crash_reruns(tmp_path, tiny, caplog):
    """A 2-epoch run, then its epoch-2 checkpoint truncated and final.pt removed: rerun
    with 1 epoch (epoch 2 now past the end), it averages epoch 1 only, each rerun; rerun
    with 2 epochs, it resumes from epoch 1 (saying so) and gets the same final.pt."""
    data, config, _ = tiny
    first = tmp_path / "first"
    assert train_cli.main(train_args(config, data, first, "train.epochs=2")) == 0
    want = load_safe(first / "final.pt")["model"]
    epoch1 = load_safe(first / "checkpoints" / "epoch-0001.pt")["model"]
    _truncate(first / "checkpoints" / "epoch-0002.pt")
    (first / "final.pt").unlink()
    shorter = tmp_path / "shorter"
    shutil.copytree(first, shorter)

    for _ in range(2):
        (shorter / "final.pt").unlink(missing_ok=True)
        assert train_cli.main(train_args(config, data, shorter, "train.epochs=1")) == 0
        assert_same_weights(epoch1, load_safe(shorter / "final.pt")["model"])

    caplog.clear()
    assert train_cli.main(train_args(config, data, first, "train.epochs=2")) == 0
    assert "skipping unreadable checkpoint" in caplog.text and "epoch-0002.pt" in caplog.text
    assert re.search(r"resuming from \S+epoch-0001\.pt .*falling back", caplog.text)
    assert_same_weights(want, load_safe(first / "final.pt")["model"])


# ----------------------------------------------------------------------------- 6. lock


def test_second_run_on_the_same_experiment_refuses_at_once(tmp_path, tiny, capsys):
    data, config, want = tiny
    exp = tmp_path / "exp"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sslsv.bin.train", *train_args(config, data, exp)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lock = exp / ".lock"
    deadline = time.time() + 120
    holder = {}
    while proc.poll() is None and time.time() < deadline:
        try:
            holder = json.loads(lock.read_text())
        except (FileNotFoundError, ValueError):
            holder = {}
        if holder.get("pid") == proc.pid:
            break
        time.sleep(0.01)
    assert holder.get("pid") == proc.pid, "the first run never took the lock"
    started = time.time()
    assert train_cli.main(train_args(config, data, exp)) == 1
    assert time.time() - started < 10
    line = one_error_line(capsys.readouterr().err)
    assert f"pid {proc.pid} on {socket.gethostname()}" in line
    assert proc.poll() is None, "the first run ended before the second tried: test too slow"
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert_same_weights(want, load_safe(exp / "final.pt")["model"])
    assert not lock.exists()


def _saved(tmp_path: Path, cfg: dict) -> Path:
    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_config_saved_before_a_key_existed_continues_at_that_keys_default(tmp_path):
    """An experiment made by an older sslsv has no line for keys added since (DINO's
    method.momentum_end, the method.ssps section): they are compared at their defaults, so
    it continues; a value other than the default, or a change of a saved key, is refused."""
    from sslsv.config.load import default_config_dict
    from sslsv.errors import ConfigError

    older = default_config_dict("dino")
    del older["method"]["momentum_end"], older["method"]["ssps"]
    saved = _saved(tmp_path, older)
    now = default_config_dict("dino")
    train_cli.check_unchanged(now, saved)  # the same experiment

    now["train"]["epochs"] += 10  # more epochs: a continuation
    train_cli.check_unchanged(now, saved)

    now["method"]["momentum_end"] = 0.99
    with pytest.raises(
        ConfigError, match=r"method.momentum_end: \(absent: its default 1.0\) -> 0.99"
    ):
        train_cli.check_unchanged(now, saved)

    now = default_config_dict("dino")
    now["method"]["ssps"]["enabled"] = True
    with pytest.raises(ConfigError, match=r"method.ssps.enabled: \(absent: its default False\)"):
        train_cli.check_unchanged(now, saved)

    now = default_config_dict("dino")
    now["method"]["momentum"] = 0.99
    with pytest.raises(ConfigError, match=r"method.momentum: 0.999 -> 0.99\n"):
        train_cli.check_unchanged(now, saved)


# ----------------------------------------------------------------------------- resume N -> M


def _train(processes: int, config: Path, data: Path, exp: Path) -> None:
    if processes == 1:
        assert train_cli.main(train_args(config, data, exp)) == 0
        return
    torchrun = Path(sys.executable).parent / "torchrun"
    subprocess.run(
        [str(torchrun), "--standalone", "--nproc-per-node", str(processes), "-m",
         "sslsv.bin.train", *train_args(config, data, exp)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


@pytest.mark.parametrize(("before", "after"), [(2, 1), (1, 2)])
def test_a_checkpoint_resumes_on_another_number_of_processes(tmp_path, tiny, before, after):
    """Epochs 1-2 on ``before`` gloo processes, epoch 3 on ``after``: the final model is the
    one an uninterrupted run makes (the same up to the order of sums over the batch)."""
    data, config, straight = tiny  # 1 process, uninterrupted
    first = tmp_path / "first"
    _train(before, config, data, first)
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", "init.pt", "checkpoints/epoch-0002.pt"):
        shutil.copy(first / name, resumed / name)
    assert load_safe(resumed / "checkpoints/epoch-0002.pt")["world_size"] == before
    _train(after, config, data, resumed)
    got = load_safe(resumed / "final.pt")["model"]
    assert got.keys() == straight.keys()
    for key in straight:
        torch.testing.assert_close(got[key], straight[key], rtol=1e-3, atol=1e-4, msg=key)
    assert load_safe(resumed / "checkpoints/epoch-0003.pt")["world_size"] == after
