"""Checkpoints: training states and model files (``init.pt``, ``final.pt``), written
atomically, loaded safely (tensors only); the final model: the average of the last epochs,
or the epoch that validation chose."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

import torch

from sslsv.config.load import config_from_dict, config_to_dict
from sslsv.config.schema import Config
from sslsv.errors import DataError
from sslsv.fileio import atomic_write
from sslsv.models.embedding import EmbeddingModel

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(epoch|step)-(\d+)\.pt$")
FINAL_FORMAT = "sslsv-model-v1"


def save_atomic(obj: dict, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file, fsync, rename: a killed write leaves no damage."""
    with atomic_write(path, "wb") as f:
        torch.save(obj, f)


#: Leading bytes of files that get mistaken for model files, to name what was given instead.
_MAGIC = {
    b"fLaC": "FLAC audio",
    b"RIFF": "WAV audio",
    b"OggS": "Ogg audio",
    b"ID3": "MP3 audio",
    b"\x89HDF": "HDF5 (Keras?) weights",
    b"\x08": "ONNX or other protobuf",
}


def _not_a_model_file(path: str | os.PathLike, e: BaseException) -> str:
    """Why ``torch.load`` refused ``path``, in the toolkit's words. Torch's own message
    advises loading again with ``weights_only=False``, the unsafe load (any code in the file
    runs) that this toolkit exists to avoid: it is never repeated."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        head = b""
    kind = next((what for magic, what in _MAGIC.items() if head.startswith(magic)), None)
    text = str(e)
    if kind is not None:
        why = f"it looks like {kind}"
    elif not head:
        why = "it is empty"
    elif "Unsupported global" in text:
        # A pickle with code or objects that are not tensors: maybe a model of another
        # toolkit; never unpickled here.
        why = "it holds Python objects other than tensors, which sslsv never unpickles"
    elif isinstance(e, RuntimeError) and "zip archive" in text:
        why = "a damaged or truncated file (half copied?)"
    elif isinstance(e, EOFError):
        why = "it ends early (truncated?)"
    else:
        why = "not a file written by torch.save"
    return f"not a sslsv model/checkpoint file: {why}"


def load_safe(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The contents of a file written by :func:`save_atomic` (tensors and plain values
    only: nothing in the file is executed). A missing or unreadable path is its
    ``OSError``; any other file is a :class:`DataError` saying it is not a model or
    checkpoint file (and what it looks like, for audio and ONNX files)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except OSError:
        raise  # the path's own error: missing, a folder, no permission
    except Exception as e:  # unpickling, zip, EOF and key errors: a file of another kind
        raise DataError(_not_a_model_file(path, e)) from None


def checkpoint_files(ckpt_dir: Path, steps_per_epoch: int) -> list[tuple[int, Path]]:
    """(global step, path) of every checkpoint, oldest first."""
    found = []
    for path in ckpt_dir.glob("*.pt") if ckpt_dir.is_dir() else []:
        m = _NAME.match(path.name)
        if m:
            n = int(m.group(2))
            found.append((n * steps_per_epoch if m.group(1) == "epoch" else n, path))
    return sorted(found)


#: What a training checkpoint must hold to be resumed from.
TRAINING_KEYS = ("method", "optimizer", "scheduler", "epoch", "step", "rng_cpu")


def _reason(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def load_latest(ckpt_dir: Path, steps_per_epoch: int) -> dict | None:
    """Newest readable checkpoint; an unreadable one (truncated, foreign, missing keys) is
    reported and the next older one tried, so that one damaged file costs the work since
    the checkpoint before it, not the whole run."""
    skipped: list[str] = []
    for _, path in reversed(checkpoint_files(ckpt_dir, steps_per_epoch)):
        try:
            state = load_safe(path)
            if not isinstance(state, dict):
                raise ValueError("not a training checkpoint")
            missing = [k for k in TRAINING_KEYS if k not in state]
            if missing:
                raise ValueError(f"no {', '.join(missing)}")
        except Exception as e:  # a damaged file must not stop a resume from an older one
            log.warning("skipping unreadable checkpoint %s: %s", path, _reason(e))
            skipped.append(path.name)
            continue
        older = f"; falling back from the unreadable {', '.join(skipped)}" if skipped else ""
        log.info(
            "resuming from %s (epoch %d, step %d%s)", path, state["epoch"], state["step"], older
        )
        return state
    if skipped:
        log.warning("no readable checkpoint in %s: training starts from the beginning", ckpt_dir)
    return None


def prune(ckpt_dir: Path, steps_per_epoch: int, keep: int) -> None:
    """Keep the ``keep`` newest epoch checkpoints and no step checkpoint older than them."""
    files = checkpoint_files(ckpt_dir, steps_per_epoch)
    epochs = [(s, p) for s, p in files if p.name.startswith("epoch-")]
    doomed = [p for _, p in epochs[:-keep]] if keep > 0 else []
    if epochs:
        newest_epoch_step = epochs[-1][0]
        doomed += [p for s, p in files if p.name.startswith("step-") and s <= newest_epoch_step]
    for path in doomed:
        path.unlink(missing_ok=True)


def average_epoch_models(
    ckpt_dir: Path, steps_per_epoch: int, last: int, upto_epoch: int | None = None
) -> dict:
    """Mean of the ``model`` weights of the ``last`` newest epoch checkpoints (those of
    epochs after ``upto_epoch`` left out: a run asked for fewer epochs than an earlier one
    made must not average, or fail on, epochs it did not ask for).

    An unreadable one among them is skipped with a warning naming it, and the others
    averaged: the final model must not be lost to one damaged file. A
    :class:`DataError` when none is readable.
    """
    epochs = [
        p
        for _, p in checkpoint_files(ckpt_dir, steps_per_epoch)
        if p.name.startswith("epoch-")
        and (upto_epoch is None or int(_NAME.match(p.name).group(2)) <= upto_epoch)
    ]
    chosen = epochs[-max(1, last) :]
    if not chosen:
        raise DataError(f"{ckpt_dir}: no epoch checkpoint to average")
    states, used, damaged = [], [], []
    for path in chosen:
        try:
            model = load_safe(path)["model"]
            if not isinstance(model, dict) or (states and model.keys() != states[0].keys()):
                raise ValueError("its 'model' weights do not match the others'")
        except Exception as e:  # truncated, foreign or half-copied files all land here
            log.warning("final model: skipping unreadable checkpoint %s: %s", path, _reason(e))
            damaged.append(path.name)
            continue
        states.append(model)
        used.append(path.name)
    if not states:
        raise DataError(
            f"{ckpt_dir}: no readable epoch checkpoint to average ({', '.join(damaged)} "
            "unreadable); delete them and rerun to train those epochs again"
        )
    averaged = {}
    for key, value in states[-1].items():
        if value.is_floating_point():
            averaged[key] = sum(s[key] for s in states) / len(states)
        else:  # counters such as num_batches_tracked
            averaged[key] = value
    if damaged:
        log.warning(
            "final model: average of %d checkpoints instead of %d (%s unreadable)",
            len(states),
            len(chosen),
            ", ".join(damaged),
        )
    log.info("final model: average of %s", ", ".join(used))
    return averaged


def model_payload(cfg_dict: dict, state: dict[str, torch.Tensor]) -> dict:
    """What a model file holds: its config (every default spelled out) and weights."""
    return {"format": FINAL_FORMAT, "config": cfg_dict, "model": state}


def write_final_model(
    cfg: Config,
    exp_dir: Path,
    ckpt_dir: Path,
    steps_per_epoch: int,
    best: tuple[float, int] | None,
) -> Path:
    """Write ``exp_dir/final.pt`` at the end of training: a copy of ``best.pt`` under
    ``train.validation.select_best`` when validation chose one (``best``: its EER and
    epoch), else the average of the ``train.average_last`` newest epoch checkpoints up to
    ``train.epochs``. Returns its path."""
    tc = cfg.train
    final = exp_dir / "final.pt"
    if tc.validation.select_best and best is not None:
        how = (
            "split-utterance EER (%.2f%%); chosen without labels"
            if tc.validation.label_free
            else "EER (%.2f%%); chosen with the labels of the validation speakers"
        )
        log.info("final model: epoch %d, the lowest validation " + how, best[1], best[0])
        # best.pt holds the model payload already: final.pt is a copy of it.
        save_atomic(load_safe(exp_dir / "best.pt"), final)
    else:
        averaged = average_epoch_models(
            ckpt_dir, steps_per_epoch, tc.average_last, upto_epoch=tc.epochs
        )
        save_atomic(model_payload(config_to_dict(cfg), averaged), final)
    return final


def model_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """A short digest of a model's weights (names, shapes, dtypes and values): what ties a
    calibration or a packaged mean to the model it was made for, whatever file holds it."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def load_payload(path: str | os.PathLike) -> dict:
    """A model file's contents (safely: tensors and plain values only), checked to be one,
    in CPU memory: a training checkpoint also holds the optimizer state and the SSPS
    memory, which have no business on the GPU of a job that only embeds."""
    try:
        payload = load_safe(path)
    except Exception as e:  # missing, truncated, foreign or code-carrying files all land here
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"not a readable sslsv checkpoint: {path} ({reason})") from None
    if not isinstance(payload, dict) or "config" not in payload or "model" not in payload:
        raise DataError(f"not an sslsv checkpoint: {path} (it holds no 'config' and 'model')")
    return payload


def model_from_payload(payload: dict, path: str | os.PathLike) -> tuple[EmbeddingModel, Config]:
    """The model (eval mode, on the payload's device: the CPU) and config a model file
    holds."""
    cfg = config_from_dict(payload["config"], source=str(path))
    model = EmbeddingModel(cfg)
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, TypeError, AttributeError) as e:
        reason = str(e).strip().splitlines()[0]
        raise DataError(f"{path}: its weights do not fit its config ({reason})") from None
    return model.eval(), cfg


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[EmbeddingModel, Config]:
    """Load ``final.pt``/``init.pt``, a packaged ``model.pt`` or a training checkpoint
    (safely: tensors only) into CPU memory; only the model then moves to ``device``."""
    model, cfg = model_from_payload(load_payload(path), path)
    return model.to(device), cfg
