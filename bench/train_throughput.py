"""Training and extraction throughput of the VoxCeleb recipe's models: SimCLR NT-Xent-AM,
Fast ResNet-34, two 2 s crops, and rows for the other methods (``-moco``, ``-ssps``,
``-dino``, ``-cls``: MoCo, SimCLR with SSPS, DINO's 2 x 4 s + 4 x 2 s multi-crop, the second
stage's classifier), each with its recipe configuration. Row names and runners:
``bench/throughput_rows.py``.

Rows, each run on every device asked for (``--rows``, comma-separated):

  model-<fp32|bf16>[-cl][-compile][-METHOD]
                                  training steps on random waveforms already on the device:
                                  log-mel front end, encoder, loss, backward, Adam step
  pipeline-<fp32|bf16>[-cl][-compile][-METHOD]
                                  the same steps fed by the real DataLoader from WAV files on
                                  disk, with augmentation (reverberation, noise, babble)
  loader[-METHOD]                 that DataLoader alone (reading, cropping, batching, copy
                                  to the device): how fast ``--num-workers`` can feed, per
                                  worker (core), and the cores one GPU needs at 4,600 utt/s
  extract-<fp32|bf16>[-cl][-compile]
                                  embeddings of random 4 s waveforms, forward only
  stage3-fp32                     stage 3's own loop (sslsv.extraction.embed_data_dir) over
                                  the WAV files: one 4 s crop per utterance, batches of
                                  ``--batch-size`` crops, DataLoader readers
  whole-fp32                      the same loop over whole utterances of 4-20 s, one per
                                  forward pass (``extract.crop_seconds: 0``, as the recipe
                                  embeds VoxCeleb1), 8 utterances per step

Training rows drive the recipe's own ``Trainer.train_step``, reading the losses every
``train.log_every`` steps as ``Trainer.fit`` does. Pipeline rows time a whole fresh epoch of
``--steps`` steps, from the start of its iterator (workers already running), so the prefetch
queue starts empty. SSPS rows sample from the first step on, from a full memory of random
embeddings (k-means runs in the first warm-up step); on CPU the memory is 8,192 utterances
(``--ssps-queue``). The test audio (speech-like noise), simulated RIRs, noise and babble sets
are written to ``--workdir`` (default: a temporary dir), and reused there by a later run with
the same sizes.

Rows on CUDA are marked against the targets for one H100 (batch 256): model step (bf16
SimCLR) >= 6,900 utt/s, pipeline >= 4,600 utt/s and within 20% of its model row, extraction
(extract, stage3) >= 33,650 crops/s. ``--rows-md``/``--rows-jsonl`` append each row as it
ends (a killed run keeps the rows it finished); ``--report FILE.jsonl`` makes the whole
table of such lines.

  python bench/train_throughput.py                      # every row, CPU and CUDA
  python bench/train_throughput.py --device cuda --output docs/throughput_h100.md
  python bench/train_throughput.py --batch-size 16 --steps 3 --device cpu   # a quick check
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "bench"):  # run as a script, or imported by the tests
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from throughput_rows import (  # noqa: E402
    EXTRACT_SECONDS,
    METHOD_CONFIGS,
    METHOD_NAMES,
    WHOLE_UTTS_PER_STEP,
    Result,
    gflop_per_item,
    parse_rows,
    run_row,
    write_corpus,
    write_whole_corpus,
)

from sslsv.fileio import atomic_write  # noqa: E402
from sslsv.simulation.aug_sets import build_aug_sets  # noqa: E402

DEFAULT_CONFIG = METHOD_CONFIGS[""]
DEFAULT_ROWS = (
    "model-fp32,model-bf16,model-bf16-cl,model-bf16-compile,model-bf16-cl-compile,loader,"
    "loader-dino,pipeline-fp32,pipeline-bf16,pipeline-bf16-cl-compile,extract-fp32,"
    "extract-bf16,extract-fp32-cl,stage3-fp32,whole-fp32,model-bf16-moco,pipeline-bf16-moco,"
    "model-bf16-ssps,pipeline-bf16-ssps,model-bf16-dino,pipeline-bf16-dino,model-bf16-cls,"
    "pipeline-bf16-cls"
)
#: The targets for one H100 at batch 256 (utt/s for training, 4 s crops/s for extraction).
MODEL_TARGET = 6900
PIPELINE_TARGET = 4600
PIPELINE_RATIO = 0.8  # a pipeline row within 20% of its model row
EXTRACT_TARGET = 33650
TARGET_BATCH = 256
COLUMNS = (
    "| row | method | device | steps | ms/step | utt/s | TFLOP/s | pipeline/model | data wait "
    "| peak GPU mem | target | result | note |"
)
ALIGN = "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|"

log = logging.getLogger("train_throughput")


# -- records and targets ----------------------------------------------------------------------


def record(result: Result, args: argparse.Namespace, gflop: float | None) -> dict:
    """A row's result as one JSON-able line: what the table and the report are made of."""
    row = result.row
    rate = result.items / result.seconds
    rec = {
        "name": row.name,
        "kind": row.kind,
        "method": row.method,
        "precision": row.precision,
        "compile": row.compile,
        "channels_last": row.channels_last,
        "device": result.device,
        "steps": result.steps,
        "seconds": result.seconds,
        "items": result.items,
        "rate": rate,
        "data_wait": result.data_wait,
        "peak_gib": result.peak_gib,
        "gflop_per_item": gflop,
        "batch_size": args.batch_size,
        "num_workers": args.num_workers,
        "note": result.note,
    }
    if result.audio_seconds is not None:
        rec["audio_seconds"] = result.audio_seconds
        rec["note"] = (
            f"mean {result.audio_seconds / max(1, result.items):.1f} s, "
            f"{result.audio_seconds / result.seconds:,.0f}x real time"
        )
    if result.workers is not None:
        # Each worker is a process on a core of its own: the rate per core. Without workers
        # the main process reads (one core).
        per_core = rate / max(1, result.workers)
        rec.update(workers=result.workers, per_core=per_core)
        rec["cores_for_pipeline_target"] = math.ceil(PIPELINE_TARGET / per_core)
        rec["note"] = (
            f"{per_core:,.0f} utt/s per worker ({result.workers}): 4,600 utt/s needs "
            f"{rec['cores_for_pipeline_target']} cores"
        )
    return rec


def _model_key(rec: dict) -> tuple:
    return (rec["device"], rec["precision"], rec["channels_last"], rec["compile"], rec["method"])


def model_rates(records: list[dict]) -> dict[tuple, float]:
    return {_model_key(r): r["rate"] for r in records if r.get("kind") == "model" and "rate" in r}


def judge(rec: dict, models: dict[tuple, float]) -> tuple[str, str]:
    """(the row's target in words, its result: pass, FAIL, or n/a and why); ("-", "-") for
    rows without a target. Targets are for one H100 at batch 256."""
    kind, rate = rec["kind"], rec["rate"]
    simclr_bf16 = rec["method"] == "" and rec["precision"] == "bf16"
    ok: bool | None
    if kind == "model" and simclr_bf16:
        text, ok = f">= {MODEL_TARGET:,}", rate >= MODEL_TARGET
    elif kind == "pipeline" and simclr_bf16:
        text = f">= {PIPELINE_TARGET:,}, >= {PIPELINE_RATIO:.0%} of model"
        base = models.get(_model_key(rec))
        ok = None if base is None else rate >= PIPELINE_TARGET and rate >= PIPELINE_RATIO * base
    elif kind in ("extract", "stage3"):
        text, ok = f">= {EXTRACT_TARGET:,} crops/s", rate >= EXTRACT_TARGET
    else:
        return "-", "-"
    if rec["device"] != "cuda":
        return text, "n/a (CPU)"
    if rec["batch_size"] != TARGET_BATCH:
        return text, f"n/a (batch {rec['batch_size']})"
    if ok is None:
        return text, "? (no model row)"
    return text, "pass" if ok else "FAIL"


def table_line(rec: dict, models: dict[tuple, float]) -> str:
    method = "-"  # embedding rows: the same encoder whatever the method
    if rec.get("kind") in ("model", "pipeline", "loader"):
        method = METHOD_NAMES.get(rec.get("method", ""), rec.get("method", ""))
    if "error" in rec:
        cells = [rec["name"], method, rec["device"], *["-"] * 9, f"error: {rec['error']}"]
        return "| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in cells) + " |"
    rate = rec["rate"]
    ratio = wait = "-"
    if rec["kind"] == "pipeline":
        wait = f"{100 * (rec['data_wait'] or 0) / rec['seconds']:.0f}%"
        base = models.get(_model_key(rec))
        ratio = f"{100 * rate / base:.0f}%" if base else "-"
    gflop = rec.get("gflop_per_item")
    tflops = f"{rate * gflop / 1000:.2f}" if gflop else "-"
    mem = f"{rec['peak_gib']:.1f} GiB" if rec.get("peak_gib") is not None else "-"
    shown = f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}"
    target, verdict = judge(rec, models)
    cells = [
        rec["name"], method, rec["device"], str(rec["steps"]),
        f"{1000 * rec['seconds'] / rec['steps']:.1f}", shown, tflops, ratio, wait, mem, target,
        verdict, rec.get("note") or "-",
    ]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


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


def title(batch_size: int, num_workers: int) -> str:
    return (
        f"Fast ResNet-34, 40 log-mels; training: batch {batch_size} (SimCLR, MoCo, SSPS: two "
        "2 s crops per utterance; DINO: 2 x 4 s + 4 x 2 s; classifier: one 2 s crop); "
        f"extraction: batch {batch_size} x one {EXTRACT_SECONDS:g} s crop; whole: one "
        f"utterance per pass; DataLoader workers: {num_workers}"
    )


def flop_list(records: list[dict]) -> str:
    """The GFLOP per item behind the TFLOP/s column, per method and for extraction."""
    found = {}
    for r in records:
        if r.get("gflop_per_item") and r["kind"] in ("model", "pipeline"):
            found[f"{METHOD_NAMES.get(r['method'], r['method'])} per training utterance"] = r[
                "gflop_per_item"
            ]
        elif r.get("gflop_per_item") and r["kind"] in ("extract", "stage3"):
            found[f"per {EXTRACT_SECONDS:g} s extraction crop"] = r["gflop_per_item"]
    found["whole utterances: the crop's, in proportion to their length"] = None
    return ", ".join(f"{k} {v:.2f}" if v else k for k, v in found.items())


def format_report(records: list[dict], notes: list[str], machine: list[str]) -> str:
    """The whole table (rows in the order run), the loader's rate per core, the units."""
    done = [r for r in records if "error" not in r]
    first = records[0] if records else {}
    models = model_rates(done)
    lines = [
        title(first.get("batch_size", 0), first.get("num_workers", 0)),
        "",
        *machine,
        "",
        COLUMNS,
        ALIGN,
        *(table_line(r, models) for r in records),
    ]
    loaders = [r for r in done if r["kind"] == "loader"]
    if loaders:
        lines += [
            "",
            "| loader | device | workers | utt/s | utt/s per worker | cores for 4,600 utt/s |",
            "|---|---|---:|---:|---:|---:|",
            *(
                f"| {r['name']} | {r['device']} | {r['workers']} | {r['rate']:,.0f} | "
                f"{r['per_core']:,.0f} | {r['cores_for_pipeline_target']} |"
                for r in loaders
            ),
        ]
    lines += [
        "",
        "utt/s counts utterances for training and whole rows (two crops each; six for DINO, "
        "one for the classifier), crops for extract and stage3 rows; whole rows count "
        f"{WHOLE_UTTS_PER_STEP} utterances per step and ms/step is per utterance.",
        "TFLOP/s: the model work per item (log-mels, forward and backward of the method's "
        "networks; forward only for extraction) as torch.utils.flop_counter counts matrix "
        f"products and convolutions, in GFLOP: {flop_list(done)}.",
        f"Targets (one H100, batch {TARGET_BATCH}): model step (bf16 SimCLR) >= "
        f"{MODEL_TARGET:,} utt/s; pipeline >= {PIPELINE_TARGET:,} utt/s and within "
        f"{1 - PIPELINE_RATIO:.0%} of its model row; extraction >= {EXTRACT_TARGET:,} 4 s "
        "crops/s. Loader: utt/s per worker, each worker a process on its own core; the cores "
        "count leaves out the main process (pinning, the GPU steps).",
    ]  # fmt: skip
    lines += [f"Note: {n}" for n in dict.fromkeys(notes)]
    return "\n".join(lines) + "\n"


def read_records(path: Path) -> tuple[list[dict], list[str], list[str]]:
    """(rows, notes, the first machine description) from ``--rows-jsonl`` lines; a line cut
    short by a kill is skipped."""
    records, notes, machine = [], [], []
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    for line in lines:
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "machine" in item:
            machine = machine or item["machine"]
        elif "note" in item and "name" not in item:
            notes.append(item["note"])
        else:
            records.append(item)
    return records, notes, machine


class LiveRows:
    """Appends each row, as it ends, to a Markdown table and a JSON-lines file (each opened,
    written and closed per row: a run killed later keeps the rows it finished)."""

    def __init__(self, md: Path | None, jsonl: Path | None) -> None:
        self.md, self.jsonl = md, jsonl
        self.records: list[dict] = []

    def _append(self, path: Path | None, lines: list[str]) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.writelines(line + "\n" for line in lines)

    def begin(self, args: argparse.Namespace, notes: list[str], machine: list[str]) -> None:
        """The table's head (when the file is new: the parts of one device check share it),
        the machine and the notes so far."""
        if self.md is not None and not (self.md.exists() and self.md.stat().st_size):
            self._append(
                self.md, [title(args.batch_size, args.num_workers), "", *machine, "", COLUMNS,
                          ALIGN]
            )  # fmt: skip
        self._append(self.jsonl, [json.dumps({"machine": machine})])
        self.notes(notes)

    def notes(self, notes: list[str]) -> None:
        self._append(self.jsonl, [json.dumps({"note": n}) for n in notes])

    def add(self, rec: dict) -> None:
        self.records.append(rec)
        self._append(self.jsonl, [json.dumps(rec)])
        self._append(self.md, [table_line(rec, model_rates(self.records))])


# -- main -------------------------------------------------------------------------------------


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
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="SimCLR rows' YAML")
    p.add_argument("--num-files", type=int, default=512, help="distinct test WAV files")
    p.add_argument("--num-rirs", type=int, default=20, help="simulated RIRs")
    p.add_argument(
        "--ssps-queue", type=int, help="SSPS memory size (default: the recipe's on CUDA, 8192 CPU)"
    )
    p.add_argument("--workdir", type=Path, help="for the test audio (default: a temporary dir)")
    p.add_argument("--output", type=Path, help="also write the table (Markdown) here")
    p.add_argument("--rows-md", type=Path, help="append each row's table line here as it ends")
    p.add_argument("--rows-jsonl", type=Path, help="append each row as a JSON line here")
    p.add_argument("--report", type=Path, help="only make the table of these --rows-jsonl lines")
    p.add_argument(
        "--keep-going", action="store_true", help="a row that fails is reported; the next runs"
    )
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.batch_size < 2:
        p.error("--batch-size must be at least 2")
    for name in ("steps", "warmup", "ssps_queue"):
        value = getattr(args, name)
        if value is not None and value < {"steps": 1, "warmup": 0, "ssps_queue": 2}[name]:
            p.error(f"--{name.replace('_', '-')} {value}: too small")
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


def prepare_data(args: argparse.Namespace, plan: list, work: Path) -> dict[str, Path]:
    """Only the test data that the planned rows read."""
    kinds = {row.kind for row, _ in plan}
    devices = {device for _, device in plan}
    data = {"aug": work / "aug"}
    started = time.time()
    if kinds & {"model", "pipeline", "loader", "stage3"}:
        # Enough utterances for the longest row: every step a new batch (SSPS warms up 1).
        steps = max([args.steps_for[d] for d in devices] + [args.warmup_for[d] for d in devices])
        data["train"] = write_corpus(work, args.num_files, args.batch_size * max(1, steps), 0)
    if "pipeline" in kinds:
        build_aug_sets(
            data["aug"],
            seed=0,
            num_rirs=args.num_rirs,
            num_colored=12,
            babble_from=data["train"],
            num_babble=100,
            jobs=min(4, os.cpu_count() or 1),
        )
    if "whole" in kinds:
        utts = max(
            max(1, args.warmup_for[d]) + WHOLE_UTTS_PER_STEP * args.steps_for[d] for d in devices
        )
        data["whole"] = write_whole_corpus(work, utts, 0)
    print(f"test data ready in {time.time() - started:.1f} s in {work}", file=sys.stderr)
    return data


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.report:
        records, notes, machine = read_records(args.report)
        table = format_report(records, notes, machine or machine_lines())
        print(table)
        if args.output:
            with atomic_write(args.output) as f:
                f.write(table)
        return 0 if records and not any("error" in r for r in records) else 1

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
    live = LiveRows(args.rows_md, args.rows_jsonl)
    live.begin(args, notes, machine_lines())
    if not plan:  # every row asked for was skipped on these devices: said in the notes
        print("nothing to measure: " + " ".join(notes), file=sys.stderr)
        return 0

    failed = 0
    flops: dict = {}
    with contextlib.ExitStack() as stack:
        if args.workdir:
            work = args.workdir
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sslsv-bench-")))
        data = prepare_data(args, plan, work)
        for row, device in plan:
            began = time.time()
            try:
                result = run_row(args, row, device, data, work)
            except Exception as e:
                if not args.keep_going:
                    raise
                traceback.print_exc()
                failed += 1
                error = f"{type(e).__name__}: {e}".splitlines()[0][:300]
                live.add({"name": row.name, "kind": row.kind, "method": row.method,
                          "device": device, "error": error})  # fmt: skip
                print(f"{row.name} on {device}: FAILED ({error})", file=sys.stderr)
                continue
            try:  # on the CPU, after the timing; the table can do without it
                gflop = gflop_per_item(args, result, flops)
            except Exception as e:
                gflop = None
                log.warning("%s: no GFLOP count: %s", row.name, e)
            live.add(record(result, args, gflop))
            print(
                f"{row.name} on {device}: {result.items / result.seconds:,.1f} utt/s "
                f"({time.time() - began:.0f} s)",
                file=sys.stderr,
            )
    table = format_report(live.records, notes, machine_lines())
    print(table)
    if args.output:
        with atomic_write(args.output) as f:
            f.write(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
