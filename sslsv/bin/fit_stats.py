"""Fit the "stats" baseline: MFCC mean + std per utterance, standardised with the training set.

  python -m sslsv.bin.fit_stats --config conf/stats.yaml --data data/train --exp-dir exp/stats

No labels, no training: embeds every utterance of DATA with the unfitted encoder
(encoder.name must be stats, see sslsv.models.stats) and the config's extract: protocol, on
the CPU, from DATA/feats.scp when feature computation made it with the config's front end
(DATA/fbank.yaml), as sslsv.bin.extract does, else from the audio (DATA/wav.scp, and
DATA/segments when present); then sets the encoder's shift and scale to the per-dimension
mean and standard deviation (population, floored) of those embeddings.

Writes EXP_DIR/init.pt (the unfitted model: shift 0, scale 1), EXP_DIR/final.pt (the fitted
one; both in the format of training's model files, for sslsv.bin.extract and the recipes'
"final" and "init" rows), EXP_DIR/config.yaml (the resolved config) and
EXP_DIR/log/fit_stats.log. A rerun with the same model settings (features, encoder, extract
protocol) and data (its utterance lines, the identity of the audio or feature files read:
final.pt.stamp says) does nothing and logs that; anything else is refitted, and the log
says what changed. The other sections (scoring:) may change: config.yaml follows them.
One process (no --nj): the 559 utterances (2 h) of the LibriSpeech recipe's training set
take about 5 s from feats.scp, about a minute from the audio, on a shared 2-core CPU.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from sslsv import cli
from sslsv.bin.extract import features_match, source_inputs
from sslsv.config.load import config_to_dict, load_config, save_config
from sslsv.config.schema import Config
from sslsv.errors import ConfigError, DataError
from sslsv.extraction import embed_data_dir
from sslsv.locks import output_lock
from sslsv.models.embedding import EmbeddingModel
from sslsv.reuse import changes, remove_stamp, write_stamp
from sslsv.train.checkpoint import model_payload, save_atomic

log = logging.getLogger("fit_stats")

#: Bump when the fit of the same inputs changes: older fits are then redone.
FORMAT = "sslsv-stats-fit-1"

#: A dimension whose standard deviation over the training set is below this is scaled by it.
STD_FLOOR = 1e-6


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, "python -m sslsv.bin.fit_stats")
    p.add_argument("--config", required=True, help="experiment YAML (encoder.name: stats)")
    p.add_argument("--data", required=True, help="training data dir (wav.scp)")
    p.add_argument("--exp-dir", required=True, help="experiment directory")
    return p


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def fit_inputs(cfg: Config, data_dir: Path, use_feats: bool) -> dict:
    """What final.pt is made from (see :mod:`sslsv.reuse`): the settings that shape the
    embeddings, the data dir's utterances and the identity of the files read (audio, or
    the feature arks)."""
    c = config_to_dict(cfg)
    settings = _flatten({"features": c["features"], "encoder": c["encoder"]})
    settings["extract.crop_seconds"] = cfg.extract.crop_seconds
    settings["extract.num_crops"] = cfg.extract.num_crops
    return {"format": FORMAT, "settings": settings, **source_inputs(data_dir, use_feats)}


def standardisation(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) -> per-dimension mean and population std (floored at :data:`STD_FLOOR`)."""
    x = np.asarray(embeddings, dtype=np.float64)
    return x.mean(axis=0), np.maximum(x.std(axis=0), STD_FLOOR)


def _write_config(cfg: Config, path: Path) -> bool:
    """Write config.yaml unless it already says exactly this; True when written."""
    if path.is_file():
        with open(path, encoding="utf-8") as f:
            if yaml.safe_load(f) == config_to_dict(cfg):
                return False
    save_config(cfg, path)
    return True


def check_not_other_experiment(exp_dir: Path) -> None:
    """Refuse an experiment directory that holds another encoder's experiment (a trained
    model): fitting would overwrite its final.pt."""
    resolved = exp_dir / "config.yaml"
    if not resolved.is_file():
        return
    with open(resolved, encoding="utf-8") as f:
        old = yaml.safe_load(f) or {}
    name = (old.get("encoder") or {}).get("name") if isinstance(old, dict) else None
    if name != "stats":
        raise ConfigError(
            f"{resolved}: an experiment with 'encoder.name' {name!r}, not 'stats'; fit the "
            "stats baseline into its own experiment directory"
        )


def fit(args: argparse.Namespace) -> None:
    # EXP_DIR, written into, is neither the data dir nor the config (sslsv.cli.check_io).
    cli.check_io({"--config": args.config, "--data": args.data}, into={"--exp-dir": args.exp_dir})
    cfg = load_config(args.config)
    if cfg.encoder.name != "stats":
        raise ConfigError(
            f"{args.config}: 'encoder.name' is {cfg.encoder.name!r}; fit_stats fits only the "
            "'stats' encoder (train the others with sslsv.bin.train)"
        )
    data_dir, exp_dir = Path(args.data), Path(args.exp_dir)
    if not (data_dir / "wav.scp").is_file():
        raise DataError(f"{data_dir}: no wav.scp (not a data dir)")
    check_not_other_experiment(exp_dir)
    model = EmbeddingModel(cfg).eval()
    use_feats = features_match(data_dir, model)
    inputs = fit_inputs(cfg, data_dir, use_feats)
    with output_lock(exp_dir, "sslsv.bin.fit_stats"):
        (exp_dir / "log").mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(exp_dir / "log" / "fit_stats.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter(cli.LOG_FORMAT))
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            _fit_locked(model, cfg, data_dir, exp_dir, inputs)
        finally:
            root.removeHandler(handler)
            handler.close()


def _fit_locked(
    model: EmbeddingModel, cfg: Config, data_dir: Path, exp_dir: Path, inputs: dict
) -> None:
    final, resolved = exp_dir / "final.pt", exp_dir / "config.yaml"
    why = changes(final, inputs)
    if not why and (exp_dir / "init.pt").is_file():
        updated = _write_config(cfg, resolved)
        log.info(
            "%s: fitted on these data with these settings; nothing to do%s",
            final,
            " (config.yaml updated)" if updated else "",
        )
        return
    log.info("%s: to fit: %s", final, "; ".join(why or ["init.pt missing"]))
    remove_stamp(final)
    start = time.monotonic()
    init_state = copy.deepcopy(model.state_dict())
    embeddings: list[np.ndarray] = []
    silent: list[str] = []
    options = dataclasses.replace(cfg.extract, num_workers=0)  # CPU: reading in-process
    use_feats = inputs["source"] == "feats"
    n = embed_data_dir(
        model, data_dir, use_feats, "cpu", lambda _u, e: embeddings.append(e), options, silent
    )
    if n < 2:
        raise DataError(f"{data_dir}: {n} utterances; the statistics need at least 2")
    if silent:
        log.warning(
            "%d digitally silent utterances among the statistics (e.g. %s)",
            len(silent),
            ", ".join(silent[:5]),
        )
    shift, scale = standardisation(np.stack(embeddings))
    encoder = model.encoder
    encoder.shift.copy_(torch.from_numpy(shift))
    encoder.scale.copy_(torch.from_numpy(scale))
    cfg_dict = config_to_dict(cfg)
    save_atomic(model_payload(cfg_dict, init_state), exp_dir / "init.pt")
    save_atomic(model_payload(cfg_dict, model.state_dict()), final)
    save_config(cfg, resolved)
    write_stamp(final, inputs)
    log.info(
        "%s: %d-dim stats of %d utterances of %s (%s, from %s) in %.1f s; std %.3g to %.3g",
        final,
        encoder.embed_dim,
        n,
        data_dir,
        options.describe(),
        inputs["source"],
        time.monotonic() - start,
        scale.min(),
        scale.max(),
    )


def main(argv: list[str] | None = None) -> int:
    return cli.run(fit, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
