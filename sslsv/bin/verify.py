"""Are two recordings the same speaker? Score, log-likelihood ratio and decision.

  python -m sslsv.bin.verify --checkpoint exp/x/model.pt A.wav B.wav [--calibration CAL.json]
      [--p-target P] [--threshold T] [--json]

Reads the model file (safely), the two audio files (first channel, resampled to the model's
rate) and the calibration (``python -m sslsv.bin.calibrate``; by default the one packaged
with the model, if any; one made for another model is an error). Prints the cosine score
of the back end the model was packaged with; with a calibration, the LLR and the Bayes
decision at the calibration's p_target (or --p-target); with --threshold T instead, the
decision ``score >= T``. Exit status 0 whatever the decision; 1 for bad input, in one
line naming it: a missing or unreadable file, a file shorter than one front-end window
(at 16 kHz with the default front end, 400 samples: 25 ms), a digitally silent file (any
two of those score as the same speaker), a device that is not here. The audio goes through
the API's checks (``sslsv.inputs``). Nothing is written.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from sslsv import cli
from sslsv.api import load_model
from sslsv.calibration import bayes_threshold
from sslsv.devices import check_device
from sslsv.errors import DataError


def finite(text: str) -> float:
    """An argparse type: a finite number (a threshold of nan decides nothing)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text}: not a finite number")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, "python -m sslsv.bin.verify")
    p.add_argument("--checkpoint", required=True, help="final.pt, model.pt or a checkpoint")
    p.add_argument("enroll", help="audio file A")
    p.add_argument("test", help="audio file B")
    p.add_argument("--calibration", help="CAL.json (default: the packaged one, if any)")
    p.add_argument("--p-target", type=cli.fraction(), help="prior of the decision (calibrated)")
    p.add_argument("--threshold", type=finite, help="decide by score >= T (no calibration)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def verify(args: argparse.Namespace) -> None:
    # Everything that needs no model first: a bad flag or a missing file costs no load.
    check_device(args.device)
    if args.threshold is not None and args.calibration:
        raise DataError("give --calibration or --threshold, not both")
    if args.threshold is not None and args.p_target is not None:
        raise DataError("--p-target sets a calibrated decision; --threshold decides by score")
    for option, path in (("enroll", args.enroll), ("test", args.test)):
        if not Path(path).is_file():
            why = "not a file" if Path(path).exists() else "no such file"
            raise DataError(f"{option} {path}: {why}")
    model = load_model(args.checkpoint, args.device, calibration=args.calibration)
    if args.p_target is not None and model.calibration is None:
        raise DataError("--p-target needs a calibration (--calibration, or one packaged)")
    result = model.verify(args.enroll, args.test)
    out = {"score": result.score, "llr": result.llr, "p_target": result.p_target}
    if args.threshold is not None:
        out.update(llr=None, p_target=None, threshold=args.threshold)
        out["same_speaker"] = result.score >= args.threshold
    elif result.llr is not None:
        p = args.p_target or result.p_target
        out["p_target"] = p
        out["threshold_llr"] = bayes_threshold(p)
        out["same_speaker"] = result.llr >= out["threshold_llr"]
    else:
        out["same_speaker"] = None
    if args.json:
        print(json.dumps(out))
        return
    print(f"score: {out['score']:.4f}")
    if out["llr"] is not None:
        print(f"llr: {out['llr']:.4f}")
    if out["same_speaker"] is None:
        print("decision: none (no calibration in the model; give --calibration or --threshold)")
    else:
        rule = (
            f"score >= {args.threshold:g}"
            if args.threshold is not None
            else f"llr >= {out['threshold_llr']:.3f}, p_target {out['p_target']:g}"
        )
        decision = "same speaker" if out["same_speaker"] else "different speakers"
        print(f"decision: {decision} (same speaker when {rule})")


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(verify, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
