"""Stage 2: deterministic training, exact resume after kill -9, refusal of config drift."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sslsv.bin import train as train_cli
from sslsv.train.checkpoint import load_safe

TINY = """
experiment: tiny
encoder:
  name: resnet
  args: {{channels: [4, 8, 8, 16], blocks: [1, 1, 1, 1], embed_dim: 16}}
augment:
  enabled: true
  noise_prob: 0.5
  noise:
    noise: {{data_dir: "{noise}", snr_db: [5, 15]}}
train: {{epochs: 2, batch_size: 4, num_workers: 0, crop_seconds: 0.5, deterministic: true,
        average_last: 2, keep_checkpoints: 2}}
"""


def write_config(tmp_path, data_dir):
    path = tmp_path / "tiny.yaml"
    # The training utterances double as a noise set: enough for a test of the mechanics.
    path.write_text(TINY.format(noise=data_dir))
    return path


def final_weights(exp_dir):
    return load_safe(exp_dir / "final.pt")["model"]


def test_kill_and_resume_equals_straight_run(tmp_path, tone_data_dir):
    config = write_config(tmp_path, tone_data_dir)
    straight = tmp_path / "straight"
    # Three epochs, so that a kill in epoch 2 always leaves work to resume.
    three = ["--override", "train.epochs=3"]
    assert train_cli.main(["--config", str(config), "--data", str(tone_data_dir),
                           "--exp-dir", str(straight), *three]) == 0  # fmt: skip

    resumed = tmp_path / "resumed"
    cmd = [sys.executable, "-m", "sslsv.bin.train", "--config", str(config),
           "--data", str(tone_data_dir), "--exp-dir", str(resumed)]  # fmt: skip
    # Mid-epoch checkpoints every 2 steps (4 steps per epoch): kill inside epoch 2.
    cmd += ["--override", "train.epochs=3", "train.checkpoint_every_steps=2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mid_epoch_2 = resumed / "checkpoints" / "step-000000006.pt"
    deadline = time.time() + 120
    while not mid_epoch_2.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert mid_epoch_2.exists(), "mid-epoch checkpoint never appeared"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (resumed / "final.pt").exists(), "killed too late to test a resume"
    state = load_safe(mid_epoch_2)
    assert (state["epoch"], state["step"]) == (1, 2)
    assert train_cli.main(["--config", str(config), "--data", str(tone_data_dir),
                           "--exp-dir", str(resumed),
                           "--override", "train.epochs=3",
                           "train.checkpoint_every_steps=2"]) == 0  # fmt: skip

    want, got = final_weights(straight), final_weights(resumed)
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key
    # The resumed run really trained: weights moved away from initialisation.
    init = load_safe(resumed / "init.pt")["model"]
    assert any(not torch.equal(init[k], got[k]) for k in got if got[k].is_floating_point())


def test_rerun_of_finished_training_is_a_no_op(tmp_path, tone_data_dir):
    config = write_config(tmp_path, tone_data_dir)
    exp = tmp_path / "exp"
    args = ["--config", str(config), "--data", str(tone_data_dir), "--exp-dir", str(exp)]
    assert train_cli.main(args) == 0
    mtime = (exp / "final.pt").stat().st_mtime_ns
    assert train_cli.main(args) == 0
    assert (exp / "final.pt").stat().st_mtime_ns == mtime


def test_changed_config_is_refused_with_the_key(tmp_path, tone_data_dir, capsys):
    config = write_config(tmp_path, tone_data_dir)
    exp = tmp_path / "exp"
    args = ["--config", str(config), "--data", str(tone_data_dir), "--exp-dir", str(exp)]
    assert train_cli.main([*args, "--override", "train.epochs=1"]) == 0
    assert train_cli.main([*args, "--override", "train.epochs=1", "method.margin=0.3"]) == 1
    assert "method.margin: 0.1 -> 0.3" in capsys.readouterr().err
    # Settings of stages 3-5 do not change the trained model: a rerun accepts them.
    later = ["extract.crop_seconds=2.0", "scoring.backend=plda"]
    assert train_cli.main([*args, "--override", "train.epochs=1", *later]) == 0


def test_two_processes_follow_the_single_process_loss_curve(tmp_path, tone_data_dir):
    """Stage 2 under torchrun with 2 gloo processes (global batch norm, global-batch
    augmentation choices) logs the same losses as 1 process with the same global batch."""
    config = write_config(tmp_path, tone_data_dir)
    args = ["--config", str(config), "--data", str(tone_data_dir)]
    assert train_cli.main([*args, "--exp-dir", str(tmp_path / "one")]) == 0
    torchrun = Path(sys.executable).parent / "torchrun"
    result = subprocess.run(
        [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "sslsv.bin.train",
         *args, "--exp-dir", str(tmp_path / "two")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert load_safe(tmp_path / "two" / "checkpoints" / "epoch-0002.pt")["world_size"] == 2

    def losses(exp):
        text = (exp / "log" / "train.log").read_text()
        return [float(v) for v in re.findall(r"loss ([0-9.]+)", text)]

    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(one) == len(two) == 2
    assert two == pytest.approx(one, abs=2e-3)
