"""Stage 3: one embedding per utterance of a data dir, as Kaldi ark/scp.

  python -m sslsv.bin.extract --checkpoint exp/x/final.pt --data data/test --output DIR [--nj N]

Full-length utterances; features come from DATA/feats.scp when it exists and was made with
the model's front-end settings, otherwise they are computed from DATA/wav.scp. Writes
DIR/embeddings.JOB.{ark,scp} per job and DIR/embeddings.scp over all of them, and checks
that every utterance got exactly one embedding. Finished jobs are not redone.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

import kaldiio
import numpy as np
import torch
import yaml

from sslsv.data.datadir import read_wav_scp, split_data_dir
from sslsv.data.dataset import read_audio
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


@torch.inference_mode()
def embed_data_dir(
    model: EmbeddingModel, data_dir: Path, use_feats: bool, device: str, writer
) -> int:
    """Write the embedding of each utterance of ``data_dir`` through ``writer``."""
    count = 0
    if use_feats:
        items = read_dict(data_dir / "feats.scp").items()
    else:
        items = read_wav_scp(data_dir / "wav.scp").items()
    for utt, source in items:
        if use_feats:
            feats = torch.from_numpy(np.array(kaldiio.load_mat(source))).T[None].to(device)
        else:
            wave = torch.from_numpy(read_audio(source, utt))[None].to(device)
            feats = model.fbank(wave)
        embedding = model.forward_features(feats.float())[0]
        if not torch.isfinite(embedding).all():
            raise DataError(f"utterance {utt!r}: non-finite embedding (silent or broken audio?)")
        writer(utt, embedding.float().cpu().numpy())
        count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="final.pt, init.pt or a checkpoint")
    parser.add_argument("--data", required=True, help="data dir (wav.scp, optionally feats.scp)")
    parser.add_argument("--output", required=True, help="output dir for embeddings.scp + arks")
    parser.add_argument("--nj", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--job", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    data_dir, out_dir = Path(args.data), Path(args.output).absolute()
    try:
        if args.job is not None:
            torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
            model, _ = load_model(args.checkpoint, args.device)
            split = data_dir / f"split{args.nj}" / str(args.job)
            use_feats = features_match(data_dir, model)
            ark = out_dir / f"embeddings.{args.job}.ark"
            scp = out_dir / f"embeddings.{args.job}.scp"
            tmp_scp = scp.with_name(scp.name + ".tmp")
            with kaldiio.WriteHelper(f"ark,scp:{ark},{tmp_scp}") as writer:
                n = embed_data_dir(model, split, use_feats, args.device, writer)
            os.replace(tmp_scp, scp)
            log.info(
                "job %d: %d embeddings (%s)", args.job, n, "feats.scp" if use_feats else "audio"
            )
            return 0

        if not Path(args.checkpoint).is_file():
            raise DataError(f"--checkpoint {args.checkpoint}: file not found")
        utts = read_wav_scp(data_dir / "wav.scp")
        final_scp = out_dir / "embeddings.scp"
        stamp = out_dir / "extract.stamp"
        # Job outputs are reusable only for the same checkpoint file and the same split.
        ckpt = Path(args.checkpoint).absolute()
        identity = f"{ckpt} {ckpt.stat().st_mtime_ns} nj={args.nj}\n"
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
