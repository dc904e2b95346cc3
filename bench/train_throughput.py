"""Training and extraction throughput of the VoxCeleb recipe's models: SimCLR NT-Xent-AM,
Fast ResNet-34, two 2 s crops, and rows for the other methods (``-moco``, ``-ssps``,
``-dino``, ``-cls``: MoCo, SimCLR with SSPS, DINO's 2 x 4 s + 4 x 2 s multi-crop, the second
stage's classifier), each with its recipe configuration. Row names and runners:
``bench/throughput_rows.py``; records, targets and the table: ``bench/throughput_report.py``.

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
import logging
import os
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

from machine import describe as describe_machine  # noqa: E402
from throughput_data import write_corpus, write_whole_corpus  # noqa: E402
from throughput_report import LiveRows, format_report, read_records, record  # noqa: E402
from throughput_rows import (  # noqa: E402
    METHOD_CONFIGS,
    WHOLE_UTTS_PER_STEP,
    gflop_per_item,
    parse_rows,
    run_row,
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
log = logging.getLogger("train_throughput")


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
        table = format_report(records, notes, machine or describe_machine().lines())
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
    live.begin(args, notes, describe_machine().lines())
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
    table = format_report(live.records, notes, describe_machine().lines())
    print(table)
    if args.output:
        with atomic_write(args.output) as f:
            f.write(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
