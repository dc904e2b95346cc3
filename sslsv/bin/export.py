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

Before it returns, the written file is loaded with its own runtime and run on random audio
of three lengths (batch 2); an embedding that differs from the eager model's by more than
1e-4 is an error (the file is then removed).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sslsv import cli
from sslsv.errors import DataError
from sslsv.export import FORMATS, PARITY_TOLERANCE, export_model, load_exported, parity_error
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
    model, cfg = load_model(args.checkpoint)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    meta = export_model(model, cfg, args.format, output, model_fingerprint(model.state_dict()))
    rng = np.random.default_rng(0)
    rate = cfg.features.sample_rate
    waves = [
        (0.1 * rng.standard_normal((2, round(s * rate)))).astype(np.float32) for s in CHECK_SECONDS
    ]
    error = parity_error(model, load_exported(output, args.format), waves)
    if error > PARITY_TOLERANCE:
        output.unlink(missing_ok=True)
        raise DataError(
            f"{output}: exported embeddings differ from the eager model's by {error:.2e} "
            f"(tolerance {PARITY_TOLERANCE:g}); file removed"
        )
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
