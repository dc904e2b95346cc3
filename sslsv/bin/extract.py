"""Stage 3: one embedding per utterance of a data dir, as Kaldi ark/scp, in --nj jobs.

  python -m sslsv.bin.extract --checkpoint exp/x/final.pt --data data/test --output DIR \
      [--config conf/x.yaml] [--nj N] [--cmd local] [--device cpu|cuda]

Reads the model (final.pt, init.pt or a training checkpoint), DATA/wav.scp (and
DATA/segments when present), or DATA/feats.scp when it exists and was made with the model's
front end (DATA/fbank.yaml). The protocol is the extract: section of --config (default: the
checkpoint's config), each key overridable on the command line: whole utterances, or with
crop_seconds S the mean of num_crops evenly spaced crops of S seconds (normalised crop
embeddings), about batch_size crops per forward pass.
Writes DIR/embeddings.JOB.{ark,scp} per job, DIR/embeddings.scp over all of them (checked:
every utterance exactly once) and job logs in DIR/log/extract.JOB.log. Finished jobs are not
redone (unless the checkpoint or the crop settings changed).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

import kaldiio
import torch
import yaml

from sslsv import cli
from sslsv.config.load import load_config
from sslsv.datadir.io import read_audio_sources
from sslsv.datadir.tools import split_data_dir
from sslsv.errors import DataError
from sslsv.extraction import embed_data_dir
from sslsv.fileio import read_dict, write_table
from sslsv.models.embedding import EmbeddingModel
from sslsv.parallel import python_module, run_jobs
from sslsv.train.checkpoint import load_model

log = logging.getLogger("extract")

#: extract: keys that the command line can override, and those that change the embeddings.
OVERRIDES = ("crop_seconds", "num_crops", "batch_size", "num_workers")
PROTOCOL_OPTIONS = ("crop_seconds", "num_crops")


def features_match(data_dir: Path, model: EmbeddingModel) -> bool:
    """True when DATA/feats.scp exists and was computed with the model's front end."""
    conf = data_dir / "fbank.yaml"
    if not (data_dir / "feats.scp").exists() or not conf.exists():
        return False
    with open(conf, encoding="utf-8") as f:
        return yaml.safe_load(f) == dataclasses.asdict(model.fbank.cfg)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, "python -m sslsv.bin.extract")
    p.add_argument("--checkpoint", required=True, help="final.pt, init.pt or a checkpoint")
    p.add_argument("--data", required=True, help="data dir (wav.scp, optionally feats.scp)")
    p.add_argument("--output", required=True, help="output dir for embeddings.scp + arks")
    p.add_argument("--config", help="experiment config whose extract: section to use")
    p.add_argument("--nj", type=cli.at_least(int, 1), default=1, help="parallel jobs")
    p.add_argument("--cmd", default="local", help="launcher of the jobs (see cmd.sh)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    g = p.add_argument_group("extract: keys (override the config)")
    g.add_argument("--crop-seconds", type=cli.at_least(float, 0), help="0: whole utterances")
    g.add_argument("--num-crops", type=cli.at_least(int, 1), help="crops per utterance")
    g.add_argument("--batch-size", type=cli.at_least(int, 1), help="crops per forward pass")
    g.add_argument(
        "--num-workers",
        type=cli.at_least(int, 0),
        help="DataLoader readers per job (default: extract.num_workers on CUDA, 0 on CPU)",
    )
    p.add_argument("--job", type=int, help=argparse.SUPPRESS)
    return p


def run_job(args: argparse.Namespace, given: dict) -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    model, cfg = load_model(args.checkpoint, args.device)
    section = load_config(args.config).extract if args.config else cfg.extract
    if "num_workers" not in given and args.device == "cpu":
        given["num_workers"] = 0  # reading is cheap next to a CPU forward pass
    options = dataclasses.replace(section, **given)
    if args.device == "cuda" and options.crop_seconds > 0:
        # Crops all have one shape: autotuned kernels pay (whole utterances would retune at
        # every new length).
        torch.backends.cudnn.benchmark = True
    data_dir, out_dir = Path(args.data), Path(args.output)
    split = data_dir / f"split{args.nj}" / str(args.job)
    use_feats = features_match(data_dir, model)
    ark = out_dir / f"embeddings.{args.job}.ark"
    scp = out_dir / f"embeddings.{args.job}.scp"
    tmp_scp = scp.with_name(scp.name + ".tmp")
    with kaldiio.WriteHelper(f"ark,scp:{ark},{tmp_scp}") as writer:
        n = embed_data_dir(model, split, use_feats, args.device, writer, options)
    os.replace(tmp_scp, scp)
    source = "feats.scp" if use_feats else "audio"
    log.info("job %d: %d embeddings, %s (%s)", args.job, n, options.describe(), source)


def extract(args: argparse.Namespace) -> None:
    given = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    if args.job is not None:
        run_job(args, given)
        return
    if not Path(args.checkpoint).is_file():
        raise DataError(f"--checkpoint {args.checkpoint}: file not found")
    data_dir, out_dir = Path(args.data), Path(args.output).absolute()
    # The protocol as the jobs will see it: the checkpoint's config, the given one, the flags.
    _, ckpt_cfg = load_model(args.checkpoint, "cpu")
    section = load_config(args.config).extract if args.config else ckpt_cfg.extract
    options = dataclasses.replace(section, **given)
    utts = read_audio_sources(data_dir)
    final_scp = out_dir / "embeddings.scp"
    stamp = out_dir / "extract.stamp"
    # Job outputs are reusable only for the same checkpoint file, split and crop settings
    # (the batch size and readers do not change the embeddings).
    ckpt = Path(args.checkpoint).absolute()
    protocol = {k: getattr(options, k) for k in PROTOCOL_OPTIONS}
    identity = f"{ckpt} {ckpt.stat().st_mtime_ns} nj={args.nj} {protocol}\n"
    if stamp.exists() and stamp.read_text() == identity:
        if final_scp.exists() and set(read_dict(final_scp)) == set(utts):
            log.info("%s: embeddings up to date; skipping", final_scp)
            return
    else:
        for old in out_dir.glob("embeddings*"):
            old.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(identity)
    split_data_dir(data_dir, args.nj)
    todo = [j for j in range(1, args.nj + 1) if not (out_dir / f"embeddings.{j}.scp").exists()]
    cmd = python_module(
        "sslsv.bin.extract", "--checkpoint", str(ckpt),
        "--data", str(data_dir), "--output", str(out_dir), "--nj", str(args.nj),
        "--device", args.device,
        *(["--config", str(args.config)] if args.config else []),
        *(x for k, v in given.items() for x in (f"--{k.replace('_', '-')}", str(v))),
    )  # fmt: skip
    run_jobs(lambda j: [*cmd, "--job", str(j)], args.nj, out_dir / "log", "extract", todo, args.cmd)
    merged: dict[str, str] = {}
    for j in range(1, args.nj + 1):
        merged.update(read_dict(out_dir / f"embeddings.{j}.scp"))
    missing = [u for u in utts if u not in merged]
    if missing or len(merged) != len(utts):
        raise DataError(
            f"{len(utts)} utterances in {data_dir} but {len(merged)} embeddings; "
            f"missing e.g. {missing[:5]}"
        )
    write_table(final_scp, merged)
    log.info("%s: %d embeddings", final_scp, len(merged))


def main(argv: list[str] | None = None) -> int:
    return cli.run(extract, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
