"""Stage 2: self-supervised training of a speaker-embedding extractor.

Single process:  python -m sslsv.bin.train --config conf/x.yaml --data data/train --exp-dir exp/x
Several:         torchrun --nproc-per-node N -m sslsv.bin.train ... (same global batch)
Rerunning resumes from the newest checkpoint in EXP_DIR/checkpoints; a finished experiment
(final.pt present, all epochs done) is left as it is.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

from sslsv.config import ConfigError, config_to_dict, load_config, save_config


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--config", required=True, help="experiment YAML")
    parser.add_argument("--data", required=True, help="training data dir (wav.scp, utt2dur)")
    parser.add_argument("--exp-dir", required=True, help="experiment directory")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--override", nargs="*", default=[], metavar="KEY=VALUE", help="e.g. train.epochs=2"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        cfg = load_config(args.config, args.override)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    exp_dir = Path(args.exp_dir)
    resolved = exp_dir / "config.yaml"
    if resolved.exists():
        with open(resolved, encoding="utf-8") as f:
            old = yaml.safe_load(f) or {}
        # Epoch count may grow to continue training, and the settings of the later stages
        # (extraction, scoring) may change; anything else changes the experiment.
        free = ("train.epochs:", "extract.", "scoring.")
        diffs = [d for d in _differences(old, config_to_dict(cfg)) if not d.startswith(free)]
        if diffs:
            print(
                f"error: {resolved} was made with a different config:\n  "
                + "\n  ".join(diffs)
                + "\nuse a new experiment name, or delete the experiment directory",
                file=sys.stderr,
            )
            return 1
    from sslsv.train import distributed
    from sslsv.train.trainer import Trainer

    trainer = Trainer(cfg, args.data, exp_dir, args.device)
    try:
        if distributed.rank() == 0:
            save_config(cfg, resolved)
        if trainer.epoch >= cfg.train.epochs and (exp_dir / "final.pt").exists():
            logging.info(
                "%s: all %d epochs done, final.pt present; nothing to do",
                exp_dir,
                cfg.train.epochs,
            )
            return 0
        trainer.fit()
        return 0
    finally:
        trainer.close()
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
