"""The table of bench/second_stage_grid.sh's runs: per variant, the mean and standard
deviation over seeds of each RESULTS row's EER (every trial list), the clustering's NMI and
purity per round, the kept share (the gated epochs' mean) and the corrected labels per round,
and the label-free choice against the best row.

  python bench/second_stage_table.py exp/grid/<variant>_seed<N> ...   (in the recipe dir)
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROW = re.compile(r"^(\S+) (\S+) EER: ([0-9.]+)%")
CLUSTERING = re.compile(r"^# clustering (\S+): .*kept (\d+), .*nmi ([0-9.]+), .*purity ([0-9.]+),")
ROUND = re.compile(r"stage 6: second stage, round (\d+) of \d+: seed \S+ -> (\S+)")
CHOICE = re.compile(r"label-free choice \(.*\): (\S+)")


def kept_share(train_log: Path) -> float | None:
    """The mean kept share of a round's epochs after the first (the first trains on every
    utterance: its losses set the first gate); 1 where the gate stayed open."""
    if not train_log.is_file():
        return None
    shares = []
    for line in train_log.read_text().splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[:2] == ["method", "epoch"] and fields[2] != "1":
            values = dict(zip(fields[3::2], fields[4::2]))
            if "kept" in values:
                shares.append(float(values["kept"]))
    return statistics.mean(shares) if shares else None


def read_run(out: Path) -> dict:
    results = (out / "RESULTS").read_text().splitlines()
    run: dict = {"eer": {}, "round": {}}
    for line in results:
        if m := ROW.match(line):
            run["eer"][(m[1], m[2])] = float(m[3])
        elif m := CLUSTERING.match(line):
            run["round"].setdefault(m[1], {}).update(nmi=float(m[3]), purity=float(m[4]))
        elif m := CHOICE.search(line):
            run["choice"] = m[1]
    log = Path(f"{out}.log").read_text() if Path(f"{out}.log").is_file() else ""
    for number, exp in ROUND.findall(log):
        info = run["round"].setdefault(f"pl{number}", {})
        info["kept"] = kept_share(Path(exp) / "log" / "train.log")
    return run


def corrected(out: Path) -> dict[str, dict]:
    """Per round: relabel.json of its corrected data dir (the run's log names the dirs)."""
    log = Path(f"{out}.log").read_text() if Path(f"{out}.log").is_file() else ""
    found = {}
    for path in re.findall(r"(\S+_pl(\d+)_corrected): \d+ of \d+ utterances changed", log):
        summary = Path(path[0]) / "relabel.json"
        if summary.is_file():
            found[f"pl{path[1]}"] = json.loads(summary.read_text())
    return found


def fmt(values: list[float], digits: int = 2) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main(outs: list[str]) -> None:
    by_variant: dict[str, list[Path]] = defaultdict(list)
    for out in outs:
        by_variant[re.sub(r"_seed\d+$", "", Path(out).name)].append(Path(out))
    for variant, runs in by_variant.items():
        data = [(read_run(r), corrected(r)) for r in runs]
        print(f"\n### {variant} ({len(runs)} seeds: {', '.join(r.name for r in runs)})\n")
        keys = [k for run, _ in data for k in run["eer"]]  # RESULTS order
        lists = list(dict.fromkeys(k[1] for k in keys))
        rows = list(dict.fromkeys(k[0] for k in keys))
        print(
            "| row | "
            + " | ".join(f"EER % {t}" for t in lists)
            + " | NMI | purity | kept | corrected | purity after |"
        )
        print("|---" * (len(lists) + 6) + "|")
        for row in rows:
            eers = [
                fmt([run["eer"][(row, t)] for run, _ in data if (row, t) in run["eer"]])
                for t in lists
            ]
            rnd = [run["round"].get(row, {}) for run, _ in data]
            fix = [c.get(row, {}) for _, c in data]
            cells = [
                fmt([r["nmi"] for r in rnd if "nmi" in r], 4),
                fmt([r["purity"] for r in rnd if "purity" in r], 4),
                fmt([r["kept"] for r in rnd if r.get("kept") is not None], 3),
                fmt([f["changed"] for f in fix if "changed" in f], 1),
                fmt([f["after"]["purity"] for f in fix if "after" in f], 4),
            ]
            print(f"| {row} | " + " | ".join(eers + cells) + " |")
        first = lists[0] if "test_trials" not in lists else "test_trials"
        for run, _ in data:
            if "choice" not in run:
                continue
            candidates = {
                r: e
                for (r, t), e in run["eer"].items()
                if t == first and r not in ("init", "stats", "supervised")
            }
            best = min(candidates, key=candidates.get)
            chosen = run["choice"]
            print(f"- label-free choice {chosen} ({candidates.get(chosen, float('nan')):.2f}%), "
                  f"best {best} ({candidates[best]:.2f}%) on {first}")  # fmt: skip
        seconds = [int((r / "seconds").read_text()) for r in runs if (r / "seconds").is_file()]
        if seconds:
            print(f"- wall time of stages 6-9 per seed: {fmt([float(s) for s in seconds], 0)} s")


if __name__ == "__main__":
    main(sys.argv[1:])
