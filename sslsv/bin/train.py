"""Stage 2: self-supervised training of a speaker-embedding extractor.

  python -m sslsv.bin.train --config conf/x.yaml --data data/train --exp-dir exp/x
  torchrun --nproc-per-node N -m sslsv.bin.train ...   (N processes, the same global batch)

Reads the config (every section; --override KEY=VALUE changes keys), DATA/wav.scp (and
DATA/segments), DATA/utt2dur and the augmentation sets the config names. Writes EXP_DIR/
config.yaml (the resolved config), init.pt (the untrained encoder), checkpoints/ (every
epoch, optionally every N steps), log/train.log, tensorboard/ and, at the end, final.pt.
Rerunning resumes from the newest checkpoint; a finished experiment (final.pt present, all
epochs done) is left as it is; a changed config is refused, naming the keys.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

from sslsv import cli, distributed
from sslsv.config.load import config_to_dict, load_config, save_config
from sslsv.errors import ConfigError

log = logging.getLogger("train")


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


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, "python -m sslsv.bin.train")
    p.add_argument("--config", required=True, help="experiment YAML")
    p.add_argument("--data", required=True, help="training data dir (wav.scp, utt2dur)")
    p.add_argument("--exp-dir", required=True, help="experiment directory")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument(
        "--override", nargs="*", default=[], metavar="KEY=VALUE", help="e.g. train.epochs=2"
    )
    return p


def check_unchanged(cfg_dict: dict, resolved: Path) -> None:
    """Refuse to continue an experiment whose saved config differs in what shapes the model."""
    if not resolved.exists():
        return
    with open(resolved, encoding="utf-8") as f:
        old = yaml.safe_load(f) or {}
    # Epoch count may grow to continue training, and the settings of the later stages
    # (extraction, scoring) may change; anything else changes the experiment.
    free = ("train.epochs:", "extract.", "scoring.")
    diffs = [d for d in _differences(old, cfg_dict) if not d.startswith(free)]
    if diffs:
        raise ConfigError(
            f"{resolved} was made with a different config:\n  "
            + "\n  ".join(diffs)
            + "\nuse a new experiment name, or delete the experiment directory"
        )


def train(args: argparse.Namespace) -> None:
    cfg = load_config(args.config, args.override)
    exp_dir = Path(args.exp_dir)
    resolved = exp_dir / "config.yaml"
    check_unchanged(config_to_dict(cfg), resolved)
    from sslsv.train.trainer import Trainer  # torch: after the cheap checks

    trainer = Trainer(cfg, args.data, exp_dir, args.device)
    try:
        if distributed.rank() == 0:
            save_config(cfg, resolved)
        if trainer.epoch >= cfg.train.epochs and (exp_dir / "final.pt").exists():
            log.info(
                "%s: all %d epochs done, final.pt present; nothing to do", exp_dir, cfg.train.epochs
            )
            return
        trainer.fit()
    finally:
        trainer.close()
        distributed.shutdown()


def main(argv: list[str] | None = None) -> int:
    return cli.run(train, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
