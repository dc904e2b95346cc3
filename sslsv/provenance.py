"""Which model made an artefact.

A calibration is only right for the scores of the model it was fitted on, and a packaged
mean only for that model's embeddings. The stamps that sslsv.bin.extract writes beside
its jobs' outputs name the model file (path, size, modification time) the embeddings
came from; sslsv.bin.score carries that into a stamp beside each score file. These
helpers read them, so that calibrate, score, compute_metrics and package can prove that
the artefacts they combine belong together, rather than trusting file names.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from sslsv.arkio import arks_of
from sslsv.errors import DataError
from sslsv.reuse import model_file, stamp_path, write_stamp

log = logging.getLogger(__name__)

__all__ = [
    "SCORES_FORMAT",
    "ModelFile",
    "embeddings_model",
    "model_file",
    "recorded_fingerprint",
    "same_model_file",
    "scores_made_by",
    "write_scores_stamp",
]


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


#: What sslsv.bin.score records beside a score file (OUTPUT.stamp); bumped when it changes.
SCORES_FORMAT = "sslsv-scores-1"

#: A model file as a stamp records it: ``{"path", "size", "mtime_ns"}``.
ModelFile = dict[str, Any]


def _is_model_file(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("path"), str)
        and all(_count(value.get(k)) for k in ("size", "mtime_ns"))
    )


def same_model_file(a: ModelFile, b: ModelFile) -> bool:
    """One file (through links and other spellings) with one size and modification time:
    a file rewritten in between (retrained) is another model."""
    return (
        os.path.realpath(a["path"]) == os.path.realpath(b["path"])
        and a["size"] == b["size"]
        and a["mtime_ns"] == b["mtime_ns"]
    )


def _read_stamp(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def embeddings_model(path: str | os.PathLike) -> ModelFile | None:
    """The model file that made the embeddings of an scp or ark (``x.scp``, ``x.ark``,
    ``scp:x``, ``ark:x``), as the stamps of the sslsv.bin.extract jobs that wrote their
    arks record it (``embeddings.J.ark``: ``embeddings.J.scp.stamp``). None when one of
    those arks has no such stamp (embeddings written by hand, by sslsv.bin.embed or by an
    older version): not known. A DataError when its arks were made by different models."""
    # Only the arks this scp uses: a dir may keep stamps of jobs of an older --nj.
    arks = [Path(ark) for ark in arks_of(path)]
    found: ModelFile | None = None
    for ark in arks:
        stamp = _read_stamp(stamp_path(ark.with_suffix(".scp")))
        model = None if stamp is None else stamp.get("model")
        if not _is_model_file(model):
            return None
        if found is None:
            found = model
        elif not same_model_file(found, model):
            raise DataError(
                f"{path}: its embeddings were made by different models ({found['path']} and "
                f"{model['path']}, or that file before and after it changed): extract them again"
            )
    return found


def recorded_fingerprint(model: ModelFile, where: str) -> str:
    """The fingerprint of the weights of the model file a stamp names, read now. A
    DataError naming ``where`` (the artefact) when that file is gone or has changed since
    (retrained, replaced): the artefact was made by a model that is no longer there."""
    from sslsv.train.checkpoint import load_model, model_fingerprint  # the model's code

    path = model["path"]
    try:
        now = model_file(path)
    except OSError:
        now = None
    if now is None or not same_model_file(model, now):
        state = "is gone" if now is None else "has changed since (retrained or replaced)"
        raise DataError(
            f"{where}: made by the model file {path}, which {state}; make it again from the "
            "model as it is now"
        )
    net, _ = load_model(path)
    return model_fingerprint(net.state_dict())


def write_scores_stamp(
    output: str | os.PathLike,
    model: ModelFile | None,
    scoring: dict[str, Any],
    calibration: str | None,
) -> None:
    """Record beside a score file just written which model's embeddings it scores (None:
    not known), with which scoring settings, and whether it holds LLRs (``calibration``:
    the fingerprint recorded in the calibration applied) or raw scores (None). The file's
    size and modification time go in too: a score file written over afterwards, by
    anything, no longer matches its stamp."""
    st = os.stat(output)
    write_stamp(
        output,
        {
            "format": SCORES_FORMAT,
            "model": model,
            "scoring": scoring,
            "calibration": calibration,
            "scores": {"size": st.st_size, "mtime_ns": st.st_mtime_ns},
        },
    )


def scores_made_by(path: str | os.PathLike) -> dict[str, Any] | None:
    """What sslsv.bin.score recorded of the score file ``path`` (the ``model``, ``scoring``
    and ``calibration`` of :func:`write_scores_stamp`), or None when nothing is recorded or
    the file has changed since it was recorded (then it is not what the stamp describes)."""
    stamp = _read_stamp(stamp_path(path))
    if stamp is None or stamp.get("format") != SCORES_FORMAT:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    if stamp.get("scores") != {"size": st.st_size, "mtime_ns": st.st_mtime_ns}:
        log.warning("%s: changed since sslsv.bin.score wrote it; its stamp is not used", path)
        return None
    model = stamp.get("model")
    return {
        "model": model if _is_model_file(model) else None,
        "scoring": stamp.get("scoring") if isinstance(stamp.get("scoring"), dict) else {},
        "calibration": stamp.get("calibration"),
    }
