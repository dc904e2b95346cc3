"""Training a speaker-embedding extractor: self-supervised (the first stage), or a classifier with
AAM-softmax on the speakers of DATA/utt2spk (method.name: classifier; the second stage's
pseudo-speakers, or the true speakers for a supervised ceiling).

  python -m sslsv.bin.train --config conf/x.yaml --data data/train --exp-dir exp/x
      [--init-model exp/seed/final.pt]
  torchrun --nproc-per-node N -m sslsv.bin.train ...   (N processes, the same global batch)

--init-model: the encoder starts from that model's weights when pseudo_label.init_from_seed
is true and it has the same encoder and front end (else from random weights, said in the
log); --init-embeddings (the seed's embeddings of DATA) then puts the classifier's class
centres at the classes' mean embeddings. Both are part of what the experiment was made from.

Reads the config (every section; --override KEY=VALUE changes keys), DATA/wav.scp (and
DATA/segments), DATA/utt2dur and the augmentation sets the config names. Writes EXP_DIR/
config.yaml (the resolved config) and init.pt (the untrained encoder), both only once the
data and config have been checked, checkpoints/ (every epoch, optionally every N steps),
log/train.log (with the validation EER and minDCF when train.validation names a data dir),
tensorboard/ and, at the end, final.pt (with train.validation.select_best: the validated
epoch of lowest EER, kept in best.pt); bad_audio.txt lists the training
utterances whose audio is unreadable or empty (more than 1%: training refuses to start).
Rerunning resumes from the newest checkpoint; a finished experiment (final.pt present, all
epochs done) is left as it is; a changed config is refused, naming the keys, and so is a
changed training data dir (config.yaml.stamp records what it was trained on). EXP_DIR is
locked while training: a second run on it refuses at once, naming the first. Refused in one
line before anything is written: an EXP_DIR that is DATA or a file read, an --init-model
that is EXP_DIR/final.pt, --device cuda where no GPU is visible.

Exit status: 0 done, 1 bad data or config (one line), 75 stopped by SIGTERM, SIGINT or
SIGUSR1 after a checkpoint at the step it stopped at (rerun to resume; log/stopped says
where: torchrun itself exits with 1 when a process stops).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path

import yaml

from sslsv import cli, distributed
from sslsv.config.load import config_to_dict, default_config_dict, load_config, upgrade_legacy
from sslsv.config.schema import Config
from sslsv.datadir.io import read_audio_sources
from sslsv.errors import ConfigError, DataError
from sslsv.locks import output_lock
from sslsv.reuse import changes, files_identity, stamp_path, text_digest, write_stamp
from sslsv.train import signals

log = logging.getLogger("train")


def _differences(old: dict, new: dict, defaults: dict, prefix: str = "") -> list[str]:
    """The keys whose value differs, as ``key: old -> new``. A key the old config lacks (it
    was written by a version of sslsv before the key existed) counts as its default: a new
    key's default is what the code did before it had one."""
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        default = defaults.get(k)
        a = old.get(k, default)
        b = new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            # An absent section: each of its keys absent, so each compared at its default.
            sub_defaults = default if isinstance(default, dict) else {}
            out += _differences(old.get(k, {}), b, sub_defaults, f"{prefix}{k}.")
        elif a != b:
            shown = repr(a) if k in old else f"(absent: its default {a!r})"
            out.append(f"{prefix}{k}: {shown} -> {b!r}")
    return out


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, "python -m sslsv.bin.train")
    p.add_argument("--config", required=True, help="experiment YAML")
    p.add_argument("--data", required=True, help="training data dir (wav.scp, utt2dur)")
    p.add_argument("--exp-dir", required=True, help="experiment directory")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument(
        "--init-model",
        help="a model file (the second stage's seed final.pt) to start the encoder from, "
        "when pseudo_label.init_from_seed is true and its encoder is the same",
    )
    p.add_argument(
        "--init-embeddings",
        help="with --init-model: that model's embeddings of DATA's utterances (scp), whose "
        "class means are the classifier's starting centres",
    )
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
    # One written before each method had its own config section: in today's layout.
    old = upgrade_legacy(old, str(resolved)) if isinstance(old, dict) else {}
    # Epoch count may grow to continue training, and the settings of the later stages
    # (extraction, scoring) may change; anything else changes the experiment.
    free = ("train.epochs:", "extract.", "scoring.", "pseudo_label.")
    defaults = default_config_dict(cfg_dict["method"]["name"])
    diffs = [d for d in _differences(old, cfg_dict, defaults) if not d.startswith(free)]
    if diffs:
        raise ConfigError(
            f"{resolved} was made with a different config:\n  "
            + "\n  ".join(diffs)
            + "\nuse a new experiment name, or delete the experiment directory"
        )


def training_inputs(
    data_dir: Path,
    init_model: Path | None = None,
    labels: bool = False,
    init_embeddings: Path | None = None,
) -> dict:
    """What a trained model was made from besides its config (see :mod:`sslsv.reuse`): the
    training data dir's utterances, durations and speakers (a classifier's labels), the
    identity of their audio files, and the model and embeddings it started from."""
    inputs = {
        "format": "sslsv-training-data-1",
        "utterances": text_digest(data_dir / "wav.scp", data_dir / "segments"),
        "durations": text_digest(data_dir / "utt2dur"),
        "audio": files_identity(s.path for s in read_audio_sources(data_dir).values()),
    }
    if labels:
        inputs["speakers"] = text_digest(data_dir / "utt2spk")
    if init_model is not None:
        inputs["init_model"] = files_identity([str(init_model)])
    if init_embeddings is not None:
        inputs["init_embeddings"] = text_digest(init_embeddings)
    return inputs


def check_same_data(inputs: dict, resolved: Path) -> None:
    """Refuse to continue (or to call finished) an experiment trained on other data: its
    model would silently belong to data that is no longer what the data dir holds."""
    if not resolved.exists() or not stamp_path(resolved).exists():
        return  # a new experiment (or one from before data stamps: adopted as it is)
    why = changes(resolved, inputs)
    if why:
        raise DataError(
            f"{resolved.parent} was trained on other data ({'; '.join(why)} since); use a new "
            "experiment name, or delete the experiment directory"
        )


def check_paths(args: argparse.Namespace) -> None:
    """What training reads and writes, named once (sslsv.cli.check_io): EXP_DIR, written
    into, is not the data dir, the config or a model read; its final.pt, written last, is
    not the model the encoder starts from (the run would replace what it was made from)."""
    exp_dir = Path(args.exp_dir)
    cli.check_io(
        {
            "--config": args.config,
            "--data": args.data,
            "--init-model": args.init_model,
            "--init-embeddings": args.init_embeddings,
        },
        files={"final.pt of --exp-dir": exp_dir / "final.pt"},
        into={"--exp-dir": exp_dir},
    )


def train(args: argparse.Namespace) -> int:
    check_paths(args)  # before the lock, which makes EXP_DIR
    if args.device != "cpu":
        from sslsv.devices import check_device  # torch: only for a GPU run

        check_device(args.device)  # one line where --device cuda finds no GPU
    cfg = load_config(args.config, args.override)
    exp_dir = Path(args.exp_dir)
    # Rank 0 (torchrun sets RANK; the process group is not up yet) holds the lock for the
    # whole run, taken before anything slow (the data check) and after the config check
    # that needs no file, so that a refused run creates nothing and refuses at once.
    leader = int(os.environ.get("RANK", "0")) == 0
    with output_lock(exp_dir, "sslsv.bin.train") if leader else contextlib.nullcontext():
        if leader:
            # A stop marker from an earlier run is stale from now on: a run that fails
            # below must not look stopped to a job script that requeues stopped runs.
            signals.stop_marker(exp_dir).unlink(missing_ok=True)
        return _train_locked(cfg, exp_dir, args)


def _train_locked(cfg: Config, exp_dir: Path, args: argparse.Namespace) -> int:
    resolved = exp_dir / "config.yaml"
    check_unchanged(config_to_dict(cfg), resolved)
    init_model = init_embeddings = None
    if args.init_model and cfg.pseudo_label.init_from_seed:
        init_model = Path(args.init_model)
        if not init_model.is_file():
            raise DataError(f"--init-model {init_model}: no such file")
        if args.init_embeddings:
            init_embeddings = Path(args.init_embeddings)
            if not init_embeddings.is_file():
                raise DataError(f"--init-embeddings {init_embeddings}: no such file")
    from sslsv.methods import method_class

    data = training_inputs(
        Path(args.data), init_model, method_class(cfg).needs_labels, init_embeddings
    )
    check_same_data(data, resolved)
    from sslsv.train.trainer import Trainer  # torch: after the cheap checks

    try:
        trainer = Trainer(cfg, args.data, exp_dir, args.device, init_model, init_embeddings)
    except BaseException:
        distributed.shutdown()  # it may have joined the process group before failing
        raise
    try:
        # Only now, every check passed: init.pt and config.yaml, together.
        trainer.write_experiment_files(resolved)
        if distributed.rank() == 0:
            write_stamp(resolved, data)
        if trainer.epoch >= cfg.train.epochs and (exp_dir / "final.pt").exists():
            log.info(
                "%s: all %d epochs done, final.pt present; nothing to do", exp_dir, cfg.train.epochs
            )
            return 0
        trainer.fit()
    except signals.TrainingStopped:
        return signals.EXIT_STOPPED  # the trainer has logged where and why
    finally:
        trainer.close()
        distributed.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(train, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
