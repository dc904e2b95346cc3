"""Benchmark ``python -m sslsv.bin.embed``: one call over a list of files against one call per
file (run by hand; prints a Markdown table).

    .venv/bin/python bench/bench_embed.py --checkpoint egs/mini/exp/simclr_ntxent_am_mini/model.pt \
        --data egs/mini/data/test [--files 100] [--single-calls 100]

Takes the first ``--files`` utterances of the data dir's wav.scp, embeds them with one
``--list`` call (timed, wall clock, process start included), then with one process call per
file for the first ``--single-calls`` of them (each timed), and reports the per-file cost of
both and their ratio; fewer single calls than files are extrapolated, and the table says so.
It also checks that the two give the same embeddings. Target (issue 13): the list call at
least 5x faster than one call per file, for 100 files.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import kaldiio
import numpy as np
from machine import describe as describe_machine  # bench/machine.py, beside this script

TARGET_SPEEDUP = 5.0


def embed(args: list[str], out: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "sslsv.bin.embed", *args, "--output", str(out)],
        check=True,
        capture_output=True,
        env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")},
    )
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True, help="a data dir whose wav.scp lists plain files")
    p.add_argument("--files", type=int, default=100)
    p.add_argument("--single-calls", type=int, default=100)
    args = p.parse_args()
    lines = (Path(args.data) / "wav.scp").read_text().splitlines()[: args.files]
    items = [line.split(maxsplit=1) for line in lines]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        listing = tmp / "list"
        listing.write_text("".join(f"{u} {path}\n" for u, path in items))
        list_s = embed(["--checkpoint", args.checkpoint, "--list", str(listing)], tmp / "all")
        together = dict(kaldiio.load_scp(str(tmp / "all" / "embeddings.scp")))
        singles, worst = [], 0.0
        for utt, path in items[: args.single_calls]:
            singles.append(embed(["--checkpoint", args.checkpoint, path], tmp / "one"))
            one = next(iter(kaldiio.load_scp(str(tmp / "one" / "embeddings.scp")).values()))
            worst = max(worst, float(np.abs(one - together[utt]).max()))
    n, k = len(items), len(singles)
    per_single = float(np.mean(singles))
    speedup = per_single * n / list_s
    rows = [
        ("files", f"{n}"),
        ("one --list call (wall, s)", f"{list_s:.1f}"),
        ("per file, --list call (s)", f"{list_s / n:.3f}"),
        (
            f"one call per file: {k} calls, per call (s, median / min / max)",
            f"{np.median(singles):.2f} / {min(singles):.2f} / {max(singles):.2f}",
        ),
        (
            f"one call per file, {n} files (s{', extrapolated' if k < n else ''})",
            f"{per_single * n:.1f}",
        ),
        ("speedup of the --list call", f"{speedup:.1f}x (target >= {TARGET_SPEEDUP:g}x)"),
        ("largest difference between the two embeddings", f"{worst:.1e}"),
    ]
    print(f"# bench_embed, {describe_machine(('numpy',)).line()}, checkpoint {args.checkpoint}")
    print("| | |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
