"""One writer per output (sslsv.locks): a second run refuses at once naming the holder; the
lock dies with its process; a lock file left by a killed run is taken over, with a message."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sslsv.locks import LOCK_NAME, OutputLocked, output_lock

HOLD = """
import sys, time
from sslsv.locks import output_lock
with output_lock(sys.argv[1], "holder-command"):
    print("locked", flush=True)
    time.sleep(60)
"""


def hold(directory: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_writer_refuses_naming_the_holder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = hold(out)
    try:
        start = time.time()
        with pytest.raises(OutputLocked) as err, output_lock(out, "second"):
            pass
        assert time.time() - start < 5  # at once, no waiting
        message = str(err.value)
        assert f"pid {proc.pid}" in message and "holder-command" in message
        assert os.uname().nodename in message
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_holder_leaves_a_lock_that_is_taken_over(tmp_path: Path, caplog) -> None:
    out = tmp_path / "out"
    proc = hold(out)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (out / LOCK_NAME).exists()  # kill -9: nothing cleaned up
    with caplog.at_level(logging.WARNING), output_lock(out, "next"):
        assert f"taking over the lock left by pid {proc.pid}" in caplog.text
    assert not (out / LOCK_NAME).exists()  # a clean exit removes it


def test_lock_is_released_after_the_block_and_after_an_error(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), output_lock(out):
        raise RuntimeError("boom")
    with output_lock(out):
        pass


# Imports first, then waits for the other run to hold the lock, then runs the stage: so the
# second run really meets the first one at work.
SECOND = """
import importlib, sys, time
from pathlib import Path
module = importlib.import_module(sys.argv[1])
lock = Path(sys.argv[2])
deadline = time.time() + 60
while not lock.exists() and time.time() < deadline:
    time.sleep(0.01)
sys.exit(module.main(sys.argv[3:]))
"""


def two_runs(module: str, argv: list[str], lock: Path):
    second = subprocess.Popen(
        [sys.executable, "-c", SECOND, module, str(lock), *argv],
        stderr=subprocess.PIPE,
        text=True,
    )
    first = subprocess.run(
        [sys.executable, "-m", module, *argv], capture_output=True, text=True, timeout=300
    )
    _, err = second.communicate(timeout=300)
    return first, second.returncode, err


def test_two_concurrent_stage1_runs(tone_data_dir, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("experiment: x\n")
    feats = tmp_path / "feats"
    argv = ["--config", str(config), "--data", str(tone_data_dir), "--feats-dir", str(feats),
            "--nj", "2"]  # fmt: skip
    first, code, err = two_runs("sslsv.bin.compute_features", argv, feats / LOCK_NAME)
    assert first.returncode == 0, first.stderr
    assert code == 1 and f"{feats} is being written by pid" in err, err
    assert len((tone_data_dir / "feats.scp").read_text().splitlines()) == 16
    assert not (feats / LOCK_NAME).exists()


def test_two_concurrent_stage3_runs(tone_data_dir, tmp_path):
    import torch

    from sslsv.config.load import config_to_dict, load_config
    from sslsv.models.embedding import EmbeddingModel
    from sslsv.train.checkpoint import model_payload

    cfg = load_config(None, ["encoder.name=resnet", "encoder.args={channels: [4], blocks: [1]}"])
    ckpt = tmp_path / "final.pt"
    torch.save(model_payload(config_to_dict(cfg), EmbeddingModel(cfg).state_dict()), ckpt)
    out = tmp_path / "emb"
    argv = ["--checkpoint", str(ckpt), "--data", str(tone_data_dir), "--output", str(out),
            "--nj", "2"]  # fmt: skip
    first, code, err = two_runs("sslsv.bin.extract", argv, out / LOCK_NAME)
    assert first.returncode == 0, first.stderr
    assert code == 1 and f"{out} is being written by pid" in err, err
    assert len((out / "embeddings.scp").read_text().splitlines()) == 16
