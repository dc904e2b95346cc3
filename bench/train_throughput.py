"""Training and extraction throughput: SimCLR NT-Xent-AM, Fast ResNet-34, two 2 s crops;
DINO rows (``-dino``) with the VoxCeleb recipe's ``conf/dino_resnet34.yaml``: 2 global 4 s
crops (teacher and student) and 4 local 2 s crops (student), 65,536-prototype heads.

Rows, each run on every device asked for (``--rows``, comma-separated):

  model-<fp32|bf16>[-cl][-compile][-dino]
                                  training steps on random waveforms already on the device:
                                  log-mel front end, encoder, loss, backward, Adam step
  pipeline-<fp32|bf16>[-cl][-compile][-dino]
                                  the same steps fed by the real DataLoader from WAV files on
                                  disk, with augmentation (reverberation, noise, babble)
  loader                          that DataLoader alone (reading, cropping, batching, copy
                                  to the device): how fast ``--num-workers`` can feed
  extract-<fp32|bf16>[-cl][-compile]
                                  embeddings of random 4 s waveforms, forward only
  stage3-fp32                     stage 3's own loop (sslsv.extraction.embed_data_dir) over
                                  the WAV files: one 4 s crop per utterance, batches of
                                  ``--batch-size`` crops, DataLoader readers

Training rows drive the recipe's own ``Trainer.train_step`` (configuration: the VoxCeleb
recipe's ``conf/simclr_ntxent_am.yaml``), reading the losses every ``train.log_every``
steps as ``Trainer.fit`` does. Pipeline rows time a whole fresh epoch of ``--steps`` steps,
from the start of its iterator (workers already running), so the prefetch queue starts
empty. The test audio (speech-like noise), simulated RIRs, noise and babble sets are written
to a temporary dir.

  python bench/train_throughput.py                      # every row, CPU and CUDA
  python bench/train_throughput.py --device cuda --output docs/throughput_h100.md
  python bench/train_throughput.py --batch-size 16 --steps 3 --device cpu   # a quick check
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import logging
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sslsv.config.load import load_config  # noqa: E402
from sslsv.config.schema import Config, ExtractConfig  # noqa: E402
from sslsv.datadir.io import read_wav_scp, write_spk2utt  # noqa: E402
from sslsv.extraction import embed_data_dir  # noqa: E402
from sslsv.fileio import atomic_write, write_table  # noqa: E402
from sslsv.models.embedding import EmbeddingModel  # noqa: E402
from sslsv.simulation.aug_sets import build_aug_sets  # noqa: E402
from sslsv.simulation.dsp import colored_noise  # noqa: E402
from sslsv.train.trainer import Trainer  # noqa: E402

DEFAULT_CONFIG = REPO / "egs" / "voxceleb" / "conf" / "simclr_ntxent_am.yaml"
DINO_CONFIG = REPO / "egs" / "voxceleb" / "conf" / "dino_resnet34.yaml"
DEFAULT_ROWS = (
    "model-fp32,model-bf16,model-bf16-cl,model-bf16-compile,model-bf16-cl-compile,loader,"
    "pipeline-fp32,pipeline-bf16,pipeline-bf16-cl-compile,extract-fp32,extract-fp32-cl,"
    "stage3-fp32,model-bf16-dino,pipeline-bf16-dino"
)
ROW = re.compile(r"^(model|pipeline|extract|stage3)-(fp32|bf16)(-cl)?(-compile)?(-dino)?$|^loader$")
SAMPLE_RATE = 16000
EXTRACT_SECONDS = 4.0

log = logging.getLogger("train_throughput")


@dataclass
class Row:
    name: str
    kind: str
    precision: str
    compile: bool
    channels_last: bool = False
    dino: bool = False


@dataclass
class Result:
    row: Row
    device: str
    steps: int
    seconds: float
    items: int
    data_wait: float | None = None  # seconds blocked waiting for the next batch
    peak_gib: float | None = None
    note: str = ""


def parse_rows(text: str) -> list[Row]:
    rows = []
    for name in (t.strip() for t in text.split(",") if t.strip()):
        m = ROW.match(name)
        if not m:
            raise ValueError(
                f"--rows: unknown row {name!r}; rows look like model-bf16, pipeline-fp32-compile,"
                " loader, extract-fp32, stage3-fp32"
            )
        if name == "loader":
            rows.append(Row(name, "loader", "fp32", False))
            continue
        kind, precision, channels_last, compiled, dino = m.group(1, 2, 3, 4, 5)
        if kind == "stage3" and (precision != "fp32" or channels_last or compiled):
            raise ValueError(f"--rows: {name!r}: stage 3 runs as stage 3 does: stage3-fp32")
        if dino and kind not in ("model", "pipeline"):
            raise ValueError(f"--rows: {name!r}: -dino is for model and pipeline rows")
        rows.append(Row(name, kind, precision, bool(compiled), bool(channels_last), bool(dino)))
    return rows


# -- test data --------------------------------------------------------------------------------


def speech_like(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Pink noise under a syllable-rate (3-6 Hz) envelope with pauses, peak 0.5."""
    n = round(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    rate = rng.uniform(3.0, 6.0)
    envelope = np.abs(np.sin(np.pi * rate * t + rng.uniform(0, np.pi))) ** 2
    envelope *= np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 2 * np.pi)) > -0.6  # pauses
    audio = colored_noise(n, 1.0, rng) * envelope
    return (0.5 * audio / max(np.abs(audio).max(), 1e-6)).astype(np.float32)


def write_corpus(root: Path, num_files: int, num_utts: int, seed: int) -> Path:
    """``num_files`` WAVs of 2.5-6 s; a data dir of ``num_utts`` utterances cycling over them
    (the files stay few, while an epoch still has enough distinct utterances)."""
    rng = np.random.default_rng(seed)
    wav_dir, data_dir = root / "wav", root / "data" / "train"
    wav_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(num_files):
        audio = speech_like(rng.uniform(2.5, 6.0), rng)
        path = wav_dir / f"f{i:05d}.wav"
        sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
        files.append((str(path), len(audio) / SAMPLE_RATE))
    wavs, utt2spk, utt2dur = {}, {}, {}
    for u in range(num_utts):
        path, seconds = files[u % num_files]
        utt = f"spk{u % 1000:03d}-utt{u:06d}"
        wavs[utt], utt2spk[utt], utt2dur[utt] = path, utt.split("-")[0], f"{seconds:.4f}"
    write_table(data_dir / "wav.scp", wavs)
    write_table(data_dir / "utt2spk", utt2spk)
    write_table(data_dir / "utt2dur", utt2dur)
    write_spk2utt(data_dir)
    return data_dir


# -- timing -----------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_config(args: argparse.Namespace, row: Row, aug_dir: Path, steps: int) -> Config:
    overrides = [
        f"train.batch_size={args.batch_size}",
        # DINO rows keep their config's crops (4 s global, 2 s local).
        *([] if row.dino else ["train.crop_seconds=2.0"]),
        f"train.precision={row.precision}",
        f"train.compile={str(row.compile).lower()}",
        f"train.channels_last={str(row.channels_last).lower()}",
        f"train.num_workers={args.num_workers}",
        "train.deterministic=false",
        f"train.epochs={max(1, steps)}",
        f"augment.enabled={str(row.kind == 'pipeline').lower()}",
        f"augment.rir_dir={json.dumps(str(aug_dir / 'rirs'))}",
        # The recipe's categories minus music, for which no set is generated here.
        "augment.noise=" + json.dumps({
            "noise": {"data_dir": str(aug_dir / "noise"), "snr_db": [0, 15]},
            "speech": {"data_dir": str(aug_dir / "speech"), "snr_db": [13, 20],
                       "num_sources": [3, 7]},
        }),
    ]  # fmt: skip
    return load_config(DINO_CONFIG if row.dino else args.config, overrides)


def read_losses(trainer: Trainer, pending: list, flush: bool = False) -> None:
    """Read the pending (loss, accuracy) pairs as ``Trainer.fit`` does: every
    ``train.log_every`` steps, in one transfer."""
    if pending and (flush or len(pending) >= trainer.cfg.train.log_every):
        torch.stack([torch.stack(p) for p in pending]).tolist()
        pending.clear()


def time_loader(
    trainer: Trainer, row: Row, device: str, batches, steps: int, warmup: int
) -> Result:
    """The DataLoader alone (reading, cropping, batching, pinning, copy to the device): the
    rate the training data path can feed, whatever the model."""
    for _ in range(warmup):
        next(batches)
    trainer.sampler.set_position(1, 0)
    batches = iter(trainer.loader)  # a fresh epoch: empty prefetch queue, as pipeline rows
    synchronize(trainer.device)
    start = time.perf_counter()
    for _ in range(steps):
        for crops in next(batches)[0]:
            crops.to(trainer.device, non_blocking=True)
    synchronize(trainer.device)
    items = steps * trainer.cfg.train.batch_size
    return Result(row, device, steps, time.perf_counter() - start, items)


def run_training_row(
    args: argparse.Namespace, row: Row, device: str, data_dir: Path, aug_dir: Path, exp: Path
) -> Result:
    steps, warmup = args.steps_for[device], args.warmup_for[device]
    cfg = make_config(args, row, aug_dir, steps)
    trainer = Trainer(cfg, data_dir, exp, device)
    dev = trainer.device
    try:
        if row.kind == "model":
            g = torch.Generator(device=dev).manual_seed(0)
            waves = [
                0.1 * torch.randn(args.batch_size, count, samples, device=dev, generator=g)
                for count, samples in trainer.crops
            ]
            start, pending = 0.0, []
            for step in range(warmup + steps):
                if step == warmup:
                    read_losses(trainer, pending, flush=True)
                    synchronize(dev)
                    start = time.perf_counter()
                loss, accuracy, _ = trainer.train_step(waves, 0, step)
                pending.append((loss, accuracy))
                read_losses(trainer, pending)
            read_losses(trainer, pending, flush=True)
            synchronize(dev)
            return Result(row, device, steps, time.perf_counter() - start, steps * args.batch_size)

        if trainer.steps_per_epoch < max(steps, warmup):
            raise ValueError("data dir too small for the steps asked for")  # sized by main()
        trainer.method.train()
        trainer.sampler.set_position(0, 0)
        batches = iter(trainer.loader)  # starts the persistent workers
        if row.kind == "loader":
            return time_loader(trainer, row, device, batches, steps, warmup)
        pending = []
        for step in range(warmup):
            crops, labels, indices = next(batches)
            loss, accuracy, _ = trainer.train_step(crops, 0, step, labels, indices)
            pending.append((loss, accuracy))
            read_losses(trainer, pending)
        read_losses(trainer, pending, flush=True)
        trainer.sampler.set_position(1, 0)
        # Untimed: a persistent loader's new iterator first drains what the workers still
        # prefetch for the abandoned warm-up epoch. The timed epoch starts with an empty queue.
        batches = iter(trainer.loader)
        synchronize(dev)
        start, waited = time.perf_counter(), 0.0
        for step in range(steps):
            before = time.perf_counter()
            crops, labels, indices = next(batches)
            waited += time.perf_counter() - before
            loss, accuracy, _ = trainer.train_step(crops, 1, step, labels, indices)
            pending.append((loss, accuracy))
            read_losses(trainer, pending)
        read_losses(trainer, pending, flush=True)
        synchronize(dev)
        elapsed = time.perf_counter() - start
        del batches
        return Result(row, device, steps, elapsed, steps * args.batch_size, data_wait=waited)
    finally:
        if trainer.writer is not None:
            trainer.writer.close()
        del trainer
        gc.collect()


@torch.inference_mode()
def run_extract_row(args: argparse.Namespace, row: Row, device: str) -> Result:
    steps, warmup = args.steps_for[device], args.warmup_for[device]
    cfg = load_config(args.config, [])
    model = EmbeddingModel(cfg).to(device).eval()
    if row.channels_last:
        model.to(memory_format=torch.channels_last)
    if row.compile:
        model.encoder.compile()
    dev = next(model.parameters()).device
    g = torch.Generator(device=dev).manual_seed(0)
    length = round(EXTRACT_SECONDS * cfg.features.sample_rate)
    waves = 0.1 * torch.randn(args.batch_size, length, device=dev, generator=g)
    autocast = (
        torch.autocast(dev.type, dtype=torch.bfloat16)
        if row.precision == "bf16"
        else contextlib.nullcontext()
    )
    start = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            synchronize(dev)
            start = time.perf_counter()
        with autocast:
            embeddings = model(waves)
        embeddings.float().cpu()  # stage 3 writes every batch out
    synchronize(dev)
    return Result(row, device, steps, time.perf_counter() - start, steps * args.batch_size)


@torch.inference_mode()
def run_stage3_row(args: argparse.Namespace, row: Row, device: str, data_dir: Path) -> Result:
    """Stage 3's loop from the WAV files: a warm-up pass over a few batches (autotuning),
    then a timed pass over ``steps`` batches, DataLoader start-up included."""
    steps, warmup = args.steps_for[device], args.warmup_for[device]
    cfg = load_config(args.config, [])
    model = EmbeddingModel(cfg).to(device).eval()
    if device == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed-size crops, as stage 3 sets it
    options = ExtractConfig(
        crop_seconds=EXTRACT_SECONDS,
        num_crops=1,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
    )
    wavs = list(read_wav_scp(data_dir / "wav.scp").items())
    result = None
    for phase, batches in (("warmup", max(1, warmup)), ("timed", steps)):
        subset = data_dir.parent / f"stage3-{phase}"
        write_table(subset / "wav.scp", dict(wavs[: batches * args.batch_size]))
        written: list[np.ndarray] = []  # stage 3 writes each embedding to an ark
        synchronize(torch.device(device))
        start = time.perf_counter()
        count = embed_data_dir(
            model, subset, False, device, lambda u, e, out=written: out.append(e), options
        )
        synchronize(torch.device(device))
        result = Result(row, device, batches, time.perf_counter() - start, count)
    return result


def run_row(
    args: argparse.Namespace, row: Row, device: str, data_dir: Path, aug_dir: Path, work: Path
) -> Result:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if row.kind == "extract":
        result = run_extract_row(args, row, device)
    elif row.kind == "stage3":
        result = run_stage3_row(args, row, device, data_dir)
    else:
        exp = work / "exp" / f"{row.name}-{device}"
        result = run_training_row(args, row, device, data_dir, aug_dir, exp)
    if device == "cuda":
        result.peak_gib = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.empty_cache()
    return result


# -- report -----------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_lines() -> list[str]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = "none"
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = f"{props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"- CPU: {cpu_model()}, {cores} cores available",
        f"- GPU: {gpu}",
        f"- torch {torch.__version__}, Python {platform.python_version()}, {now}",
    ]


def count_gflop(config: Path) -> tuple[float, float, float]:
    """Model GFLOP (matrix products and convolutions, as torch counts them) per training
    utterance (forward + backward, two 2 s crops), per 4 s extraction crop (forward) and per
    DINO training utterance (the student's forward + backward over all 6 crops, heads
    included, and the teacher's forward over the 2 global crops)."""
    from torch.utils.flop_counter import FlopCounterMode

    from sslsv.methods import StepInfo, build_method

    cfg = load_config(config, [])
    model = EmbeddingModel(cfg)
    rate = cfg.features.sample_rate
    crops = torch.randn(4, round(cfg.train.crop_seconds * rate))
    with FlopCounterMode(display=False) as counter:
        model(crops).sum().backward()
    train = counter.get_total_flops() / 2 / 1e9
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(2, round(EXTRACT_SECONDS * rate)))
    extract = counter.get_total_flops() / 2 / 1e9
    dino_cfg = load_config(DINO_CONFIG, [])
    dino = build_method(dino_cfg, EmbeddingModel(dino_cfg))
    batch = 2  # the heads' batch norm needs more than one row
    feats = [
        dino.model.fbank(torch.randn(batch * n, round(seconds * rate))).unflatten(0, (batch, n))
        for n, seconds in ((2, dino_cfg.train.crop_seconds),
                           (dino_cfg.method.local_crops, dino_cfg.method.local_crop_seconds))
    ]  # fmt: skip
    with FlopCounterMode(display=False) as counter:
        dino(feats, 0.0, None, StepInfo(progress=0.5, epoch=1))[0].backward()
    return train, extract, counter.get_total_flops() / batch / 1e9


def format_table(
    args: argparse.Namespace,
    results: list[Result],
    notes: list[str],
    gflop: tuple[float, float, float] | None = None,
) -> str:
    model_speed = {
        (r.device, r.row.precision, r.row.channels_last, r.row.compile, r.row.dino): r.items
        / r.seconds
        for r in results
        if r.row.kind == "model"
    }
    lines = [
        "SimCLR NT-Xent-AM, Fast ResNet-34, 40 log-mels; training: batch "
        f"{args.batch_size} x two 2 s crops; extraction: batch {args.batch_size} x one "
        f"{EXTRACT_SECONDS:g} s crop; DataLoader workers: {args.num_workers}",
        "",
        *machine_lines(),
        "",
        "| row | device | steps | ms/step | utt/s | TFLOP/s | pipeline/model | data wait "
        "| peak GPU mem |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        speed = r.items / r.seconds
        ratio = wait = "-"
        if r.row.kind == "pipeline":
            wait = f"{100 * (r.data_wait or 0) / r.seconds:.0f}%"
            base = model_speed.get(
                (r.device, r.row.precision, r.row.channels_last, r.row.compile, r.row.dino)
            )
            ratio = f"{100 * speed / base:.0f}%" if base else "-"
        mem = f"{r.peak_gib:.1f} GiB" if r.peak_gib is not None else "-"
        shown = f"{speed:,.0f}" if speed >= 100 else f"{speed:.1f}"
        tflops = "-"
        if gflop is not None and r.row.kind != "loader":
            per_item = gflop[0] if r.row.kind in ("model", "pipeline") else gflop[1]
            per_item = gflop[2] if r.row.dino else per_item
            tflops = f"{speed * per_item / 1000:.2f}"
        lines.append(
            f"| {r.row.name} | {r.device} | {r.steps} | {1000 * r.seconds / r.steps:.1f} | "
            f"{shown} | {tflops} | {ratio} | {wait} | {mem} |"
        )
    lines += [
        "",
        "utt/s counts utterances (two crops each; six for -dino rows) for training rows, crops "
        "for extract and stage3.",
    ]
    if gflop is not None:
        lines.append(
            f"TFLOP/s: model work of {gflop[0]:.2f} GFLOP per training utterance (forward and "
            f"backward, two 2 s crops), {gflop[2]:.2f} GFLOP per DINO training utterance "
            "(2 x 4 s + 4 x 2 s crops through the student, forward and backward, 2 x 4 s "
            f"through the teacher, 65,536-prototype heads) and {gflop[1]:.2f} GFLOP per 4 s "
            "extraction crop, as "
            "torch.utils.flop_counter counts matrix products and convolutions."
        )
    lines += [f"Note: {n}" for n in notes]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, help="timed steps per row (default: 50 CUDA, 2 CPU)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default: 5 CUDA, 1 CPU)")
    p.add_argument("--device", default="cpu,cuda", help="comma-separated: cpu, cuda")
    p.add_argument("--rows", default=DEFAULT_ROWS, help="comma-separated (default: %(default)s)")
    p.add_argument("--num-workers", type=int, default=8, help="DataLoader workers (recipe: 8)")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="base experiment YAML")
    p.add_argument("--num-files", type=int, default=512, help="distinct test WAV files")
    p.add_argument("--num-rirs", type=int, default=20, help="simulated RIRs")
    p.add_argument("--workdir", type=Path, help="for the test audio (default: a temporary dir)")
    p.add_argument("--output", type=Path, help="also write the table (Markdown) here")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.batch_size < 2:
        p.error("--batch-size must be at least 2")
    for name in ("steps", "warmup"):
        value = getattr(args, name)
        if value is not None and value < (1 if name == "steps" else 0):
            p.error(f"--{name} {value}: too small")
    args.devices = [d.strip() for d in args.device.split(",") if d.strip()]
    if not args.devices or any(d not in ("cpu", "cuda") for d in args.devices):
        p.error(f"--device {args.device!r}: use cpu, cuda or cpu,cuda")
    try:
        args.row_list = parse_rows(args.rows)
    except ValueError as e:
        p.error(str(e))
    default_steps = {"cuda": 50, "cpu": 2}
    default_warmup = {"cuda": 5, "cpu": 1}
    args.steps_for = {d: args.steps or default_steps[d] for d in default_steps}
    args.warmup_for = {
        d: default_warmup[d] if args.warmup is None else args.warmup for d in default_warmup
    }
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    notes = []
    devices = list(args.devices)
    if "cuda" in devices and not torch.cuda.is_available():
        devices.remove("cuda")
        notes.append("CUDA rows skipped: no CUDA device on this machine.")
    plan = []
    for device in devices:
        for row in args.row_list:
            if row.compile and device == "cpu":
                notes.append(f"{row.name} on CPU skipped: torch.compile rows run on CUDA only.")
                continue
            plan.append((row, device))
    if not plan:
        print("nothing to measure: " + " ".join(notes), file=sys.stderr)
        return 1

    with contextlib.ExitStack() as stack:
        if args.workdir:
            work = args.workdir
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sslsv-bench-")))
        started = time.time()
        steps = max([args.steps_for[d] for d in devices] + [args.warmup_for[d] for d in devices])
        data_dir = write_corpus(work, args.num_files, args.batch_size * max(1, steps), seed=0)
        aug_dir = work / "aug"
        build_aug_sets(
            aug_dir,
            seed=0,
            num_rirs=args.num_rirs,
            num_colored=12,
            babble_from=data_dir,
            num_babble=100,
            jobs=min(4, os.cpu_count() or 1),
        )
        print(f"test data written in {time.time() - started:.1f} s to {work}", file=sys.stderr)
        results = []
        for row, device in plan:
            began = time.time()
            result = run_row(args, row, device, data_dir, aug_dir, work)
            results.append(result)
            print(
                f"{row.name} on {device}: {result.items / result.seconds:,.1f} utt/s "
                f"({time.time() - began:.0f} s)",
                file=sys.stderr,
            )
    table = format_table(args, results, notes, count_gflop(args.config))
    print(table)
    if args.output:
        with atomic_write(args.output) as f:
            f.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
