"""Using a trained model outside the recipes: embed audio, score pairs, make decisions.

    import sslsv
    model = sslsv.load_model("exp/simclr_ntxent_am_mini/model.pt")
    a, b = model.embed(["a.wav", "b.wav"])
    print(model.score(a, b))                    # cosine
    print(model.verify("a.wav", "b.wav"))       # score, LLR and decision when calibrated

Inputs are file paths (any format soundfile reads; first channel; resampled to the model's
rate), arrays or tensors of samples (``sample_rate``: theirs, default the model's; float at
full scale 1.0, or int16 / int32 / uint8 PCM, scaled as soundfile reads those; 1-D, or
(channels, samples) of which the first channel), or a list of either: :mod:`sslsv.inputs`
checks and converts them, for this API and the commands alike. An input shorter than one
front-end window, or digitally silent (the commands' rule), is a one-line
:class:`sslsv.errors.DataError` naming it: a silent input's embedding says nothing of a
speaker, and two of them score as the same one (``embed(..., on_silence="warn")`` logs it
and embeds it, as extraction does by default).

The protocol is the model's ``extract:`` section (whole utterances, or the mean of
``num_crops`` evenly spaced crops of ``crop_seconds``), overridable per call (checked
against the config's ranges; crops at least one front-end window long); it is the code
extraction runs (:mod:`sslsv.extraction`), so ``embed(..., raw=True)`` equals extraction's
embeddings. Whole utterances of equal length share a forward pass, others go one by one
(padding would change the embedding); crops of many inputs share batches.

``embed`` returns what the model's back end scores: the cosine back end of the registry
(:mod:`sslsv.backend`), with the training mean subtracted when the model was packaged with
one (``python -m sslsv.bin.package``, ``scoring.subtract_mean``), then L2 normalisation;
``score`` is the dot product of two of them, so a calibration fitted on scoring's scores
with the same settings (the back end's name and settings, no score normalisation) applies
to it unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sslsv import inputs
from sslsv.audio import AudioSource
from sslsv.backend import CosineBackend
from sslsv.calibration import Calibration
from sslsv.config.schema import Config, ExtractConfig
from sslsv.devices import check_device, cudnn_benchmark
from sslsv.errors import DataError
from sslsv.extraction import mean_of_crops, take_crops
from sslsv.models.embedding import EmbeddingModel
from sslsv.train.checkpoint import load_payload, model_fingerprint, model_from_payload

Audio = str | os.PathLike | AudioSource | np.ndarray | torch.Tensor


@dataclass(frozen=True)
class Verification:
    """One trial's outcome. ``llr`` and ``same_speaker`` are None without a calibration."""

    score: float
    llr: float | None
    same_speaker: bool | None
    p_target: float | None

    def __str__(self) -> str:
        if self.llr is None:
            return f"score {self.score:.4f} (no calibration: no LLR or decision)"
        decision = "same speaker" if self.same_speaker else "different speakers"
        return (
            f"score {self.score:.4f}, LLR {self.llr:.3f}: {decision} (p_target {self.p_target:g})"
        )


class SpeakerModel:
    """A trained embedding model with what scoring needs: see the module docstring."""

    def __init__(
        self,
        model: EmbeddingModel,
        cfg: Config,
        device: str | torch.device = "cpu",
        mean: np.ndarray | None = None,
        calibration: Calibration | None = None,
        card: str = "",
    ) -> None:
        # Checked first: a missing GPU is one line naming the device, not torch's error.
        self.device = check_device(device)
        # From the weights where they are (the CPU, from load_model): no copy back.
        self.fingerprint = model_fingerprint(model.state_dict())
        self.model = model.to(self.device).eval()
        self.cfg = cfg
        # The API scores by cosine (score, verify), the registry's "cosine" back end.
        self.backend = CosineBackend(mean)
        self.card = card
        self.calibration = None
        if calibration is not None:
            self.set_calibration(calibration)

    @property
    def sample_rate(self) -> int:
        return self.cfg.features.sample_rate

    @property
    def embed_dim(self) -> int:
        return self.model.embed_dim

    def set_calibration(self, calibration: Calibration | str | os.PathLike) -> None:
        """Use a calibration (a :class:`Calibration` or its JSON file) for ``verify``; one
        made for another model is refused."""
        source = "" if isinstance(calibration, Calibration) else str(calibration)
        if source:
            calibration = Calibration.from_json(source)
        # One that names no model is refused too: nothing says it fits this one.
        calibration.check_model(self.fingerprint, source or "calibration", "this one")
        subtracts = self.backend.mean is not None
        wanted = {"backend": self.backend.name, "norm": "none", **self.backend.settings()}
        differ = [k for k, v in wanted.items() if calibration.scoring.get(k, v) != v]
        if differ:
            shown = ", ".join(f"{k} {calibration.scoring[k]!r}" for k in differ)
            raise DataError(
                f"{source or 'calibration'}: fitted on scores made with {shown}; this model "
                f"scores by plain cosine{' minus its training mean' if subtracts else ''} "
                "(a model packaged by python -m sslsv.bin.package carries its mean)"
            )
        if calibration.quality:
            raise DataError(
                f"{source or 'calibration'}: uses quality measures "
                f"({', '.join(calibration.quality)}); verify takes score-only calibrations"
            )
        self.calibration = calibration

    # ------------------------------------------------------------------------ embedding

    def _waveform(
        self, item: Audio, sample_rate: int | None, index: int, on_silence: str
    ) -> np.ndarray:
        # The checks and conversions that the commands share (sslsv.inputs).
        return inputs.user_audio(item, sample_rate, self.cfg.features, f"input {index}", on_silence)

    @torch.inference_mode()
    def _forward(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        return self.model(x).float().cpu().numpy()

    def _embed_raw(self, waves: list[np.ndarray], options: ExtractConfig) -> np.ndarray:
        out = np.empty((len(waves), self.embed_dim), dtype=np.float32)
        if options.crop_seconds == 0:
            by_length: dict[int, list[int]] = {}
            for i, wave in enumerate(waves):
                by_length.setdefault(len(wave), []).append(i)
            # One shape per length: cuDNN autotuning would tune again for each.
            with cudnn_benchmark(False):
                for indices in by_length.values():
                    for start in range(0, len(indices), options.batch_size):
                        chunk = indices[start : start + options.batch_size]
                        out[chunk] = self._forward(np.stack([waves[i] for i in chunk]))
            return out
        crop = round(options.crop_seconds * self.sample_rate)
        per_batch = max(1, options.batch_size // options.num_crops)
        for start in range(0, len(waves), per_batch):
            chunk = waves[start : start + per_batch]
            crops = np.concatenate([take_crops(w, crop, options.num_crops) for w in chunk])
            e = mean_of_crops(torch.from_numpy(self._forward(crops)), len(chunk))
            out[start : start + len(chunk)] = e.numpy()
        return out

    def embed(
        self,
        audio: Audio | Sequence[Audio],
        sample_rate: int | None = None,
        *,
        raw: bool = False,
        on_silence: str = "error",
        **protocol: float | int,
    ) -> np.ndarray:
        """Embeddings of one input (D,) or of a list (or tuple) of inputs (N, D).

        ``protocol``: ``crop_seconds``, ``num_crops``, ``batch_size`` (the model's
        ``extract:`` values by default; the config's ranges). ``raw``: extraction's embeddings,
        before the back end's mean subtraction and normalisation. ``on_silence``: "error"
        (a digitally silent input is refused) or "warn" (logged, embedded: extraction's
        default).
        """
        single = not isinstance(audio, (list, tuple))
        items = [audio] if single else list(audio)
        # Options first: a bad one is reported before any file is read.
        options = inputs.protocol(self.cfg.extract, self.cfg.features, **protocol)
        inputs.check_rate(sample_rate, self.sample_rate)
        waves = [self._waveform(item, sample_rate, i, on_silence) for i, item in enumerate(items)]
        x = self._embed_raw(waves, options) if waves else np.zeros((0, self.embed_dim))
        bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
        if len(bad):
            raise DataError(f"input {bad[0]}: non-finite embedding (broken audio?)")
        if not raw:
            x = self.prepare(x)
        return x[0] if single else x

    def prepare(self, raw: np.ndarray) -> np.ndarray:
        """Extraction's embeddings -> what the cosine back end scores (mean off, unit length)."""
        x = np.atleast_2d(raw)
        if not np.any(x, axis=1).all():
            raise DataError("an all-zero embedding cannot be scored (digitally silent input?)")
        return self.backend.prepare(x).reshape(np.shape(raw))

    # -------------------------------------------------------------------------- scoring

    @staticmethod
    def score(a: np.ndarray, b: np.ndarray) -> float | np.ndarray:
        """Cosine of two embeddings from :meth:`embed` (or of their rows, pairwise)."""
        a, b = _embedding(a, "a"), _embedding(b, "b")
        if a.shape != b.shape:
            raise DataError(f"embeddings of shapes {a.shape} and {b.shape}: give equal shapes")
        cos = np.sum(a * b, axis=-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
        return float(cos) if cos.ndim == 0 else cos

    def verify(self, a: Audio, b: Audio, sample_rate: int | None = None) -> Verification:
        """Score two inputs; with a calibration, their LLR and the Bayes decision at its
        ``p_target``. A digitally silent input is refused: two of them score near 1."""
        score = float(self.score(*self.embed([a, b], sample_rate, on_silence="error")))
        if self.calibration is None:
            return Verification(score, None, None, None)
        llr = float(self.calibration.apply(np.array([score]))[0])
        p = self.calibration.p_target
        return Verification(score, llr, bool(self.calibration.decide(llr, p)), p)


def _embedding(x: np.ndarray, name: str) -> np.ndarray:
    """An embedding (D,) or rows of them (N, D) for :meth:`SpeakerModel.score`: real,
    finite, of nonzero length (a zero vector has no direction: its cosine is 0 / 0)."""
    try:
        e = np.asarray(x)
    except (TypeError, ValueError) as err:  # ragged lists
        raise DataError(f"embedding {name}: not an array of numbers ({err})") from None
    if e.dtype.kind not in "fiu":  # complex would lose its imaginary part with a warning
        raise DataError(f"embedding {name}: {e.dtype} values; give real numbers")
    e = e.astype(np.float64)
    if e.ndim not in (1, 2) or e.shape[-1] == 0:
        raise DataError(f"embedding {name}: shape {e.shape}; give (D,) or (N, D)")
    if not np.isfinite(e).all():
        raise DataError(f"embedding {name}: non-finite values")
    zero = np.flatnonzero(~np.any(e.reshape(-1, e.shape[-1]), axis=1))
    if len(zero):
        which = f"row {zero[0]}" if e.ndim == 2 else "it"
        raise DataError(f"embedding {name}: {which} is all zeros; a zero vector has no cosine")
    return e


def load_model(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    calibration: str | os.PathLike | None = None,
) -> SpeakerModel:
    """A model file (final.pt, a packaged model.pt, init.pt or a checkpoint; loaded safely,
    tensors only) ready to embed on ``device`` ("cpu", "cuda", "cuda:1", ...; a one-line
    :class:`sslsv.devices.DeviceError` when it is not here); ``calibration`` (a JSON
    file from ``python -m sslsv.bin.calibrate``) overrides one packaged with the model.

    The file is read into CPU memory and only the model moves to ``device``."""
    check_device(device)  # before reading a large file
    payload = load_payload(path)
    model, cfg = model_from_payload(payload, path)
    mean, packaged = read_package(payload, path, model.embed_dim)
    speaker_model = SpeakerModel(model, cfg, device, mean=mean, card=payload.get("card", ""))
    if calibration is not None:
        speaker_model.set_calibration(calibration)
    elif packaged is not None:
        speaker_model.set_calibration(packaged)
    return speaker_model


def read_package(
    payload: dict, path: str | os.PathLike, embed_dim: int
) -> tuple[np.ndarray | None, Calibration | None]:
    """The training mean (float64, ``(embed_dim,)``) and the calibration a packaged model
    file carries (None where it has none), checked: a mean of another shape would
    broadcast (a ``(1,)`` mean makes every pair score about 1) and one of another type
    fails at the first embedding; a calibration must be the JSON this command writes. Any
    deviation is one DataError naming ``path``. (Whether the calibration is this model's
    is :meth:`Calibration.check_model`'s to say.)"""
    mean = payload.get("mean")
    if mean is not None:
        if not isinstance(mean, torch.Tensor) or not mean.is_floating_point():
            kind = mean.dtype if isinstance(mean, torch.Tensor) else type(mean).__name__
            raise DataError(
                f"{path}: its packaged 'mean' is a {kind}, not a float tensor: package the "
                "model again (python -m sslsv.bin.package)"
            )
        if tuple(mean.shape) != (embed_dim,):
            raise DataError(
                f"{path}: its packaged 'mean' has shape {tuple(mean.shape)}, but the model "
                f"makes {embed_dim}-d embeddings: package the model again"
            )
        if not torch.isfinite(mean).all():
            raise DataError(f"{path}: its packaged 'mean' is not finite: package it again")
        mean = mean.double().numpy()
    text = payload.get("calibration")
    calibration = None
    if text is not None:
        if not isinstance(text, str):
            raise DataError(
                f"{path}: its packaged 'calibration' is a {type(text).__name__}, not the JSON "
                "text of a calibration: package the model again"
            )
        calibration = Calibration.from_text(text, f"{path}: packaged calibration")
    return mean, calibration
