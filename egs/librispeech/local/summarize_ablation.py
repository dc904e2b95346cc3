"""Table (mean and spread over seeds) and score-distribution plot of the LibriSpeech ablation.

Reads exp/<row>_seed<N>/scores_final/test_trials.{scores,metrics} written by run.sh (and
test_trials_cross_chapter.metrics, where run.sh made those trials); the untrained row is the
first row's runs' scores_init.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sslsv.datadir.io import read_trials  # noqa: E402
from sslsv.fileio import atomic_write  # noqa: E402

DESCRIPTION = {
    "simclr_ntxent": ("SimCLR", "NT-Xent", "asymmetric"),
    "simclr_ntxent_sym": ("SimCLR", "NT-Xent", "symmetric"),
    "simclr_ntxent_am_asym": ("SimCLR", "NT-Xent-AM (m=0.1)", "asymmetric"),
    "simclr_ntxent_am": ("SimCLR", "NT-Xent-AM (m=0.1)", "symmetric"),
    "moco_ntxent": ("MoCo", "NT-Xent", "symmetric"),
    "moco_ntxent_am": ("MoCo", "NT-Xent-AM (m=0.1)", "symmetric"),
    "simclr_ntxent_am_ssps": ("SimCLR + SSPS", "NT-Xent-AM (m=0.1)", "symmetric"),
    "dino": ("DINO", "cross-entropy to the teacher", "2 + 4 crops"),
    "dino_ssps": ("DINO + SSPS", "cross-entropy to the teacher", "2 + 4 crops"),
}


def read_metrics(path: Path) -> dict[str, float]:
    text = path.read_text()
    return {
        "eer": float(re.search(r"EER: ([0-9.]+)%", text).group(1)),
        "mindcf01": float(re.search(r"minDCF\(p=0.01\): ([0-9.]+)", text).group(1)),
        "mindcf05": float(re.search(r"minDCF\(p=0.05\): ([0-9.]+)", text).group(1)),
    }


def metric_cells(runs: list[Path], model: str, spread: bool = True) -> str:
    """The EER, cross-chapter EER and minDCF cells of runs' scores_<model>: mean ± spread
    over the runs, or (spread false: one run) the value alone; "-" where a run has no
    cross-chapter trials."""

    def cell(values: list[float], digits: int) -> str:
        return mean_sd(values, digits) if spread else f"{values[0]:.{digits}f}"

    metrics = [read_metrics(r / f"scores_{model}" / "test_trials.metrics") for r in runs]
    cross = [r / f"scores_{model}" / "test_trials_cross_chapter.metrics" for r in runs]
    cross_eer = (
        cell([read_metrics(c)["eer"] for c in cross], 2) if all(c.exists() for c in cross) else "-"
    )
    return (
        f"{cell([m['eer'] for m in metrics], 2)} | {cross_eer} | "
        f"{cell([m['mindcf01'] for m in metrics], 3)} | "
        f"{cell([m['mindcf05'] for m in metrics], 3)}"
    )


def scores_by_label(exp: Path, trials: dict) -> tuple[np.ndarray, np.ndarray]:
    target, nontarget = [], []
    for line in (exp / "scores_final" / "test_trials.scores").read_text().splitlines():
        e, t, s = line.split()
        (target if trials[(e, t)] else nontarget).append(float(s))
    return np.array(target), np.array(nontarget)


def mean_sd(values: list[float], digits: int) -> str:
    spread = np.std(values, ddof=1) if len(values) > 1 else 0.0
    return f"{np.mean(values):.{digits}f} ± {spread:.{digits}f}"


def distribution_summary(runs: list[np.ndarray]) -> str:
    """Mean cosine and its standard deviation, each averaged over runs."""
    return f"{np.mean([r.mean() for r in runs]):.3f} ({np.mean([r.std() for r in runs]):.3f})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rows", nargs="+", required=True)
    p.add_argument("--seeds", nargs="+", required=True)
    p.add_argument("--elapsed", type=float, default=0.0, help="wall seconds of the whole run")
    p.add_argument("--epochs", help="the runs' train.epochs override (exp/<row>_epochs<N>_seed<S>)")
    p.add_argument("--table", required=True)
    p.add_argument("--plot", required=True)
    p.add_argument("--note", default="", help="a sentence added to the table's header")
    args = p.parse_args()

    trials = {(e, t): y for e, t, y in read_trials("data/test/trials")}
    n_target = sum(trials.values())
    lines = [
        "| method | loss | form | EER % | EER % cross-chapter | minDCF p=0.01 | minDCF p=0.05 | "
        "mean cos same-spk (sd) | mean cos diff-spk (sd) | train time / run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    budget = f"_epochs{args.epochs}" if args.epochs else ""
    first = [Path(f"exp/{args.rows[0]}{budget}_seed{seed}") for seed in args.seeds]
    lines.append(
        f"| untrained encoder (init.pt of the {args.rows[0]} runs) | | | "
        f"{metric_cells(first, 'init')} | | | |"
    )
    stats = Path("exp/stats")  # no seed: a fitted statistics baseline, the row to beat
    if (stats / "scores_final" / "test_trials.metrics").exists():
        lines.append(
            f"| statistics baseline (exp/stats) | | | "
            f"{metric_cells([stats], 'final', spread=False)} | | | |"
        )
    distributions = {}
    for row in args.rows:
        runs = [Path(f"exp/{row}{budget}_seed{seed}") for seed in args.seeds]
        pairs = [scores_by_label(r, trials) for r in runs]
        distributions[row] = pairs
        train_seconds = []
        for r in runs:
            for ln in (r / "log" / "train.log").read_text().splitlines():
                m = re.search(r"time ([0-9.]+)s", ln)
                train_seconds.append(float(m.group(1)) if m else 0.0)
        method, loss, form = DESCRIPTION.get(row, (row, "", ""))
        lines.append(
            f"| {method} | {loss} | {form} | {metric_cells(runs, 'final')} | "
            f"{distribution_summary([t for t, _ in pairs])} | "
            f"{distribution_summary([n for _, n in pairs])} | "
            f"{sum(train_seconds) / len(runs) / 60:.1f} min |"
        )
    header = (
        f"Seeds {', '.join(args.seeds)} per row (mean ± sample standard deviation); "
        + (f"{args.epochs} epochs per run; " if args.epochs else "")
        + f"{len(trials)} trials ({n_target} target) over held-out speakers; "
        + (f"whole run {args.elapsed / 60:.0f} min; " if args.elapsed else "")
        + f"{platform.machine()} with {os.cpu_count()} CPU cores, {time.strftime('%Y-%m-%d')}."
        + (f" {args.note}" if args.note else "")
        + "\n\n"
    )
    with atomic_write(args.table) as f:
        f.write(header + "\n".join(lines) + "\n")
    print(header + "\n".join(lines))

    fig, axes = plt.subplots(1, len(args.rows), figsize=(3.2 * len(args.rows), 3), sharey=True)
    bins = np.linspace(-1.0, 1.0, 80)
    for ax, row in zip(np.atleast_1d(axes), args.rows):
        target = np.concatenate([t for t, _ in distributions[row]])
        nontarget = np.concatenate([n for _, n in distributions[row]])
        ax.hist(nontarget, bins, density=True, alpha=0.6, label="different speaker")
        ax.hist(target, bins, density=True, alpha=0.6, label="same speaker")
        ax.set_title(
            " ".join(DESCRIPTION.get(row, (row,))[:2])
            + "\n"
            + DESCRIPTION.get(row, ("", "", ""))[2],
            fontsize=8,
        )
        ax.set_xlabel("cosine score")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=110)


if __name__ == "__main__":
    main()
