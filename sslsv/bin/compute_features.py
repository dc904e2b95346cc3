"""Stage 1: log-mel filterbanks of a data dir, as Kaldi ark/scp, in --nj parallel jobs.

Writes FEATS_DIR/fbank_<name>.JOB.{ark,scp}, then DATA/feats.scp, DATA/utt2num_frames and
DATA/fbank.yaml (the settings used, so that extraction can check they match its model).
A finished job (its scp present) is not redone; a finished data dir is left as it is.
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

from sslsv.config import FeaturesConfig, from_plain
from sslsv.data.datadir import read_wav_scp, split_data_dir
from sslsv.data.dataset import read_audio
from sslsv.features import LogMelFbank
from sslsv.fileio import atomic_write, read_dict, write_table
from sslsv.parallel import JobsFailed, python_module, run_jobs

log = logging.getLogger("compute_features")


def load_features_config(path: str | os.PathLike | None) -> FeaturesConfig:
    """Feature settings from a YAML of FeaturesConfig keys, or an experiment's ``features:``."""
    if not path:
        return FeaturesConfig()
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if "features" in data:
        data = data["features"]
    return from_plain(FeaturesConfig, data, "features", str(path))


def compute_job(data_dir: Path, ark: Path, scp: Path, cfg: FeaturesConfig) -> None:
    """Features of every utterance of ``data_dir``; ``scp`` appears only when all are done."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    fbank = LogMelFbank(cfg)
    wavs = read_wav_scp(data_dir / "wav.scp")
    tmp_scp = scp.with_name(scp.name + ".tmp")
    frames = {}
    with torch.inference_mode(), kaldiio.WriteHelper(f"ark,scp:{ark},{tmp_scp}") as writer:
        for utt, path in wavs.items():
            wave = torch.from_numpy(read_audio(path, utt))
            feats = fbank(wave[None])[0].T.contiguous()  # Kaldi layout: (frames, bins)
            writer(utt, feats.numpy())
            frames[utt] = str(feats.shape[0])
    write_table(scp.with_name(scp.name[: -len(".scp")] + ".num_frames"), frames)
    os.replace(tmp_scp, scp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", required=True, help="data dir with wav.scp")
    parser.add_argument("--feats-dir", required=True, help="where the ark/scp files go")
    parser.add_argument("--config", help="YAML with feature settings (default: the paper's)")
    parser.add_argument("--nj", type=int, default=1)
    parser.add_argument("--job", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    data_dir, feats_dir = Path(args.data), Path(args.feats_dir).absolute()
    cfg = load_features_config(args.config)
    name = data_dir.name
    if args.job is not None:
        split = data_dir / f"split{args.nj}" / str(args.job)
        base = feats_dir / f"fbank_{name}.{args.job}"
        compute_job(split, Path(f"{base}.ark"), Path(f"{base}.scp"), cfg)
        return 0

    settings = yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=True)
    utts = read_wav_scp(data_dir / "wav.scp")
    done_conf = data_dir / "fbank.yaml"
    if (data_dir / "feats.scp").exists() and done_conf.exists():
        if done_conf.read_text() == settings and set(read_dict(data_dir / "feats.scp")) == set(
            utts
        ):
            log.info("%s: features already computed with these settings; skipping", data_dir)
            return 0
    feats_dir.mkdir(parents=True, exist_ok=True)
    split_data_dir(data_dir, args.nj)
    todo = [j for j in range(1, args.nj + 1) if not (feats_dir / f"fbank_{name}.{j}.scp").exists()]
    cmd = [*python_module("sslsv.bin.compute_features"), "--data", str(data_dir)]
    cmd += ["--feats-dir", str(feats_dir), "--nj", str(args.nj)]
    if args.config:
        cmd += ["--config", str(args.config)]
    try:
        run_jobs(lambda j: [*cmd, "--job", str(j)], args.nj, data_dir / "log", "fbank", todo)
    except JobsFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    merged: dict[str, str] = {}
    frames: dict[str, str] = {}
    for j in range(1, args.nj + 1):
        merged.update(read_dict(feats_dir / f"fbank_{name}.{j}.scp"))
        frames.update(read_dict(feats_dir / f"fbank_{name}.{j}.num_frames"))
    missing = [u for u in utts if u not in merged]
    if missing:
        print(
            f"error: no features for {len(missing)} utterances, e.g. {missing[:5]}", file=sys.stderr
        )
        return 1
    write_table(data_dir / "utt2num_frames", {u: frames[u] for u in utts})
    write_table(data_dir / "feats.scp", {u: merged[u] for u in utts})
    with atomic_write(done_conf) as f:
        f.write(settings)
    log.info("%s: features of %d utterances in %s", data_dir, len(utts), feats_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
