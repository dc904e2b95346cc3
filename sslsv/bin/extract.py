"""Stage 3: one embedding per utterance of a data dir, as Kaldi ark/scp.

  python -m sslsv.bin.extract --checkpoint exp/x/final.pt --data data/test --output DIR [--nj N]

Full utterances, or with --crop-seconds S the mean of --num-crops evenly spaced crops of S
seconds (normalised crop embeddings), about --batch-size crops at a time; the defaults
come from the checkpoint's config (``extract:``). Features come from DATA/feats.scp when it
exists and was made with the model's front-end settings, otherwise they are computed from
DATA/wav.scp on the device. Writes DIR/embeddings.JOB.{ark,scp} per job and
DIR/embeddings.scp over all of them, and checks that every utterance got exactly one
embedding. Finished jobs are not redone (unless the checkpoint or the crop settings changed).
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

from sslsv.data.datadir import read_wav_scp, split_data_dir
from sslsv.extraction import describe, embed_data_dir
from sslsv.fileio import DataError, read_dict, write_table
from sslsv.models.embedding import EmbeddingModel, load_model
from sslsv.parallel import JobsFailed, python_module, run_jobs

log = logging.getLogger("extract")


def features_match(data_dir: Path, model: EmbeddingModel) -> bool:
    """True when DATA/feats.scp exists and was computed with the model's front end."""
    conf = data_dir / "fbank.yaml"
    if not (data_dir / "feats.scp").exists() or not conf.exists():
        return False
    with open(conf, encoding="utf-8") as f:
        return yaml.safe_load(f) == dataclasses.asdict(model.fbank.cfg)


def at_least(kind: type, low: float):
    """An argparse type: ``kind`` (int or float) no smaller than ``low``."""

    def parse(text: str):
        value = kind(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{text}: must be at least {low}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its errors
    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="final.pt, init.pt or a checkpoint")
    parser.add_argument("--data", required=True, help="data dir (wav.scp, optionally feats.scp)")
    parser.add_argument("--output", required=True, help="output dir for embeddings.scp + arks")
    parser.add_argument("--nj", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--crop-seconds",
        type=at_least(float, 0),
        help="0: full utterances (default: extract.crop_seconds)",
    )
    parser.add_argument(
        "--num-crops", type=at_least(int, 1), help="crops per utterance (extract.num_crops)"
    )
    parser.add_argument(
        "--batch-size", type=at_least(int, 1), help="crops per forward pass (extract.batch_size)"
    )
    parser.add_argument(
        "--num-workers",
        type=at_least(int, 0),
        help="DataLoader readers per job (default: extract.num_workers on CUDA, 0 on CPU)",
    )
    parser.add_argument("--job", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    given = {
        key: getattr(args, key)
        for key in ("crop_seconds", "num_crops", "batch_size", "num_workers")
        if getattr(args, key) is not None
    }
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    data_dir, out_dir = Path(args.data), Path(args.output).absolute()
    try:
        if args.job is not None:
            torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
            model, cfg = load_model(args.checkpoint, args.device)
            if "num_workers" not in given and args.device == "cpu":
                given["num_workers"] = 0  # reading is cheap next to a CPU forward pass
            options = dataclasses.replace(cfg.extract, **given)
            if args.device == "cuda" and options.crop_seconds > 0:
                # Crops all have one shape: autotuned kernels pay (whole utterances would
                # retune at every new length).
                torch.backends.cudnn.benchmark = True
            split = data_dir / f"split{args.nj}" / str(args.job)
            use_feats = features_match(data_dir, model)
            ark = out_dir / f"embeddings.{args.job}.ark"
            scp = out_dir / f"embeddings.{args.job}.scp"
            tmp_scp = scp.with_name(scp.name + ".tmp")
            with kaldiio.WriteHelper(f"ark,scp:{ark},{tmp_scp}") as writer:
                n = embed_data_dir(model, split, use_feats, args.device, writer, options)
            os.replace(tmp_scp, scp)
            log.info(
                "job %d: %d embeddings, %s (%s)", args.job, n, describe(options),
                "feats.scp" if use_feats else "audio",
            )  # fmt: skip
            return 0

        if not Path(args.checkpoint).is_file():
            raise DataError(f"--checkpoint {args.checkpoint}: file not found")
        utts = read_wav_scp(data_dir / "wav.scp")
        final_scp = out_dir / "embeddings.scp"
        stamp = out_dir / "extract.stamp"
        # Job outputs are reusable only for the same checkpoint file, split and crop settings
        # (the batch size and readers do not change the embeddings).
        ckpt = Path(args.checkpoint).absolute()
        protocol = {k: v for k, v in given.items() if k in ("crop_seconds", "num_crops")}
        identity = f"{ckpt} {ckpt.stat().st_mtime_ns} nj={args.nj} {protocol}\n"
        if stamp.exists() and stamp.read_text() == identity:
            if final_scp.exists() and set(read_dict(final_scp)) == set(utts):
                log.info("%s: embeddings up to date; skipping", final_scp)
                return 0
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
            *(x for k, v in given.items() for x in (f"--{k.replace('_', '-')}", str(v))),
        )  # fmt: skip
        run_jobs(lambda j: [*cmd, "--job", str(j)], args.nj, out_dir / "log", "extract", todo)
        merged: dict[str, str] = {}
        for j in range(1, args.nj + 1):
            merged.update(read_dict(out_dir / f"embeddings.{j}.scp"))
        missing = [u for u in utts if u not in merged]
        if missing or len(merged) != len(utts):
            raise DataError(
                f"{len(utts)} utterances in {data_dir}/wav.scp but {len(merged)} embeddings; "
                f"missing e.g. {missing[:5]}"
            )
        write_table(final_scp, merged)
        log.info("%s: %d embeddings", final_scp, len(merged))
        return 0
    except (DataError, JobsFailed, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
