"""Stage 1: log-mel filterbanks of a data dir, as Kaldi ark/scp, in --nj parallel jobs.

  python -m sslsv.bin.compute_features --config conf/x.yaml --data data/test \
      --feats-dir feats/test [--nj 4] [--cmd local]

Reads DATA/wav.scp (and DATA/segments when present: one feature matrix per utterance) and
the front end of the experiment config's features: section (the model's, so stage 3 can use
the features). Audio at another rate than features.sample_rate is resampled.
Writes FEATS_DIR/fbank_<name>.JOB.{ark,scp}, then DATA/feats.scp, DATA/utt2num_frames and
DATA/fbank.yaml (the settings used, which stage 3 compares with its model's); job logs go to
DATA/log/fbank.JOB.log. A finished job (its scp present) is not redone; a finished data dir
is left as it is.
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
from sslsv.audio import read_audio
from sslsv.config.load import load_config
from sslsv.config.schema import FeaturesConfig
from sslsv.datadir.io import read_audio_sources
from sslsv.datadir.tools import split_data_dir
from sslsv.errors import DataError
from sslsv.features import LogMelFbank
from sslsv.fileio import atomic_write, read_dict, write_table
from sslsv.parallel import python_module, run_jobs

log = logging.getLogger("compute_features")


def compute_job(data_dir: Path, ark: Path, scp: Path, cfg: FeaturesConfig) -> None:
    """Features of every utterance of ``data_dir``; ``scp`` appears only when all are done."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    fbank = LogMelFbank(cfg)
    sources = read_audio_sources(data_dir)
    tmp_scp = scp.with_name(scp.name + ".tmp")
    frames = {}
    with torch.inference_mode(), kaldiio.WriteHelper(f"ark,scp:{ark},{tmp_scp}") as writer:
        for utt, source in sources.items():
            wave = torch.from_numpy(read_audio(source, sample_rate=cfg.sample_rate, utt=utt))
            feats = fbank(wave[None])[0].T.contiguous()  # Kaldi layout: (frames, bins)
            writer(utt, feats.numpy())
            frames[utt] = str(feats.shape[0])
    write_table(scp.with_name(scp.name[: -len(".scp")] + ".num_frames"), frames)
    os.replace(tmp_scp, scp)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, "python -m sslsv.bin.compute_features")
    p.add_argument("--config", required=True, help="experiment config (its features: section)")
    p.add_argument("--data", required=True, help="data dir with wav.scp")
    p.add_argument("--feats-dir", required=True, help="where the ark/scp files go")
    p.add_argument("--nj", type=cli.at_least(int, 1), default=1, help="parallel jobs")
    p.add_argument("--cmd", default="local", help="launcher of the jobs (see cmd.sh)")
    p.add_argument("--job", type=int, help=argparse.SUPPRESS)
    return p


def compute(args: argparse.Namespace) -> None:
    data_dir, feats_dir = Path(args.data), Path(args.feats_dir).absolute()
    cfg = load_config(args.config).features
    name = data_dir.name
    if args.job is not None:
        split = data_dir / f"split{args.nj}" / str(args.job)
        base = feats_dir / f"fbank_{name}.{args.job}"
        compute_job(split, Path(f"{base}.ark"), Path(f"{base}.scp"), cfg)
        return

    settings = yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=True)
    utts = read_audio_sources(data_dir)
    done_conf = data_dir / "fbank.yaml"
    if (data_dir / "feats.scp").exists() and done_conf.exists():
        if done_conf.read_text() == settings and set(read_dict(data_dir / "feats.scp")) == set(
            utts
        ):
            log.info("%s: features already computed with these settings; skipping", data_dir)
            return
    feats_dir.mkdir(parents=True, exist_ok=True)
    split_data_dir(data_dir, args.nj)
    todo = [j for j in range(1, args.nj + 1) if not (feats_dir / f"fbank_{name}.{j}.scp").exists()]
    cmd = [*python_module("sslsv.bin.compute_features"), "--config", str(args.config)]
    cmd += ["--data", str(data_dir), "--feats-dir", str(feats_dir), "--nj", str(args.nj)]
    run_jobs(lambda j: [*cmd, "--job", str(j)], args.nj, data_dir / "log", "fbank", todo, args.cmd)
    merged: dict[str, str] = {}
    frames: dict[str, str] = {}
    for j in range(1, args.nj + 1):
        merged.update(read_dict(feats_dir / f"fbank_{name}.{j}.scp"))
        frames.update(read_dict(feats_dir / f"fbank_{name}.{j}.num_frames"))
    missing = [u for u in utts if u not in merged]
    if missing:
        raise DataError(f"no features for {len(missing)} utterances, e.g. {missing[:5]}")
    write_table(data_dir / "utt2num_frames", {u: frames[u] for u in utts})
    write_table(data_dir / "feats.scp", {u: merged[u] for u in utts})
    with atomic_write(done_conf) as f:
        f.write(settings)
    log.info("%s: features of %d utterances in %s", data_dir, len(utts), feats_dir)


def main(argv: list[str] | None = None) -> int:
    return cli.run(compute, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
