"""Stage 3 extraction: crop protocol and batching against a plain per-utterance computation."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch

from sslsv.bin import extract as extract_cli
from sslsv.config.load import config_to_dict, load_config
from sslsv.config.schema import ExtractConfig
from sslsv.datadir.io import write_spk2utt
from sslsv.devices import DeviceError, check_device
from sslsv.extraction import crop_starts, embed_data_dir, job_device, take_crops
from sslsv.fileio import write_table
from sslsv.models.embedding import EmbeddingModel
from sslsv.train.checkpoint import load_model, model_payload

REPO = Path(__file__).resolve().parents[1]
PYTHON = str(REPO / ".venv" / "bin" / "python")
SR = 16000
CROP_SECONDS = 0.5


@pytest.fixture(scope="module")
def model() -> EmbeddingModel:
    torch.manual_seed(0)
    cfg = load_config(
        None,
        [
            "encoder.name=resnet",
            "encoder.args={channels: [4, 8], blocks: [1, 1], embed_dim: 16}",
            "features.n_mels=24",
        ],
    )
    model = EmbeddingModel(cfg).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so eval mode matters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Seven utterances of 0.3-1.7 s: some shorter than a crop, lengths all different."""
    root = tmp_path_factory.mktemp("extract")
    rng = np.random.default_rng(1)
    wavs = {}
    for i, seconds in enumerate([1.2, 0.3, 1.7, 0.5, 0.9, 0.45, 1.31]):
        audio = (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32)
        path = root / "wav" / f"u{i}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, audio, SR, subtype="FLOAT")
        wavs[f"spk{i % 3}-u{i}"] = str(path)
    data = root / "data"
    write_table(data / "wav.scp", wavs)
    write_table(data / "utt2spk", {u: u.split("-")[0] for u in wavs})
    write_spk2utt(data)
    return data


def collect(model, data, use_feats=False, **options) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    options.setdefault("num_workers", 0)
    n = embed_data_dir(model, data, use_feats, "cpu", out.__setitem__, ExtractConfig(**options))
    assert n == len(out)
    return out


def plain_crops(signal: np.ndarray, crop: int, num_crops: int) -> list[np.ndarray]:
    """The definition, spelled out: loop a short signal, then num_crops evenly spaced crops
    whose first starts at 0 and last ends at the end (one crop: the middle one)."""
    if signal.shape[-1] < crop:
        looped = signal
        while looped.shape[-1] < crop:
            looped = np.concatenate([looped, signal], axis=-1)
        signal = looped[..., :crop]
    slack = signal.shape[-1] - crop
    if num_crops == 1:
        return [signal[..., slack // 2 : slack // 2 + crop]]
    starts = [int(np.floor(i * slack / (num_crops - 1) + 1e-9)) for i in range(num_crops)]
    return [signal[..., s : s + crop] for s in starts]


def test_crop_starts_span_the_signal():
    assert crop_starts(100, 40, 4) == [0, 20, 40, 60]
    assert crop_starts(100, 40, 1) == [30]
    assert crop_starts(30, 40, 3) == [0, 0, 0]
    for length, crop, n in [(16001, 8000, 6), (7, 3, 5), (1000, 999, 3)]:
        starts = crop_starts(length, crop, n)
        assert starts[0] == 0 and starts[-1] + crop == length
        assert starts == sorted(starts) and len(starts) == n


def test_take_crops_matches_definition():
    rng = np.random.default_rng(0)
    for length, crop, n in [(50, 20, 4), (13, 20, 3), (20, 20, 2), (97, 10, 1), (5, 12, 2)]:
        signal = rng.standard_normal((3, length)).astype(np.float32)
        expected = plain_crops(signal, crop, n)
        got = take_crops(signal, crop, n)
        assert got.shape == (n, 3, crop)
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e)


def test_full_utterances_equal_one_forward_each(model, data_dir):
    """Full-utterance protocol, through two DataLoader workers (order must be kept)."""
    got = collect(model, data_dir, num_workers=2)
    wavs = dict(line.split(maxsplit=1) for line in (data_dir / "wav.scp").read_text().splitlines())
    assert list(got) == list(wavs)
    with torch.no_grad():
        for utt, path in wavs.items():
            audio, _ = sf.read(path, dtype="float32")
            expected = model(torch.from_numpy(audio)[None])[0].numpy()
            np.testing.assert_allclose(got[utt], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch_size", [1, 7, 256])
def test_batched_crops_equal_plain_per_crop_mean(model, data_dir, batch_size):
    """The crops of batch_size // 3 utterances (at least one) share a forward pass (7: two
    utterances, 6 crops; 256: all seven); the embeddings must not depend on it."""
    got = collect(model, data_dir, crop_seconds=CROP_SECONDS, num_crops=3, batch_size=batch_size)
    crop = int(CROP_SECONDS * SR)
    with torch.no_grad():
        for line in (data_dir / "wav.scp").read_text().splitlines():
            utt, path = line.split(maxsplit=1)
            audio, _ = sf.read(path, dtype="float32")
            embeddings = [
                model(torch.from_numpy(np.ascontiguousarray(c))[None])[0].numpy()
                for c in plain_crops(audio, crop, 3)
            ]
            expected = np.mean([e / np.linalg.norm(e) for e in embeddings], axis=0)
            np.testing.assert_allclose(got[utt], expected, rtol=1e-5, atol=1e-6)


def test_crops_from_stored_features(model, data_dir, tmp_path):
    """With feats.scp the crops are frame crops of the stored log-mels, of as many frames as
    the front end makes from a crop of samples."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("wav.scp", "utt2spk", "spk2utt"):
        (data / name).write_text((data_dir / name).read_text())
    feats = {}
    with torch.no_grad(), kaldiio.WriteHelper(f"ark,scp:{tmp_path}/f.ark,{data}/feats.scp") as w:
        for line in (data_dir / "wav.scp").read_text().splitlines():
            utt, path = line.split(maxsplit=1)
            audio, _ = sf.read(path, dtype="float32")
            feats[utt] = model.fbank(torch.from_numpy(audio)[None])[0].numpy()
            w(utt, feats[utt].T)
    got = collect(model, data, use_feats=True, crop_seconds=CROP_SECONDS, num_crops=2)
    frames = model.fbank.num_frames(int(CROP_SECONDS * SR))
    with torch.no_grad():
        for utt, f in feats.items():
            embeddings = [
                model.forward_features(torch.from_numpy(np.ascontiguousarray(c))[None])[0]
                for c in plain_crops(f, frames, 2)
            ]
            expected = torch.stack([e / e.norm() for e in embeddings]).mean(0).numpy()
            np.testing.assert_allclose(got[utt], expected, rtol=1e-5, atol=1e-6)


def test_cli_crop_flags_and_stamp(model, data_dir, tmp_path):
    ckpt = tmp_path / "final.pt"
    cfg = load_config(
        None,
        [
            "encoder.name=resnet",
            "encoder.args={channels: [4, 8], blocks: [1, 1], embed_dim: 16}",
            "features.n_mels=24",
        ],
    )
    payload = model_payload(config_to_dict(cfg), model.state_dict())
    torch.save(payload, ckpt)
    assert load_model(ckpt)[1].extract.crop_seconds == 0.0
    out = tmp_path / "emb"

    def extract(*flags):
        return subprocess.run(
            [PYTHON, "-m", "sslsv.bin.extract", "--checkpoint", str(ckpt), "--data",
             str(data_dir), "--output", str(out), *flags],
            capture_output=True, text=True, cwd=REPO,
        )  # fmt: skip

    def embeddings():
        return {u: np.array(v) for u, v in kaldiio.load_scp(str(out / "embeddings.scp")).items()}

    result = extract("--num-crops", "0")
    assert result.returncode != 0 and "--num-crops" in result.stderr
    result = extract("--crop-seconds", str(CROP_SECONDS), "--num-crops", "3", "--batch-size", "4")
    assert result.returncode == 0, result.stderr
    cropped = embeddings()
    expected = collect(model, data_dir, crop_seconds=CROP_SECONDS, num_crops=3)
    for utt, e in expected.items():
        np.testing.assert_allclose(cropped[utt], e, rtol=1e-5, atol=1e-6)
    # Same protocol, other batch size: reused. Another protocol: recomputed.
    result = extract("--crop-seconds", str(CROP_SECONDS), "--num-crops", "3", "--batch-size", "8")
    assert "up to date" in result.stderr
    result = extract("--crop-seconds", "0")
    assert result.returncode == 0, result.stderr
    full = embeddings()
    utt = next(iter(full))
    assert not np.allclose(full[utt], cropped[utt])
    # The extract: section of --config instead of the checkpoint's; flags override it.
    config = tmp_path / "c.yaml"
    config.write_text(f"extract: {{crop_seconds: {CROP_SECONDS}, num_crops: 3}}\n")
    result = extract("--config", str(config))
    assert result.returncode == 0, result.stderr
    from_config = embeddings()
    for u in cropped:  # the same protocol (another batch size: equal up to rounding)
        np.testing.assert_allclose(from_config[u], cropped[u], rtol=1e-5, atol=1e-6)
    assert "mean of 3 crops of 0.5 s" in (out / "log" / "extract.1.log").read_text()
    result = extract("--config", str(config), "--num-crops", "2")
    assert result.returncode == 0, result.stderr
    assert not np.allclose(embeddings()[utt], cropped[utt])
    config.write_text("extract: {crop_seconds: -1}\n")
    result = extract("--config", str(config))
    assert result.returncode == 1
    assert "'extract.crop_seconds' is -1.0; it must be >= 0" in result.stderr


# ---------------------------------------------------------------- devices, GPUs, autotuning


def write_checkpoint(model: EmbeddingModel, path: Path) -> Path:
    cfg = load_config(
        None,
        [
            "encoder.name=resnet",
            "encoder.args={channels: [4, 8], blocks: [1, 1], embed_dim: 16}",
            "features.n_mels=24",
        ],
    )
    torch.save(model_payload(config_to_dict(cfg), model.state_dict()), path)
    return path


def fake_gpus(monkeypatch, count: int) -> list:
    """``count`` visible CUDA devices as torch would report them; the devices passed to
    ``torch.cuda.set_device`` are recorded in the returned list."""
    current: list = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    return current


def test_job_device_spreads_jobs_over_the_visible_gpus():
    assert [job_device("cuda", j, 5, 2) for j in range(1, 6)] == [
        "cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0",
    ]  # fmt: skip
    assert [job_device("cuda", j, 3, 4) for j in (1, 2, 3)] == ["cuda:0", "cuda:1", "cuda:2"]
    assert job_device("cuda", 7, 16, 1) == "cuda:0"
    assert job_device("cpu", 3, 4, 2) == "cpu"
    with pytest.raises(DeviceError, match="no CUDA device"):
        job_device("cuda", 1, 2, 0)
    for job in (0, 3):
        with pytest.raises(ValueError, match=f"job {job} is not one of 1..2"):
            job_device("cuda", job, 2, 2)


def test_check_device(monkeypatch):
    assert check_device("cpu") == torch.device("cpu")
    fake_gpus(monkeypatch, 2)
    assert check_device("cuda:1") == torch.device("cuda", 1)
    assert check_device("cuda") == torch.device("cuda")
    with pytest.raises(DeviceError, match=r"'cuda:2': only 2 CUDA device\(s\) visible"):
        check_device("cuda:2")
    with pytest.raises(DeviceError, match="'gpu': not a device"):
        check_device("gpu")
    fake_gpus(monkeypatch, 0)
    with pytest.raises(DeviceError, match="'cuda:0': CUDA is not available"):
        check_device("cuda:0")


def test_cuda_without_gpu_is_a_one_line_error(model, data_dir, tmp_path, monkeypatch, capsys):
    """Before: the checkpoint was read onto the missing GPU, and the error blamed the file."""
    ckpt = write_checkpoint(model, tmp_path / "final.pt")
    fake_gpus(monkeypatch, 0)
    args = ["--checkpoint", str(ckpt), "--data", str(data_dir), "--output", str(tmp_path / "o")]
    assert extract_cli.main([*args, "--device", "cuda"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "'cuda': CUDA is not available" in err, err
    assert not (tmp_path / "o" / "embeddings.scp").exists()


def test_cuda_jobs_default_to_one_per_gpu(model, data_dir, tmp_path, monkeypatch):
    """--device cuda without --nj: one job per visible GPU, each told the job count."""
    ckpt = write_checkpoint(model, tmp_path / "final.pt")
    fake_gpus(monkeypatch, 3)
    launched: dict = {}

    class Launched(Exception):
        pass

    def run_jobs(command_for_job, nj, log_dir, name, jobs=None, cmd="local"):
        launched.update(nj=nj, commands=[command_for_job(j) for j in range(1, nj + 1)])
        raise Launched

    monkeypatch.setattr(extract_cli, "run_jobs", run_jobs)
    out = tmp_path / "o"
    args = ["--checkpoint", str(ckpt), "--data", str(data_dir), "--output", str(out)]
    with pytest.raises(Launched):
        extract_cli.extract(extract_cli.build_parser().parse_args([*args, "--device", "cuda"]))
    assert launched["nj"] == 3 and (out / "split3").is_dir()
    for j, command in enumerate(launched["commands"], 1):
        flags = dict(zip(command[3::2], command[4::2]))
        assert flags["--nj"] == "3" and flags["--device"] == "cuda" and flags["--job"] == str(j)
    with pytest.raises(Launched):  # a given --nj wins
        extract_cli.extract(
            extract_cli.build_parser().parse_args([*args, "--device", "cuda", "--nj", "2"])
        )
    assert launched["nj"] == 2
    assert extract_cli.default_nj("cpu") == 1


@pytest.mark.parametrize("gpus", [1, 2])
def test_cuda_job_runs_on_its_gpu(model, data_dir, tmp_path, monkeypatch, caplog, gpus):
    """Job j of 3 loads its model onto, embeds on and makes current cuda:(j-1) mod gpus
    (before: every job on "cuda", that is GPU 0)."""
    ckpt = write_checkpoint(model, tmp_path / "final.pt")
    current = fake_gpus(monkeypatch, gpus)
    used: list = []

    def load_model_spy(path, device="cpu"):
        used.append(("load", device))
        return load_model(path)  # the CPU: there is no GPU here

    def embed_spy(model, data_dir, use_feats, device, writer, options=None, silent=None):
        used.append(("embed", device))
        return 0

    monkeypatch.setattr(extract_cli, "load_model", load_model_spy)
    monkeypatch.setattr(extract_cli, "embed_data_dir", embed_spy)
    out = tmp_path / "o"
    out.mkdir()
    parser = extract_cli.build_parser()
    for job in (1, 2, 3):
        args = parser.parse_args(
            ["--checkpoint", str(ckpt), "--data", str(data_dir), "--output", str(out),
             "--device", "cuda", "--nj", "3", "--job", str(job), "--source", "audio"]
        )  # fmt: skip
        used.clear()
        with caplog.at_level("INFO", logger="extract"):
            extract_cli.extract(args)
        expected = f"cuda:{(job - 1) % gpus}"
        assert used == [("load", expected), ("embed", expected)]
        assert current[-1] == expected
        assert f"job {job} of 3: device {expected}" in caplog.text


def test_model_file_is_read_to_cpu_and_only_the_model_moves(model, tmp_path, monkeypatch):
    """Before: torch.load(map_location=device) put a whole training checkpoint (optimizer,
    SSPS memory) on the GPU of every extraction job. The meta device stands in for a GPU."""
    ckpt = write_checkpoint(model, tmp_path / "final.pt")
    locations: list = []
    real_load = torch.load

    def load_spy(*args, **kwargs):
        locations.append(kwargs.get("map_location"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", load_spy)
    loaded, _ = load_model(ckpt, "meta")
    assert locations == ["cpu"]
    assert {p.device.type for p in loaded.parameters()} == {"meta"}


def test_whole_utterances_run_without_cudnn_autotuning(model, data_dir, monkeypatch):
    """cuDNN autotuning (on for training crops) is off inside the forward passes of whole
    utterances, kept for crops, and the caller's setting is restored either way."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    seen: list[bool] = []
    hook = model.register_forward_pre_hook(
        lambda module, inputs: seen.append(torch.backends.cudnn.benchmark)
    )
    try:
        collect(model, data_dir)
        assert len(seen) == 7 and not any(seen)
        assert torch.backends.cudnn.benchmark
        seen.clear()
        collect(model, data_dir, crop_seconds=CROP_SECONDS, num_crops=2)
        assert seen and all(seen)
        assert torch.backends.cudnn.benchmark
    finally:
        hook.remove()


@pytest.mark.parametrize(
    ("flags", "nj"),
    [
        (["--device", "cuda"], None),  # sslsv.bin.extract's default: one job per GPU
        (["--device", "cuda", "--nj", ""], None),  # an empty --nj, as run.sh passes on
        (["--device", "cuda", "--nj", "3"], "3"),
        (["--device", "cpu"], "4"),
        (["--device", "cpu", "--nj", ""], "4"),
    ],
)
def test_extract_step_leaves_the_gpu_job_count_to_extract(tmp_path, flags, nj):
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text("u a.wav\n")
    (tmp_path / "m.pt").write_bytes(b"")
    step = REPO / "steps" / "extract_embeddings.sh"
    result = subprocess.run(
        ["bash", str(step), *flags, str(tmp_path / "m.pt"), str(data), str(tmp_path / "e")],
        capture_output=True, text=True, env={**os.environ, "SSLSV_PYTHON": str(fake)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    args = result.stdout.splitlines()
    assert args[:2] == ["-m", "sslsv.bin.extract"]
    assert (args[args.index("--nj") + 1] if "--nj" in args else None) == nj
