"""Extraction: one embedding per utterance of a data dir, as Kaldi ark/scp, in --nj jobs.

  python -m sslsv.bin.extract --checkpoint exp/x/final.pt --data data/test --output DIR \
      [--config conf/x.yaml] [--nj N] [--cmd local] [--device cpu|cuda]

Reads the model (final.pt, init.pt or a training checkpoint), DATA/wav.scp (and
DATA/segments when present) and the audio, or DATA/feats.scp and its arks when they exist
and were made with the model's front end (DATA/fbank.yaml). The protocol is the extract:
section of --config (default: the checkpoint's config), each key overridable on the command
line: whole utterances, or with crop_seconds S the mean of num_crops evenly spaced crops of
S seconds (normalised crop embeddings), about batch_size crops per forward pass.
Writes DIR/split<NJ>/ (never into DATA), DIR/embeddings.JOB.{ark,scp} and a stamp per job
(what the job was made from), DIR/embeddings.scp over all of them (checked: every utterance
exactly once; with --nj 1 and --cmd local the one job runs in this process),
DIR/silent.txt (digitally silent utterances, a warning; --on-silence error:
an error) and job logs in DIR/log/extract.JOB.log. A rerun redoes exactly the jobs whose
inputs changed (their utterances' lines, audio or feature files, the model file, the
protocol) and says what changed.

Devices: with --device cuda, job J of NJ runs on visible GPU (J-1) mod N (N: the GPUs that
CUDA_VISIBLE_DEVICES leaves visible, as torch counts them), and --nj defaults to N (else 1);
where no GPU is visible, --device cuda is a one-line error. The model file is read into
CPU memory and only the model moves to the GPU. Whole utterances run with cuDNN autotuning
off (a new length nearly every time), crops with it on (one shape).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

import torch
import yaml

from sslsv import cli
from sslsv.arkio import ArkWriter, arks_of
from sslsv.audio import report_silent
from sslsv.config.load import load_config
from sslsv.datadir.io import read_audio_sources
from sslsv.datadir.tools import split_data_dir
from sslsv.devices import check_device, cudnn_benchmark
from sslsv.errors import DataError
from sslsv.extraction import embed_data_dir, job_device
from sslsv.fileio import atomic_write, read_dict, write_table
from sslsv.locks import output_lock
from sslsv.models.embedding import EmbeddingModel
from sslsv.parallel import parse_cmd, python_module, run_jobs
from sslsv.reuse import files_identity, model_file, outdated_jobs, stamping, text_digest
from sslsv.train.checkpoint import load_model

log = logging.getLogger("extract")

#: Bump when the embeddings of the same inputs change: old outputs are then redone.
FORMAT = "sslsv-embeddings-1"

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
    p.add_argument(
        "--nj",
        type=cli.at_least(int, 1),
        help="parallel jobs (default: one per visible GPU with --device cuda, else 1)",
    )
    p.add_argument("--cmd", default="local", help="launcher of the jobs (see cmd.sh)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument(
        "--on-silence",
        choices=("warn", "error"),
        default="warn",
        help="what digitally silent utterances are (default: a warning listing them)",
    )
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
    p.add_argument("--source", choices=("audio", "feats"), help=argparse.SUPPRESS)
    return p


def default_nj(device: str) -> int:
    """``--nj`` when not given: one job per visible GPU with ``--device cuda``, else 1."""
    return max(1, torch.cuda.device_count()) if device == "cuda" else 1


def run_job(args: argparse.Namespace, given: dict) -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    device = args.device
    if device == "cuda":
        check_device(device)  # one line where this job's machine has no GPU
        device = job_device(device, args.job, args.nj, torch.cuda.device_count())
        # The current device too, not only the tensors': pinned host memory (the
        # DataLoader's) and anything else that uses the current device would otherwise open
        # a second CUDA context on GPU 0 in every job.
        torch.cuda.set_device(device)
    log.info("job %d of %d: device %s", args.job, args.nj, device)
    model, cfg = load_model(args.checkpoint, device)
    section = load_config(args.config).extract if args.config else cfg.extract
    if "num_workers" not in given and args.device == "cpu":
        given["num_workers"] = 0  # reading is cheap next to a CPU forward pass
    options = dataclasses.replace(section, **given)
    # Crops all have one shape: autotuned kernels pay. Whole utterances would be tuned
    # again at every new length (embed_data_dir turns it off for them).
    autotune = args.device == "cuda" and options.crop_seconds > 0
    out_dir = Path(args.output)
    split = out_dir / f"split{args.nj}" / str(args.job)
    ark = out_dir / f"embeddings.{args.job}.ark"
    scp = out_dir / f"embeddings.{args.job}.scp"
    silent: list[str] = []
    use_feats = args.source == "feats"
    # The scp appears last (sslsv.arkio.ArkWriter), once the ark and the silent list are whole.
    with cudnn_benchmark(autotune), ArkWriter(ark, scp) as writer:
        n = embed_data_dir(model, split, use_feats, device, writer, options, silent)
        with atomic_write(scp.with_name(f"embeddings.{args.job}.silent")) as f:
            f.writelines(f"{utt}\n" for utt in silent)
    log.info("job %d: %d embeddings, %s (%s)", args.job, n, options.describe(), args.source)


def run_here(args: argparse.Namespace, given: dict, source: str, out_dir: Path) -> None:
    """``--nj 1`` on this machine: the one job runs in this process, saving a second start
    of Python and torch (seconds, for each small set), with its log where a job's goes."""
    log_path = out_dir / "log" / "extract.1.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter(cli.LOG_FORMAT))
    logging.getLogger().addHandler(handler)
    # The threads a lone local job would get (sslsv.parallel): all of this machine's.
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    try:
        run_job(argparse.Namespace(**{**vars(args), "job": 1, "source": source}), dict(given))
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def source_inputs(data_dir: Path, use_feats: bool) -> dict:
    """What embeddings of ``data_dir`` read (see :mod:`sslsv.reuse`): its utterance lines
    and the identity of the files behind them, the feature arks or the audio."""
    if use_feats:
        scp = data_dir / "feats.scp"
        files = arks_of(scp)
        utterances = text_digest(scp)
    else:
        files = (s.path for s in read_audio_sources(data_dir).values())
        utterances = text_digest(data_dir / "wav.scp", data_dir / "segments")
    return {
        "source": "feats" if use_feats else "audio",
        "utterances": utterances,
        "files": files_identity(files),
    }


def job_inputs(part: Path, use_feats: bool, model: dict, protocol: dict) -> dict:
    """Everything a job's output depends on (see :mod:`sslsv.reuse`)."""
    return {
        "format": FORMAT,
        "model": model,
        "protocol": protocol,
        **source_inputs(part, use_feats),
    }


def extract(args: argparse.Namespace) -> None:
    if args.job is None:
        # DIR, written into, is neither DATA (never written into) nor a file read, and can
        # be written (sslsv.cli.check_io); the jobs run after this check.
        inputs = {"--checkpoint": args.checkpoint, "--data": args.data, "--config": args.config}
        cli.check_io(inputs, into={"--output": args.output})
    given = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    if args.job is None and args.device == "cuda" and parse_cmd(args.cmd)[0] == "local":
        # Here, before any job starts; jobs sent elsewhere (Slurm) check on their machine.
        check_device(args.device)
    if args.nj is None:
        args.nj = default_nj(args.device)
        if args.device == "cuda" and args.job is None:
            log.info("--nj not given: %d job(s), one per visible GPU", args.nj)
    if args.job is not None:
        run_job(args, given)
        return
    ckpt = Path(args.checkpoint).absolute()
    data_dir, out_dir = Path(args.data), Path(args.output).absolute()
    # The protocol as the jobs will see it: the checkpoint's config, the given one, the flags.
    model, ckpt_cfg = load_model(ckpt, "cpu")
    section = load_config(args.config).extract if args.config else ckpt_cfg.extract
    options = dataclasses.replace(section, **given)
    # Only what changes the embeddings: the batch size and readers do not.
    protocol = {k: getattr(options, k) for k in PROTOCOL_OPTIONS}
    model_identity = model_file(ckpt)
    use_feats = features_match(data_dir, model)
    utts = read_audio_sources(data_dir)
    with output_lock(out_dir, "sslsv.bin.extract"):
        parts = split_data_dir(data_dir, args.nj, dest=out_dir / f"split{args.nj}")
        outputs = {j: out_dir / f"embeddings.{j}.scp" for j in range(1, args.nj + 1)}
        inputs = {
            j: job_inputs(part, use_feats, model_identity, protocol)
            for j, part in enumerate(parts, 1)
        }
        todo = outdated_jobs(outputs, inputs, str(out_dir))
        final_scp = out_dir / "embeddings.scp"
        if not todo and final_scp.is_file():
            log.info("%s: embeddings up to date (%d jobs); nothing redone", final_scp, args.nj)
            return
        final_scp.unlink(missing_ok=True)  # never beside job outputs being redone
        source = "feats" if use_feats else "audio"
        cmd = python_module(
            "sslsv.bin.extract", "--checkpoint", str(ckpt),
            "--data", str(data_dir), "--output", str(out_dir), "--nj", str(args.nj),
            "--device", args.device, "--source", source,
            *(["--config", str(args.config)] if args.config else []),
            *(x for k, v in given.items() for x in (f"--{k.replace('_', '-')}", str(v))),
        )  # fmt: skip
        job = lambda j: [*cmd, "--job", str(j)]  # noqa: E731
        with stamping(outputs, inputs, todo):
            if args.nj == 1 and args.cmd == "local":
                run_here(args, given, source, out_dir)
            else:
                run_jobs(job, args.nj, out_dir / "log", "extract", todo, args.cmd)
        merged: dict[str, str] = {}
        silent: list[str] = []
        for j in range(1, args.nj + 1):
            merged.update(read_dict(out_dir / f"embeddings.{j}.scp"))
            silent += (out_dir / f"embeddings.{j}.silent").read_text(encoding="utf-8").split()
        missing = [u for u in utts if u not in merged]
        if missing or len(merged) != len(utts):
            raise DataError(
                f"{len(utts)} utterances in {data_dir} but {len(merged)} embeddings; "
                f"missing e.g. {missing[:5]}"
            )
        write_table(final_scp, merged)
    log.info(
        "%s: %d embeddings (%d jobs redone, from %s)", final_scp, len(merged), len(todo), source
    )
    report_silent(silent, out_dir / "silent.txt", args.on_silence)


def main(argv: list[str] | None = None) -> int:
    return cli.run(extract, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
