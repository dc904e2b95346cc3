"""Export: TorchScript and ONNX files equal the eager model (front end inside), for every
registered encoder, several lengths, batch > 1, and run in a process without sslsv."""

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import SHARED_DATA

import sslsv.export
from sslsv.bin import export as export_cli
from sslsv.config.load import config_from_dict
from sslsv.export import InferenceGraph, export_model
from sslsv.models import ENCODERS
from sslsv.models.embedding import EmbeddingModel
from sslsv.train.checkpoint import model_fingerprint, model_payload, save_atomic

#: Small settings per encoder, so that exporting all of them stays fast.
ENCODER_ARGS = {
    "resnet": {"channels": [8, 8, 16, 16], "blocks": [1, 1, 1, 1], "embed_dim": 32},
    "fast_resnet34": {},
    "ecapa_tdnn": {"channels": 64},
    "stats": {},
}
LENGTHS = (0.3, 2.0, 5.37)  # seconds: shorter and longer than the traced 2 s, odd samples


#: The package's encoders (tests may register their own in the same registry).
PACKAGED = sorted(n for n, cls in ENCODERS.items() if cls.__module__.startswith("sslsv."))


def test_every_encoder_is_covered():
    assert set(ENCODER_ARGS) == set(PACKAGED)


def build(name: str) -> tuple[EmbeddingModel, object]:
    torch.manual_seed(0)
    cfg = config_from_dict({"encoder": {"name": name, "args": ENCODER_ARGS[name]}})
    model = EmbeddingModel(cfg).eval()
    # Non-trivial batch-norm statistics: eval-mode normalisation is part of the graph.
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model, cfg


def real_audio() -> np.ndarray | None:
    files = sorted((SHARED_DATA / "LibriSpeech" / "train-clean-5").rglob("*.flac"))
    if not files:
        return None
    audio, rate = sf.read(files[0], dtype="float32")
    assert rate == 16000
    return audio


def make_inputs(tmp_path: Path) -> list[Path]:
    """Batches of random audio of several lengths (batch 3), and real speech when present."""
    rng = np.random.default_rng(1)
    batches = [
        (0.1 * rng.standard_normal((3, round(s * 16000)))).astype(np.float32) for s in LENGTHS
    ]
    speech = real_audio()
    if speech is not None:
        batches.append(np.stack([speech[:32000], speech[8000:40000]]))
        batches.append(speech[None, : 16000 * 6 + 7])
    paths = []
    for i, batch in enumerate(batches):
        paths.append(tmp_path / f"in{i}.npy")
        np.save(paths[-1], batch)
    return paths


# Run in a fresh interpreter where importing sslsv fails: the files need only their runtime.
RUNNER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    sys.modules["sslsv"] = None  # any import of sslsv now raises
    jobs = json.loads(sys.argv[1])
    for fmt, model_path, inputs, outputs in jobs:
        if fmt == "torchscript":
            import torch
            extra = {"sslsv.json": ""}
            module = torch.jit.load(model_path, _extra_files=extra)
            assert json.loads(extra["sslsv.json"])["sample_rate"] == 16000
            run = lambda x: module(torch.from_numpy(x)).detach().numpy()
        else:
            import onnxruntime
            session = onnxruntime.InferenceSession(model_path, providers=["CPUExecutionProvider"])
            meta = session.get_modelmeta().custom_metadata_map
            assert json.loads(meta["sslsv"])["sample_rate"] == 16000
            run = lambda x: session.run(None, {"wave": x})[0]
        for i, o in zip(inputs, outputs):
            np.save(o, run(np.load(i)))
    print("ok")
    """
)


@pytest.mark.slow
def test_exported_models_equal_eager_in_a_process_without_sslsv(tmp_path):
    inputs = make_inputs(tmp_path)
    jobs, expected = [], {}
    for name in PACKAGED:
        model, cfg = build(name)
        graph = InferenceGraph(model)
        with torch.no_grad():
            eager = [graph(torch.from_numpy(np.load(p))).numpy() for p in inputs]
        for fmt in ("torchscript", "onnx"):
            path = tmp_path / f"{name}.{fmt}"
            meta = export_model(model, cfg, fmt, path, model_fingerprint(model.state_dict()))
            assert meta["embed_dim"] == eager[0].shape[1]
            outputs = [str(tmp_path / f"{name}.{fmt}.out{i}.npy") for i in range(len(inputs))]
            jobs.append((fmt, str(path), [str(p) for p in inputs], outputs))
            expected[(name, fmt)] = (eager, outputs)
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(jobs)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for (name, fmt), (eager, outputs) in expected.items():
        for e, o in zip(eager, outputs):
            got = np.load(o)
            assert got.shape == e.shape, (name, fmt)
            np.testing.assert_allclose(got, e, atol=1e-4, rtol=0, err_msg=f"{name} {fmt}")
            np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_export_cli_checks_parity_and_names_bad_input(tmp_path, capsys):
    model, cfg = build("resnet")
    ckpt = tmp_path / "final.pt"
    save_atomic(model_payload(json.loads(json.dumps(_plain(cfg))), model.state_dict()), ckpt)
    out = tmp_path / "m.ts"
    assert (
        export_cli.main(
            ["--checkpoint", str(ckpt), "--format", "torchscript", "--output", str(out)]
        )
        == 0
    )
    assert out.is_file()
    not_a_model = tmp_path / "notes.txt"
    not_a_model.write_text("hello\n")
    code = export_cli.main(
        ["--checkpoint", str(not_a_model), "--format", "onnx", "--output", str(tmp_path / "x.onnx")]
    )
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a readable sslsv checkpoint" in err[0] and "notes.txt" in err[0]


def _plain(cfg) -> dict:
    import dataclasses

    return dataclasses.asdict(cfg)


def _stats_checkpoint(tmp_path: Path) -> Path:
    """The quickest model to export (the stats encoder: under a second)."""
    model, cfg = build("stats")
    ckpt = tmp_path / "final.pt"
    save_atomic(model_payload(json.loads(json.dumps(_plain(cfg))), model.state_dict()), ckpt)
    return ckpt


def test_export_outputs_that_destroy_the_model_or_cannot_be_written_are_one_line(tmp_path, capsys):
    """Refused before anything is read or written, one line, exit 1: OUTPUT is the model
    file (before: replaced by the TorchScript file, exit 0) or a link to it, a folder, or
    lies under a regular file."""
    ckpt = _stats_checkpoint(tmp_path)
    model_bytes = ckpt.read_bytes()
    (tmp_path / "link.pt").symlink_to(ckpt)
    (tmp_path / "folder").mkdir()
    for out, why in (
        (ckpt, f"--output {ckpt} is the input --checkpoint"),
        (tmp_path / "link.pt", f"--output {tmp_path / 'link.pt'} is the input --checkpoint"),
        (tmp_path / "folder", f"--output {tmp_path / 'folder'}: is a folder; name a file"),
        (ckpt / "m.ts", f"--output {ckpt / 'm.ts'}: {ckpt} is not a folder"),
    ):
        args = ["--checkpoint", str(ckpt), "--format", "torchscript", "--output", str(out)]
        assert export_cli.main(args) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and why in err[0], err
    assert ckpt.read_bytes() == model_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final.pt", "folder", "link.pt"]
    assert not any((tmp_path / "folder").iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_export_into_a_read_only_folder_is_one_line(tmp_path, capsys):
    ckpt = _stats_checkpoint(tmp_path)
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        args = ["--checkpoint", str(ckpt), "--format", "onnx", "--output", str(locked / "m")]
        assert export_cli.main(args) == 1
    finally:
        locked.chmod(0o755)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "permission denied" in err[0], err


@pytest.mark.parametrize("failure", ["parity", "crash"])
def test_a_failed_export_leaves_the_old_file(tmp_path, monkeypatch, capsys, failure):
    """The file is checked under a temporary name and renamed only once it passes: a parity
    failure or a crash while checking (here: reading it back fails) leaves the previous
    OUTPUT as it was and no temporary beside it (before: OUTPUT replaced first, then
    removed on a parity failure, or left unchecked after a crash)."""
    ckpt = _stats_checkpoint(tmp_path)
    out = tmp_path / "m.ts"
    out.write_bytes(b"the previous export\n")
    if failure == "parity":
        worse = lambda *a: 1.0  # noqa: E731
        monkeypatch.setattr(sslsv.export, "parity_error", worse)
        monkeypatch.setattr(export_cli, "parity_error", worse, raising=False)  # older command
    else:

        def crash(path, fmt):
            raise OSError(errno.EIO, "read back failed (test)", str(path))

        monkeypatch.setattr(sslsv.export, "load_exported", crash)
        monkeypatch.setattr(export_cli, "load_exported", crash, raising=False)
    args = ["--checkpoint", str(ckpt), "--format", "torchscript", "--output", str(out)]
    assert export_cli.main(args) == 1
    assert out.read_bytes() == b"the previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final.pt", "m.ts"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    if failure == "parity":
        assert "differ from the eager model's by 1.00e+00" in err[0] and "not written" in err[0]
