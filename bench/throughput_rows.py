"""The rows of ``bench/train_throughput.py``: row names, one runner per kind of row (on the
test data of ``bench/throughput_data.py``), and the model work (GFLOP) per item that its
TFLOP/s column divides by.

A row name is ``KIND[-PRECISION][-cl][-compile][-METHOD]``:

- KIND: ``model``, ``pipeline``, ``loader`` (training), ``extract``, ``stage3``, ``whole``
  (embedding);
- PRECISION: ``fp32`` or ``bf16`` (not for ``loader``; ``stage3`` and ``whole`` run fp32,
  as the recipe's extraction does);
- METHOD (training rows only): none for SimCLR NT-Xent-AM, ``-moco``, ``-ssps``, ``-dino``,
  ``-cls`` (the second stage's classifier), each with its VoxCeleb recipe configuration
  (:data:`METHOD_CONFIGS`). Embedding rows need none: every method embeds with the same
  Fast ResNet-34.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sslsv.config.load import load_config  # noqa: E402
from sslsv.config.schema import Config, ExtractConfig  # noqa: E402
from sslsv.datadir.io import read_wav_scp  # noqa: E402
from sslsv.extraction import embed_data_dir  # noqa: E402
from sslsv.fileio import write_table  # noqa: E402
from sslsv.methods import StepInfo, build_method, method_class  # noqa: E402
from sslsv.models.embedding import EmbeddingModel  # noqa: E402
from sslsv.train.dataset import crops_to_device  # noqa: E402
from sslsv.train.loop import LossWindow  # noqa: E402
from sslsv.train.trainer import Trainer  # noqa: E402

CONF = REPO / "egs" / "voxceleb" / "conf"
#: Row-name suffix -> the recipe configuration of that method ("": ``--config``'s default).
METHOD_CONFIGS = {
    "": CONF / "simclr_ntxent_am.yaml",
    "moco": CONF / "moco_ntxent_am.yaml",
    "ssps": CONF / "simclr_ntxent_am_ssps.yaml",
    "dino": CONF / "dino_resnet34.yaml",
    "cls": CONF / "classifier_pl_resnet34.yaml",
}
METHOD_NAMES = {"": "SimCLR", "moco": "MoCo", "ssps": "SSPS", "dino": "DINO", "cls": "classifier"}
ROW = re.compile(
    r"^(model|pipeline|loader|extract|stage3|whole)(?:-(fp32|bf16))?(-cl)?(-compile)?"
    r"(?:-(moco|ssps|dino|cls))?$"
)
EXTRACT_SECONDS = 4.0
#: Whole-utterance rows embed this many utterances (of bench/throughput_data.py's
#: WHOLE_SECONDS) per ``--steps``.
WHOLE_UTTS_PER_STEP = 8
#: The epoch that training rows pass to ``train_step``: past DINO's first epoch, whose
#: frozen prototypes would make its steps cheaper than the rest of training.
TIMED_EPOCH = 1
#: SSPS memory size on CPU: the recipe's 1,100,000 x (512 + 512) floats are 4.5 GB.
CPU_SSPS_QUEUE = 8192


@dataclass(frozen=True)
class Row:
    name: str
    kind: str
    precision: str = "fp32"
    compile: bool = False
    channels_last: bool = False
    method: str = ""  # a METHOD_CONFIGS key


@dataclass
class Result:
    row: Row
    device: str
    steps: int
    seconds: float
    items: int  # utterances (training, whole) or crops (extract, stage3)
    data_wait: float | None = None  # seconds blocked waiting for the next batch
    peak_gib: float | None = None
    audio_seconds: float | None = None  # whole rows: the audio embedded
    workers: int | None = None  # loader rows: the DataLoader workers that fed it
    note: str = ""


def parse_rows(text: str) -> list[Row]:
    rows = []
    for name in (t.strip() for t in text.split(",") if t.strip()):
        m = ROW.match(name)
        if not m:
            raise ValueError(
                f"--rows: unknown row {name!r}; rows look like model-bf16, pipeline-bf16-moco, "
                "loader, loader-dino, extract-bf16-compile, stage3-fp32, whole-fp32"
            )
        kind, precision, channels_last, compiled, method = m.groups()
        method = method or ""
        if kind == "loader":
            if precision or channels_last or compiled:
                raise ValueError(f"--rows: {name!r}: the loader reads only: loader, loader-dino")
            rows.append(Row(name, kind, method=method))
            continue
        if precision is None:
            raise ValueError(f"--rows: {name!r}: name a precision, e.g. {kind}-bf16")
        if kind in ("stage3", "whole") and (precision != "fp32" or channels_last or compiled):
            raise ValueError(f"--rows: {name!r}: {kind} runs as the recipe does: {kind}-fp32")
        if method and kind not in ("model", "pipeline"):
            raise ValueError(
                f"--rows: {name!r}: -{method} is for training rows (every method embeds with "
                "the same encoder)"
            )
        rows.append(Row(name, kind, precision, bool(compiled), bool(channels_last), method))
    return rows


# -- timing -----------------------------------------------------------------------------------


def synchronize(device: torch.device | str) -> None:
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ssps_queue(args: argparse.Namespace, device: str, cfg: Config) -> int:
    if args.ssps_queue:
        return args.ssps_queue
    return cfg.method.ssps.queue_size if device == "cuda" else CPU_SSPS_QUEUE


def make_config(
    args: argparse.Namespace, row: Row, aug_dir: Path, steps: int, device: str
) -> Config:
    path = args.config if row.method == "" else METHOD_CONFIGS[row.method]
    overrides = [
        f"train.batch_size={args.batch_size}",
        # DINO rows keep their config's crops (4 s global, 2 s local).
        *([] if row.method == "dino" else ["train.crop_seconds=2.0"]),
        f"train.precision={row.precision}",
        f"train.compile={str(row.compile).lower()}",
        f"train.channels_last={str(row.channels_last).lower()}",
        f"train.num_workers={args.num_workers}",
        "train.deterministic=false",
        # Enough epochs that the timed epoch is not the last (schedules keep to 0-1).
        f"train.epochs={max(2, steps)}",
        'train.validation.data_dir=""',  # the classifier's recipe validates on VoxCeleb1
        f"augment.enabled={str(row.kind == 'pipeline').lower()}",
        f"augment.rir_dir={json.dumps(str(aug_dir / 'rirs'))}",
        # The recipe's categories minus music, for which no set is generated here.
        "augment.noise=" + json.dumps({
            "noise": {"data_dir": str(aug_dir / "noise"), "snr_db": [0, 15]},
            "speech": {"data_dir": str(aug_dir / "speech"), "snr_db": [13, 20],
                       "num_sources": [3, 7]},
        }),
    ]  # fmt: skip
    if row.method == "ssps":
        recipe = load_config(path, [])
        queue = ssps_queue(args, device, recipe)
        # Sampling from the first step, so the timed steps sample; one k-means iteration
        # (in the warm-up) is enough: the timed steps cost the same whatever the centroids.
        # Fewer memory slots keep the recipe's utterances per cluster.
        clusters = max(
            1, round(recipe.method.ssps.clusters * queue / recipe.method.ssps.queue_size)
        )
        overrides += [
            "method.ssps.start=0",
            "method.ssps.kmeans_iters=1",
            f"method.ssps.queue_size={queue}",
            f"method.ssps.clusters={clusters}",
        ]
    return load_config(path, overrides)


def fill_ssps_memory(trainer: Trainer) -> str:
    """A full SSPS memory (random embeddings of the training set's utterances), as after the
    first epoch of a real run: sampling then scans a memory of the recipe's size and draws
    from clusters of the recipe's size. Filled through ``enqueue``, the method's own way in,
    so its bookkeeping stays right. Returns a note for the table."""
    ssps = getattr(trainer.method, "ssps", None)
    if ssps is None:
        return ""
    size, dev = ssps.index.shape[0], ssps.index.device
    g = torch.Generator(device=dev).manual_seed(0)
    chunk = 65536  # bounds the temporaries (the recipe's memory is 1.1 M slots)
    with torch.no_grad():
        for begin in range(0, size, chunk):
            n = min(chunk, size - begin)
            indices = torch.arange(begin, begin + n, device=dev) % len(trainer.dataset)
            ref = torch.randn(n, ssps.ref.shape[1], device=dev, generator=g)
            pos = F.normalize(torch.randn(n, ssps.pos.shape[1], device=dev, generator=g), dim=1)
            ssps.enqueue(indices, ref, pos)
    return f"memory {size:,}, {ssps.cfg.clusters:,} clusters"


def logged_step(trainer: Trainer, window: LossWindow, step: int, crops, labels, indices) -> None:
    """One step as ``Trainer.fit`` makes it: the loss and metrics stay on the device, read
    by the training loop's own reader every ``train.log_every`` steps in one transfer."""
    loss, metrics = trainer.train_step(crops, TIMED_EPOCH, step, labels, indices)
    window.append(step, loss, metrics)
    if window.due:
        window.read()


def time_loader(trainer: Trainer, row: Row, device: str, batches, steps: int, warmup: int):
    """The DataLoader alone (reading, cropping, batching, pinning, copy to the device and
    conversion there): the rate the training data path can feed, whatever the model."""
    for _ in range(warmup):
        next(batches)
    trainer.sampler.set_position(1, 0)
    batches = iter(trainer.loader)  # a fresh epoch: empty prefetch queue, as pipeline rows
    synchronize(trainer.device)
    start = time.perf_counter()
    on_gpu = trainer.device.type == "cuda"
    for _ in range(steps):
        for crops in next(batches)[0]:
            if on_gpu:  # as train_step: int16 up, float32 there (on the CPU: the step's work)
                crops_to_device(crops, trainer.device)
    synchronize(trainer.device)
    items = steps * trainer.cfg.train.batch_size
    seconds = time.perf_counter() - start
    return Result(row, device, steps, seconds, items, workers=trainer.cfg.train.num_workers)


def run_training_row(
    args: argparse.Namespace, row: Row, device: str, data_dir: Path, aug_dir: Path, exp: Path
) -> Result:
    steps, warmup = args.steps_for[device], args.warmup_for[device]
    if row.method == "ssps":
        warmup = max(1, warmup)  # the first step runs k-means: keep it out of the timing
    cfg = make_config(args, row, aug_dir, steps, device)
    trainer = Trainer(cfg, data_dir, exp, device)
    dev, batch = trainer.device, args.batch_size
    note = fill_ssps_memory(trainer)
    num_classes = len(trainer.dataset.classes)
    try:
        if row.kind == "model":
            g = torch.Generator(device=dev).manual_seed(0)
            waves = [
                0.1 * torch.randn(batch, count, samples, device=dev, generator=g)
                for count, samples in trainer.crops
            ]
            labels = None
            if num_classes:
                labels = torch.randint(num_classes, (batch,), device=dev, generator=g)
            start, window = 0.0, LossWindow(trainer.cfg.train.log_every)
            for step in range(warmup + steps):
                if step == warmup:
                    window.read()
                    synchronize(dev)
                    start = time.perf_counter()
                # Distinct utterances per step, as an epoch has (SSPS keeps them in memory).
                indices = torch.arange(step * batch, (step + 1) * batch, device=dev)
                indices %= len(trainer.dataset)
                logged_step(trainer, window, step, waves, labels, indices)
            window.read()
            synchronize(dev)
            seconds = time.perf_counter() - start
            return Result(row, device, steps, seconds, steps * batch, note=note)

        if trainer.steps_per_epoch < max(steps, warmup):
            raise ValueError("data dir too small for the steps asked for")  # sized by main()
        trainer.method.train()
        trainer.sampler.set_position(0, 0)
        batches = iter(trainer.loader)  # starts the persistent workers
        if row.kind == "loader":
            return time_loader(trainer, row, device, batches, steps, warmup)
        window = LossWindow(trainer.cfg.train.log_every)
        for step in range(warmup):
            logged_step(trainer, window, step, *next(batches))
        window.read()
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
            logged_step(trainer, window, step, crops, labels, indices)
        window.read()
        synchronize(dev)
        elapsed = time.perf_counter() - start
        del batches
        return Result(row, device, steps, elapsed, steps * batch, data_wait=waited, note=note)
    finally:
        if trainer.writer is not None:
            trainer.writer.close()
        del trainer
        gc.collect()


def embedding_model(args: argparse.Namespace, row: Row, device: str) -> EmbeddingModel:
    model = EmbeddingModel(load_config(args.config, [])).to(device).eval()
    if row.channels_last:
        model.to(memory_format=torch.channels_last)
    if row.compile:
        model.encoder.compile()
    return model


@torch.inference_mode()
def run_extract_row(args: argparse.Namespace, row: Row, device: str) -> Result:
    steps, warmup = args.steps_for[device], args.warmup_for[device]
    model = embedding_model(args, row, device)
    dev = next(model.parameters()).device
    g = torch.Generator(device=dev).manual_seed(0)
    length = round(EXTRACT_SECONDS * model.fbank.cfg.sample_rate)
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


def _embed_passes(
    model: EmbeddingModel, data_dir: Path, device: str, options: ExtractConfig, sizes: dict
) -> tuple[float, int, list[str]]:
    """``embed_data_dir`` over the first ``sizes[phase]`` utterances, a warm-up pass then a
    timed one (DataLoader start-up included, as in stage 3); returns the timed pass's
    seconds, embeddings and utterances."""
    wavs = list(read_wav_scp(data_dir / "wav.scp").items())
    seconds, count, utts = 0.0, 0, []
    for phase, size in sizes.items():
        subset = data_dir.parent / f"{data_dir.name}-{phase}"
        chosen = dict(wavs[:size])
        write_table(subset / "wav.scp", chosen)
        written: list[np.ndarray] = []  # stage 3 writes each embedding to an ark
        synchronize(device)
        start = time.perf_counter()
        count = embed_data_dir(
            model, subset, False, device, lambda u, e, out=written: out.append(e), options
        )
        synchronize(device)
        seconds, utts = time.perf_counter() - start, list(chosen)
    return seconds, count, utts


@torch.inference_mode()
def run_stage3_row(args: argparse.Namespace, row: Row, device: str, data_dir: Path) -> Result:
    """Stage 3's loop from the WAV files: a warm-up pass over a few batches (autotuning),
    then a timed pass over ``steps`` batches of one 4 s crop per utterance."""
    steps, warmup = args.steps_for[device], args.warmup_for[device]
    model = embedding_model(args, row, device)
    options = ExtractConfig(
        crop_seconds=EXTRACT_SECONDS,
        num_crops=1,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
    )
    sizes = {"warmup": max(1, warmup) * args.batch_size, "timed": steps * args.batch_size}
    seconds, count, _ = _embed_passes(model, data_dir, device, options, sizes)
    return Result(row, device, steps, seconds, count)


@torch.inference_mode()
def run_whole_row(args: argparse.Namespace, row: Row, device: str, whole_dir: Path) -> Result:
    """Whole utterances (``extract.crop_seconds: 0``, as the recipe embeds VoxCeleb1): one
    utterance of 4-20 s per forward pass, ``WHOLE_UTTS_PER_STEP`` per step."""
    steps, warmup = args.steps_for[device], args.warmup_for[device]
    model = embedding_model(args, row, device)
    options = ExtractConfig(crop_seconds=0.0, batch_size=1, num_workers=args.num_workers)
    sizes = {"warmup": max(1, warmup), "timed": steps * WHOLE_UTTS_PER_STEP}
    seconds, count, utts = _embed_passes(model, whole_dir, device, options, sizes)
    durations = dict(line.split() for line in (whole_dir / "utt2dur").read_text().splitlines())
    audio = sum(float(durations[u]) for u in utts)
    return Result(row, device, count, seconds, count, audio_seconds=audio)


def run_row(
    args: argparse.Namespace, row: Row, device: str, data: dict[str, Path], work: Path
) -> Result:
    """One row; ``data``: the ``train``, ``whole`` and ``aug`` dirs it may read."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        # Autotuned kernels pay for fixed shapes (the trainer and stage 3 turn them on); whole
        # utterances would retune at every new length (sslsv.bin.extract leaves them off).
        torch.backends.cudnn.benchmark = row.kind != "whole"
    if row.kind == "extract":
        result = run_extract_row(args, row, device)
    elif row.kind == "stage3":
        result = run_stage3_row(args, row, device, data["train"])
    elif row.kind == "whole":
        result = run_whole_row(args, row, device, data["whole"])
    else:
        exp = work / "exp" / f"{row.name}-{device}"
        result = run_training_row(args, row, device, data["train"], data["aug"], exp)
    if device == "cuda":
        result.peak_gib = torch.cuda.max_memory_allocated() / 2**30
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


# -- model work -------------------------------------------------------------------------------


def train_gflop(config: Path) -> float:
    """Model GFLOP per training utterance of a method, as torch.utils.flop_counter counts
    matrix products and convolutions: log-mels of its crops, the method's forward and
    backward (MoCo's key encoder, DINO's teacher and heads included). SSPS is counted
    without its sampling (a lookup, next to no matrix work)."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = load_config(config, [])
    if hasattr(cfg.method, "ssps"):  # the methods that can sample positives
        cfg.method.ssps.enabled = False
    batch = 2  # batch norm in the heads needs more than one row
    model = EmbeddingModel(cfg)
    method = build_method(cfg, model, batch)
    rate = cfg.features.sample_rate
    labels = torch.arange(batch) if method_class(cfg).needs_labels else None
    with FlopCounterMode(display=False) as counter:
        feats = [
            model.fbank(torch.randn(batch * n, round(s * rate))).unflatten(0, (batch, n))
            for n, s in method_class(cfg).crop_plan(cfg)
        ]
        inputs = feats[0] if len(feats) == 1 else feats
        loss, _ = method(inputs, labels, StepInfo(progress=0.5, epoch=TIMED_EPOCH))
        loss.backward()
    return counter.get_total_flops() / batch / 1e9


def extract_gflop(config: Path, seconds: float = EXTRACT_SECONDS) -> float:
    """Model GFLOP of one forward pass over a crop of ``seconds``."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = load_config(config, [])
    model = EmbeddingModel(cfg).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(2, round(seconds * cfg.features.sample_rate)))
    return counter.get_total_flops() / 2 / 1e9


def gflop_per_item(args: argparse.Namespace, result: Result, cache: dict) -> float | None:
    """GFLOP per counted item of a row (utterance or crop; None for the loader), computed
    once per method on the CPU, outside the timing."""
    row = result.row
    if row.kind == "loader":
        return None
    if row.kind in ("model", "pipeline"):
        key = row.method
        if key not in cache:
            cache[key] = train_gflop(args.config if key == "" else METHOD_CONFIGS[key])
        return cache[key]
    if "extract" not in cache:
        cache["extract"] = extract_gflop(args.config)
    per_crop = cache["extract"]
    if row.kind == "whole":  # convolutions: linear in the length
        return per_crop * (result.audio_seconds or 0.0) / EXTRACT_SECONDS / max(1, result.items)
    return per_crop
