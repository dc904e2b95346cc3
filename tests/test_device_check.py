"""bench/device_check.sh, the one command run on a lent GPU machine, and the table of
bench/train_throughput.py: the parts' time limits fit one device command (600 s, of which
540 s for the script), every row it asks for exists, targets are judged as documented, and
rows written as they end survive a run killed later. The whole script's CPU rehearsal
(``bench/device_check.sh --dry-run``, minutes) is run by hand, not here."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "device_check.sh"
sys.path.insert(0, str(REPO / "bench"))

import throughput_report  # noqa: E402
import train_throughput  # noqa: E402
from throughput_rows import Result, Row, parse_rows  # noqa: E402

#: What the script may take: one device command runs at most 600 s, and the start of the
#: machine's Python and the transfers need the rest.
SCRIPT_BUDGET_S = 540


def script_text() -> str:
    return SCRIPT.read_text(encoding="utf-8")


def assignments(prefix: str) -> dict[str, str]:
    return dict(re.findall(rf"^({prefix}\w*)=(\S+)", script_text(), flags=re.M))


def test_script_parses():
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_part_time_limits_fit_one_device_command():
    limits = {name: int(value) for name, value in assignments("T_").items()}
    kill_after = int(assignments("KILL_AFTER")["KILL_AFTER"])
    assert len(limits) >= 6
    total = sum(limits.values()) + kill_after * len(limits)
    assert total <= SCRIPT_BUDGET_S, f"{limits} + {kill_after} s each = {total} s"
    text = script_text()
    # Every limit is used by exactly one part, and nothing runs under a timeout of its own
    # outside part(): the sum above is then the script's worst case.
    for name in limits:
        assert len(re.findall(rf'^\s*part \S+ "\${name}"', text, flags=re.M)) == 1, name
    assert len(re.findall(r"^\s*part \S+ ", text, flags=re.M)) == len(limits)
    assert len(re.findall(r"\btimeout\b", text)) == 1  # the one inside part()


def test_rows_of_the_script_exist_and_cover_every_method():
    rows = {name: parse_rows(value) for name, value in assignments("ROWS_").items()}
    names = {row.name for part in rows.values() for row in part}
    for method in ("", "-moco", "-ssps", "-dino", "-cls"):
        assert {f"model-bf16{method}", f"pipeline-bf16{method}"} <= names, method
    assert {"loader", "loader-dino", "extract-bf16", "stage3-fp32", "whole-fp32"} <= names
    assert all(row.compile for row in rows["ROWS_COMPILE"])
    # The CUDA tests it names exist.
    assert "tests/test_cuda*.py" in script_text()
    assert (REPO / "tests" / "test_cuda.py").exists()
    assert "def test_cuda_matches_cpu(" in (REPO / "tests" / "test_augment.py").read_text()


@pytest.mark.parametrize(
    "bad", ["whole-bf16", "extract-bf16-moco", "loader-bf16", "model-cl", "pipeline-bf16-simclr"]
)
def test_rows_that_do_not_exist_are_refused(bad):
    with pytest.raises(ValueError, match="--rows"):
        parse_rows(bad)


def test_the_command_line_plans_the_rows_asked_for():
    args = train_throughput.parse_args(["--device", "cpu", "--rows", "model-bf16,loader"])
    assert [row.name for row in args.row_list] == ["model-bf16", "loader"]
    assert args.devices == ["cpu"] and args.steps_for["cpu"] == 2


def rec(name: str, rate: float, device: str = "cuda", batch: int = 256) -> dict:
    row = parse_rows(name)[0]
    result = Result(row, device, 10, 1.0, round(rate), data_wait=0.1)
    args = type("Args", (), {"batch_size": batch, "num_workers": 8})()
    return throughput_report.record(result, args, None)


def test_targets_are_judged_against_the_h100_numbers():
    model = rec("model-bf16", 7000)
    models = throughput_report.model_rates([model])
    assert throughput_report.judge(model, models)[1] == "pass"
    assert throughput_report.judge(rec("model-bf16", 6800), models)[1] == "FAIL"
    # Pipeline: 4,600 utt/s and within 20% of its model row; both must hold.
    assert throughput_report.judge(rec("pipeline-bf16", 5700), models)[1] == "pass"
    assert throughput_report.judge(rec("pipeline-bf16", 5500), models)[1] == "FAIL"  # 79% of 7,000
    assert throughput_report.judge(rec("pipeline-bf16", 5700), {})[1].startswith("?")
    assert throughput_report.judge(rec("stage3-fp32", 34000), {})[1] == "pass"
    assert throughput_report.judge(rec("extract-bf16", 30000), {})[1] == "FAIL"
    # Targets are for one H100 at batch 256, and for SimCLR only.
    assert throughput_report.judge(rec("model-bf16", 7000, device="cpu"), {})[1] == "n/a (CPU)"
    assert throughput_report.judge(rec("model-bf16", 7000, batch=8), {})[1] == "n/a (batch 8)"
    assert throughput_report.judge(rec("model-bf16-dino", 7000), {}) == ("-", "-")


def test_loader_rows_give_the_rate_per_core_and_the_cores_needed():
    args = type("Args", (), {"batch_size": 256, "num_workers": 2})()
    result = Result(Row("loader", "loader"), "cpu", 10, 2.0, 2560, workers=2)
    loader = throughput_report.record(result, args, None)
    assert loader["per_core"] == pytest.approx(640)
    assert loader["cores_for_pipeline_target"] == math.ceil(4600 / 640) == 8


def test_rows_written_as_they_end_survive_a_later_kill(tmp_path):
    md, jsonl = tmp_path / "rows.md", tmp_path / "rows.jsonl"
    args = type("Args", (), {"batch_size": 256, "num_workers": 8})()
    live = throughput_report.LiveRows(md, jsonl)
    live.begin(args, ["a note"], ["- CPU: test"])
    live.add(rec("model-bf16", 7000))
    # A second part of the same check appends to the same table, without a second head.
    live = throughput_report.LiveRows(md, jsonl)
    live.begin(args, [], ["- CPU: test"])
    live.add(rec("pipeline-bf16", 5000))
    live.add({"name": "model-bf16-dino", "kind": "model", "method": "dino", "device": "cuda",
              "error": "OutOfMemoryError: CUDA out of memory"})  # fmt: skip
    with open(jsonl, "a") as f:
        f.write('{"name": "extract-bf16", "ra')  # a line cut short by the kill
    lines = md.read_text().splitlines()
    assert sum(line.startswith("| row |") for line in lines) == 1
    assert [line.split(" | ")[0] for line in lines if line.startswith("| ")][1:] == [
        "| model-bf16", "| pipeline-bf16", "| model-bf16-dino",
    ]  # fmt: skip
    records, notes, machine = throughput_report.read_records(jsonl)
    assert [r["name"] for r in records] == ["model-bf16", "pipeline-bf16", "model-bf16-dino"]
    assert notes == ["a note"] and machine == ["- CPU: test"]
    report = throughput_report.format_report(records, notes, machine)
    assert "| pipeline-bf16 | SimCLR | cuda |" in report and "71%" in report  # of 7,000
    assert "error: OutOfMemoryError" in report and "Note: a note" in report
    json.loads(jsonl.read_text().splitlines()[1])  # the rows themselves are whole lines
