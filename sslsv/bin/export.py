"""Export a model, front end included, to TorchScript or ONNX, checked against the eager one.

  python -m sslsv.bin.export --checkpoint exp/x/final.pt --format torchscript|onnx \
      --output exp/x/model.{ts,onnx}

Reads the model file (final.pt, a packaged model.pt, init.pt or a training checkpoint;
safely: tensors only). Writes OUTPUT: a graph that takes raw mono waveforms ``wave``, float32
(batch, samples) at the model's sample rate (16 kHz for the shipped configs), with dynamic
batch and time axes, and returns L2-normalised embeddings ``embedding`` (batch, embed_dim),
the log-mel front end and the per-utterance normalisation inside. It needs only torch
(``torch.jit.load``) or only onnxruntime to run. The metadata (sample rate, embedding size,
front-end settings, model fingerprint) is inside the file: the extra file ``sslsv.json``
(TorchScript) or the ``sslsv`` metadata entry (ONNX).

The file is written under a temporary name beside OUTPUT, loaded with its own runtime and
run on random audio of three lengths (batch 2), and renamed to OUTPUT only if every
embedding is within 1e-4 of the eager model's; otherwise (and after any error or a kill)
OUTPUT is as it was, or absent. OUTPUT may not be the model file (also through a link) nor
a folder, and must be writable where it is: each a one-line error before anything is read.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sslsv import cli
from sslsv.export import FORMATS, export_verified
from sslsv.train.checkpoint import load_model, model_fingerprint

log = logging.getLogger("export")

#: Lengths of the parity check (seconds): short, typical, and an odd number of samples.
CHECK_SECONDS = (0.5, 3.0, 7.3)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, "python -m sslsv.bin.export")
    p.add_argument("--checkpoint", required=True, help="final.pt, model.pt or a checkpoint")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--output", required=True, help="file to write (.ts / .onnx)")
    return p


def export(args: argparse.Namespace) -> None:
    cli.check_io(inputs={"--checkpoint": args.checkpoint}, files={"--output": args.output})
    model, cfg = load_model(args.checkpoint)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rate = cfg.features.sample_rate
    waves = [
        (0.1 * rng.standard_normal((2, round(s * rate)))).astype(np.float32) for s in CHECK_SECONDS
    ]
    fingerprint = model_fingerprint(model.state_dict())
    meta, error = export_verified(model, cfg, args.format, output, fingerprint, waves)
    log.info(
        "%s: %s, %d-d embeddings of %d Hz waveforms; max difference to eager %.1e on %s s",
        output,
        args.format,
        meta["embed_dim"],
        rate,
        error,
        "/".join(f"{s:g}" for s in CHECK_SECONDS),
    )


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(export, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
