"""How well the label-free criterion (sslsv.selection) picks checkpoints and rounds.

  python bench/selection_criterion.py --test data/test --trials data/test/trials \\
      --unlabelled data/dev RUN-DIR ...          (in the recipe dir)

A RUN-DIR is a training's exp dir (an SSL model, a second-stage round, a fine-tuning);
each of its epoch checkpoints and its final.pt is a candidate. For every candidate: the true
EER on the test trials (cosine of whole-utterance embeddings, the labels) and the criterion
on the unlabelled set's audio (split-utterance EER; alignment, uniformity). Prints, as
markdown: Spearman's rank correlation of each criterion with the true EER over all
candidates; per run, the epoch the criterion picks against the best epoch (the oracle) and
the run's final.pt; over the runs' final.pt files grouped by --group (a name's prefix up to
the last _pl/_lmft: one label-free pipeline), the round the criterion picks against the best.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sslsv import selection  # noqa: E402
from sslsv.config.load import load_config  # noqa: E402
from sslsv.train.checkpoint import load_model  # noqa: E402
from sslsv.train.validation import Validator  # noqa: E402

CRITERIA = ("split_eer", "alignment", "uniformity")


def candidates(run: Path) -> list[tuple[str, Path]]:
    epochs = sorted((run / "checkpoints").glob("epoch-*.pt"))
    return [(p.stem, p) for p in epochs] + [("final", run / "final.pt")]


def pipeline_of(run: Path) -> str:
    """The label-free pipeline a run belongs to: its name without _pl<N>/_lmft."""
    return re.sub(r"_(pl\d+|lmft)$", "", run.name)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--test", required=True)
    p.add_argument("--trials", required=True)
    p.add_argument("--unlabelled", required=True)
    p.add_argument("--crop-seconds", type=float, default=2.0)
    p.add_argument("--max-utts", type=int, default=500)
    p.add_argument("--first-stage", help="the SSL run: round 0 of every pipeline")
    p.add_argument("runs", nargs="+")
    args = p.parse_args()
    if args.first_stage:
        args.runs = [args.first_stage, *args.runs]
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = load_config(None, [f"train.validation.data_dir={args.test}",
                             f"train.validation.trials={args.trials}"])  # fmt: skip
    validator = Validator(cfg, torch.device("cpu"))
    pairs = None
    rows = []  # (run, name, true EER, criteria)
    for run in map(Path, args.runs):
        for name, path in candidates(run):
            if not path.is_file():
                continue
            model, model_cfg = load_model(path)
            if pairs is None:
                pairs = selection.read_split_pairs(
                    args.unlabelled, model_cfg.features.sample_rate, args.crop_seconds,
                    args.max_utts,
                )  # fmt: skip
            true = validator.run(model)["eer"]
            crit = selection.evaluate(model, pairs, torch.device("cpu"))
            rows.append((run, name, true, crit))
            print(f"{run.name} {name} EER {true:.3f} " +
                  " ".join(f"{k} {crit[k]:.4f}" for k in CRITERIA), file=sys.stderr)  # fmt: skip
    true = np.array([r[2] for r in rows])
    print(f"\n{len(rows)} candidates of {len(args.runs)} runs; test trials {args.trials}, "
          f"criterion on the audio of {args.unlabelled}\n")  # fmt: skip
    print("| criterion | Spearman rho with the true EER |\n|---|---|")
    for key in CRITERIA:
        rho = spearmanr([r[3][key] for r in rows], true).statistic
        print(f"| {key} | {rho:.3f} |")
    print("\n| run | epochs | criterion's pick (EER %) | oracle (EER %) | final.pt (EER %) |")
    print("|---|---|---|---|---|")
    for run in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == run]
        pick = min(mine, key=lambda r: r[3]["split_eer"])
        best = min(mine, key=lambda r: r[2])
        final = next((r for r in mine if r[1] == "final"), None)
        print(f"| {run.name} | {len(mine) - 1} | {pick[1]} ({pick[2]:.2f}) | {best[1]} "
              f"({best[2]:.2f}) | {final[2]:.2f} |" if final else "")  # fmt: skip
    print("\n| pipeline | rounds | criterion's pick (EER %) | oracle (EER %) | relative gap |")
    print("|---|---|---|---|---|")
    finals = [r for r in rows if r[1] == "final"]
    first = [r for r in finals if args.first_stage and r[0] == Path(args.first_stage)]
    groups = [pipeline_of(r[0]) for r in finals if r not in first]
    for group in dict.fromkeys(groups):
        mine = first + [r for r in finals if pipeline_of(r[0]) == group and r not in first]
        pick = min(mine, key=lambda r: r[3]["split_eer"])
        best = min(mine, key=lambda r: r[2])
        gap = 100 * (pick[2] - best[2]) / best[2]
        print(f"| {group} | {len(mine)} | {pick[0].name} ({pick[2]:.2f}) | {best[0].name} "
              f"({best[2]:.2f}) | {gap:.1f}% |")  # fmt: skip


if __name__ == "__main__":
    main()
