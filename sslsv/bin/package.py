"""Package a trained model to use anywhere: weights, config, front end, training mean,
calibration and a model card in one file.

  python -m sslsv.bin.package --checkpoint exp/x/final.pt --output exp/x/model.pt \
      [--config conf/x.yaml] [--train-embeddings exp/x/embeddings_final/train/embeddings.scp] \
      [--calibration exp/x/calibration_final/calibration.json] [--results exp/x/RESULTS] \
      [--train-data data/train] [--name NAME]

Reads the model file (safely), the scoring: section of --config (default: the model's
config), the training set's stage-5 embeddings (needed when that section subtracts the
mean: their mean is packaged; their extraction stamps must name this model file, or one
with the same weights, and their size be the model's embedding size), the calibration
(checked to name this model and this scoring) and the RESULTS file (its lines go into the
card). Writes OUTPUT (not one of the inputs), a model file
that every command and ``sslsv.load_model`` read like final.pt (the extra entries: ``mean``,
``scoring``, ``calibration`` (its JSON text), ``card``), and OUTPUT's stem + ``.card.md``
beside it: the model card in Markdown (what the model is, what it was trained on, how to
use it, its results and thresholds). The API scores by cosine: a scoring: section with
``backend: plda`` or score normalisation is refused (with --skip-unsupported: a warning).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from sslsv import __version__, cli
from sslsv.arkio import load_embeddings
from sslsv.backend import CosineBackend
from sslsv.calibration import Calibration
from sslsv.config.load import load_config
from sslsv.config.schema import Config, ScoringConfig
from sslsv.errors import DataError
from sslsv.fileio import atomic_write
from sslsv.provenance import embeddings_model, model_file, recorded_fingerprint, same_model_file
from sslsv.train.checkpoint import (
    FINAL_FORMAT,
    load_payload,
    model_fingerprint,
    model_from_payload,
    save_atomic,
)

log = logging.getLogger("package")


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, "python -m sslsv.bin.package")
    p.add_argument("--checkpoint", required=True, help="final.pt or another model file")
    p.add_argument("--output", required=True, help="the packaged model file (model.pt)")
    p.add_argument("--config", help="experiment config whose scoring: section to package")
    p.add_argument("--train-embeddings", help="training set's embeddings.scp (the mean)")
    p.add_argument("--calibration", help="calibration.json (python -m sslsv.bin.calibrate)")
    p.add_argument("--results", help="RESULTS file whose lines go into the model card")
    p.add_argument("--train-data", default="", help="training data, named in the card")
    p.add_argument("--name", default="", help="the model's name in the card")
    p.add_argument(
        "--skip-unsupported",
        action="store_true",
        help="a scoring: section other than plain cosine: say so and write nothing (exit 0)",
    )
    return p


def scoring_dict(sc: ScoringConfig) -> dict:
    """The scoring settings a calibration is checked against (sslsv.bin.score records the
    same)."""
    return dataclasses.asdict(sc)


def model_card(
    name: str,
    cfg: Config,
    fingerprint: str,
    params: int,
    embed_dim: int,
    sc: ScoringConfig,
    train_data: str,
    calibration: Calibration | None,
    results: str,
) -> str:
    f = cfg.features
    lines = [
        f"# {name}",
        "",
        f"Packaged {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d} by sslsv "
        f"{__version__}; model fingerprint `{fingerprint}`.",
        "",
        "## What it is",
        f"- Encoder `{cfg.encoder.name}` {cfg.encoder.args or ''} ({params:,} parameters), "
        f"{embed_dim}-d embeddings; method `{cfg.method.name}`.",
        f"- Input: mono audio at {f.sample_rate} Hz (other rates are resampled); log-mel front "
        f"end ({f.n_mels} bins, {f.win_length}/{f.hop_length}-sample window/hop, "
        f"{f.n_fft}-point FFT, {f.f_min:g}-{f.f_max:g} Hz) inside the model.",
        f"- Extraction: {cfg.extract.describe()}.",
        f"- Scoring: cosine{', training mean subtracted' if sc.subtract_mean else ''}.",
        f"- Trained on: {train_data or 'not recorded'}.",
        "",
        "## Use",
        "```python",
        "import sslsv",
        'model = sslsv.load_model("model.pt")',
        'print(model.verify("a.wav", "b.wav"))',
        "```",
        "",
    ]
    if calibration is not None:
        lines += ["## Calibration", *calibration.describe().splitlines(), ""]
    else:
        lines += ["## Calibration", "None: scores are cosines, not LLRs; no threshold.", ""]
    if results:
        lines += ["## Results", "```", results.rstrip(), "```", ""]
    return "\n".join(lines)


def training_mean(scp: str, checkpoint: str, fingerprint: str, embed_dim: int) -> np.ndarray:
    """The mean of the training embeddings ``scp``, proved to be of the packaged model:
    their extraction stamps name ``checkpoint`` as it is now, or a model file with the
    same weights, and each is ``embed_dim`` long. A mean of another model's embeddings
    would be subtracted from every embedding the package makes: refused, naming ``scp``."""
    made_by = embeddings_model(scp)
    if made_by is None:
        raise DataError(
            f"--train-embeddings {scp}: which model made them is not recorded (no "
            "sslsv.bin.extract stamps beside their arks): extract them with "
            f"python -m sslsv.bin.extract --checkpoint {checkpoint}"
        )
    if not same_model_file(made_by, model_file(checkpoint)):
        other = recorded_fingerprint(made_by, f"--train-embeddings {scp}")
        if other != fingerprint:
            raise DataError(
                f"--train-embeddings {scp}: made by model {made_by['path']} ({other}), not "
                f"--checkpoint {checkpoint} ({fingerprint})"
            )
    _, x = load_embeddings(scp)
    if x.shape[1] != embed_dim:
        raise DataError(
            f"--train-embeddings {scp}: {x.shape[1]}-d embeddings, but {checkpoint} makes "
            f"{embed_dim}-d ones"
        )
    return CosineBackend.trained_on(x).mean


def package(args: argparse.Namespace) -> None:
    output = Path(args.output)
    card_path = output.with_name(output.stem + ".card.md")
    cli.check_io(
        {
            "--checkpoint": args.checkpoint,
            "--config": args.config,
            "--train-embeddings": args.train_embeddings,
            "--calibration": args.calibration,
            "--results": args.results,
        },
        files={"--output": output, "--output's card": card_path},
    )
    payload = load_payload(args.checkpoint)
    model, cfg = model_from_payload(payload, args.checkpoint)
    sc = load_config(args.config).scoring if args.config else cfg.scoring
    if sc.backend != "cosine" or sc.norm != "none":
        why = (
            f"scoring.backend {sc.backend!r}, scoring.norm {sc.norm!r}: a packaged model scores "
            "by plain cosine (backend cosine, norm none)"
        )
        if args.skip_unsupported:
            log.warning("%s not packaged: %s", args.checkpoint, why)
            return
        raise DataError(why)
    fingerprint = model_fingerprint(model.state_dict())
    out = {"format": FINAL_FORMAT, "config": payload["config"], "model": payload["model"]}
    out["scoring"] = scoring_dict(sc)
    calibration = None
    if args.calibration:
        calibration = Calibration.from_json(args.calibration)
        calibration.check_model(fingerprint, args.calibration, args.checkpoint)
        calibration.check_scoring(out["scoring"], args.calibration)
        out["calibration"] = json.dumps(calibration.to_dict())
    if sc.subtract_mean:
        if not args.train_embeddings:
            raise DataError("scoring.subtract_mean is true: give --train-embeddings (the mean)")
        mean = training_mean(args.train_embeddings, args.checkpoint, fingerprint, model.embed_dim)
        out["mean"] = torch.from_numpy(mean)
    results = Path(args.results).read_text(encoding="utf-8") if args.results else ""
    name = args.name or Path(args.checkpoint).parent.name
    params = sum(p.numel() for p in model.parameters())
    card = model_card(
        name, cfg, fingerprint, params, model.embed_dim, sc, args.train_data, calibration, results
    )
    out["card"] = card
    save_atomic(out, output)
    with atomic_write(card_path) as f:
        f.write(card)
    log.info(
        "%s: packaged (%s mean, %s calibration); card %s",
        output,
        "with" if "mean" in out else "no",
        "with" if calibration else "no",
        card_path,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(package, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
