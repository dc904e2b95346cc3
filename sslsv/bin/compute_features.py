"""Feature computation: log-mel filterbanks of a data dir, as Kaldi ark/scp, in --nj jobs.

  python -m sslsv.bin.compute_features --config conf/x.yaml --data data/test \
      --feats-dir feats/test [--nj 4] [--cmd local] [--on-silence warn|error]

Reads DATA/wav.scp (and DATA/segments when present: one feature matrix per utterance), the
audio, and the front end of the experiment config's features: section (the model's, so
extraction can use the features). Audio at another rate than features.sample_rate is resampled.
Writes FEATS_DIR/fbank_<name>.JOB.{ark,scp,num_frames} and a stamp per job (what the job was
made from), FEATS_DIR/split<NJ>/, then DATA/feats.scp, DATA/utt2num_frames and
DATA/fbank.yaml (the settings used, which extraction compares with its model's); logs go to
DATA/log/fbank.JOB.log. A rerun redoes exactly the jobs whose inputs changed (their lines of
wav.scp and segments, their audio files' identity, the settings) and says what changed.
Non-finite features are an error naming the utterance; digitally silent utterances are
listed in FEATS_DIR/silent.txt with a warning (--on-silence error: an error).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

from sslsv import cli
from sslsv.arkio import ArkWriter
from sslsv.audio import is_silent, read_audio, report_silent
from sslsv.config.load import load_config
from sslsv.config.schema import FeaturesConfig
from sslsv.datadir.io import read_audio_sources
from sslsv.datadir.tools import split_data_dir
from sslsv.errors import DataError
from sslsv.features import LogMelFbank
from sslsv.fileio import atomic_write, read_dict, write_table
from sslsv.locks import output_lock
from sslsv.parallel import python_module, run_jobs
from sslsv.reuse import files_identity, outdated_jobs, stamping, text_digest

log = logging.getLogger("compute_features")

#: Bump when the features of the same inputs change: old outputs are then redone.
FORMAT = "sslsv-fbank-1"


def compute_job(data_dir: Path, ark: Path, scp: Path, cfg: FeaturesConfig) -> None:
    """Features of every utterance of ``data_dir``; ``scp`` appears only when all are done,
    with ``.num_frames`` and ``.silent`` (the digitally silent utterances) beside it."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    fbank = LogMelFbank(cfg)
    sources = read_audio_sources(data_dir)
    frames, silent = {}, []
    base = scp.name[: -len(".scp")]
    # The scp appears last (sslsv.arkio.ArkWriter), once the ark and the lists are whole.
    with torch.inference_mode(), ArkWriter(ark, scp) as writer:
        for utt, source in sources.items():
            audio = read_audio(source, sample_rate=cfg.sample_rate, utt=utt)
            if is_silent(audio):
                silent.append(utt)
            feats = fbank(torch.from_numpy(audio)[None])[0].T.contiguous().numpy()
            if not np.isfinite(feats).all():
                raise DataError(
                    f"utterance {utt!r}: non-finite features from {source.path} "
                    "(NaN or infinite samples in the audio?)"
                )
            writer(utt, feats)  # Kaldi layout: (frames, bins)
            frames[utt] = str(feats.shape[0])
        write_table(scp.with_name(base + ".num_frames"), frames)
        with atomic_write(scp.with_name(base + ".silent")) as f:
            f.writelines(f"{utt}\n" for utt in silent)


def job_inputs(part: Path, cfg: FeaturesConfig) -> dict:
    """Everything a job's output depends on (see :mod:`sslsv.reuse`)."""
    return {
        "format": FORMAT,
        "settings": dataclasses.asdict(cfg),
        "utterances": text_digest(part / "wav.scp", part / "segments"),
        "audio": files_identity(s.path for s in read_audio_sources(part).values()),
    }


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, "python -m sslsv.bin.compute_features")
    p.add_argument("--config", required=True, help="experiment config (its features: section)")
    p.add_argument("--data", required=True, help="data dir with wav.scp")
    p.add_argument("--feats-dir", required=True, help="where the ark/scp files go")
    p.add_argument("--nj", type=cli.at_least(int, 1), default=1, help="parallel jobs")
    p.add_argument("--cmd", default="local", help="launcher of the jobs (see cmd.sh)")
    p.add_argument(
        "--on-silence",
        choices=("warn", "error"),
        default="warn",
        help="what digitally silent utterances are (default: a warning listing them)",
    )
    p.add_argument("--job", type=int, help=argparse.SUPPRESS)
    return p


def write_if_changed(path: Path, rows: dict[str, str]) -> None:
    """Write a table unless it already holds exactly these rows (an unchanged output keeps
    its time stamp)."""
    if path.is_file() and read_dict(path) == rows:
        return
    write_table(path, rows)


def merge(data_dir: Path, feats_dir: Path, name: str, nj: int, settings: str) -> list[str]:
    """The data dir's feats.scp, utt2num_frames and fbank.yaml from the jobs' outputs; the
    digitally silent utterances."""
    utts = read_audio_sources(data_dir)
    merged: dict[str, str] = {}
    frames: dict[str, str] = {}
    silent: list[str] = []
    for j in range(1, nj + 1):
        base = feats_dir / f"fbank_{name}.{j}"
        merged.update(read_dict(f"{base}.scp"))
        frames.update(read_dict(f"{base}.num_frames"))
        silent += Path(f"{base}.silent").read_text(encoding="utf-8").split()
    missing = [u for u in utts if u not in merged]
    if missing:
        raise DataError(f"no features for {len(missing)} utterances, e.g. {missing[:5]}")
    write_if_changed(data_dir / "utt2num_frames", {u: frames[u] for u in utts})
    write_if_changed(data_dir / "feats.scp", {u: merged[u] for u in utts})
    conf = data_dir / "fbank.yaml"
    if not conf.is_file() or conf.read_text(encoding="utf-8") != settings:
        with atomic_write(conf) as f:
            f.write(settings)
    return silent


def compute(args: argparse.Namespace) -> None:
    data_dir, feats_dir = Path(args.data), Path(args.feats_dir).absolute()
    cfg = load_config(args.config).features
    name = data_dir.name
    split_dir = feats_dir / f"split{args.nj}"
    if args.job is not None:
        base = feats_dir / f"fbank_{name}.{args.job}"
        compute_job(split_dir / str(args.job), Path(f"{base}.ark"), Path(f"{base}.scp"), cfg)
        return

    # FEATS_DIR, written into, is not the config and can be written. It may be DATA itself
    # (Kaldi puts no rule against it, and the arks destroy nothing there); DATA is written
    # into too (feats.scp), and an unwritable one fails with a one-line OSError at its lock.
    cli.check_io({"--config": args.config}, into={"--feats-dir": feats_dir})
    # Both outputs: the arks, and the data dir's feats.scp (another feats dir may be at work
    # on the same data dir).
    with (
        output_lock(feats_dir, "sslsv.bin.compute_features"),
        output_lock(data_dir, "sslsv.bin.compute_features"),
    ):
        parts = split_data_dir(data_dir, args.nj, dest=split_dir)
        outputs = {j: feats_dir / f"fbank_{name}.{j}.scp" for j in range(1, args.nj + 1)}
        inputs = {j: job_inputs(part, cfg) for j, part in enumerate(parts, 1)}
        todo = outdated_jobs(outputs, inputs, str(data_dir))
        if todo:
            # The data dir must not point at features being rewritten (extraction would read
            # them): its feats.scp comes back when every job is done.
            for stale in ("feats.scp", "utt2num_frames", "fbank.yaml"):
                (data_dir / stale).unlink(missing_ok=True)
            cmd = [*python_module("sslsv.bin.compute_features"), "--config", str(args.config)]
            cmd += ["--data", str(data_dir), "--feats-dir", str(feats_dir), "--nj", str(args.nj)]
            job = lambda j: [*cmd, "--job", str(j)]  # noqa: E731
            with stamping(outputs, inputs, todo):
                run_jobs(job, args.nj, data_dir / "log", "fbank", todo, args.cmd)
        else:
            log.info("%s: features up to date (%d jobs); nothing redone", data_dir, args.nj)
        settings = yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=True)
        silent = merge(data_dir, feats_dir, name, args.nj, settings)
    report_silent(silent, feats_dir / "silent.txt", args.on_silence)
    log.info(
        "%s: features of %d utterances in %s (%d jobs redone)",
        data_dir,
        len(read_dict(data_dir / "feats.scp")),
        feats_dir,
        len(todo),
    )


def main(argv: list[str] | None = None) -> int:
    return cli.run(compute, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
