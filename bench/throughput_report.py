"""The table of ``bench/train_throughput.py``: each row's result as a record (a JSON line),
judged against the targets for one H100, and the Markdown report made of them; rows are
appended as they end (:class:`LiveRows`), so that a run killed later keeps what it
finished."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from throughput_rows import EXTRACT_SECONDS, METHOD_NAMES, WHOLE_UTTS_PER_STEP, Result

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
