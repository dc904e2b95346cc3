"""Exported models: raw waveform in, L2-normalised embedding out, front end inside.

The exported graph is the eager model itself (:class:`sslsv.models.embedding.EmbeddingModel`:
log-mel front end, per-utterance mean/variance normalisation unless the encoder reads raw
log-mels, encoder) followed by L2 normalisation, so the embeddings cannot drift from the
ones the recipes score (the front end is never re-implemented for export). Its input is
``wave``, float32 (batch, samples) at the model's sample rate with both axes dynamic; its
output ``embedding``, (batch, embed_dim). Each row is embedded whole: callers who want the
mean of crops crop before calling.

- TorchScript: ``torch.jit.trace`` (the models have no data-dependent control flow, and the
  parity tests run lengths other than the traced one). Load with ``torch.jit.load`` alone;
  the metadata is the extra file ``sslsv.json``.
- ONNX: ``torch.onnx.export(dynamo=True)`` (torch.export, then onnxscript), opset
  :data:`ONNX_OPSET`, weights inside the one file. The metadata is in the model's
  ``metadata_props`` (key ``sslsv``).

:func:`export_model` writes a file (atomically); :func:`export_verified`, what the command
uses, also checks it against the eager model before it takes the file's name.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sslsv import __version__
from sslsv.config.schema import Config
from sslsv.errors import DataError
from sslsv.fileio import atomic_write, fsync_file, temporary_beside
from sslsv.models.embedding import EmbeddingModel

log = logging.getLogger(__name__)

FORMATS = ("torchscript", "onnx")
#: STFT has been an ONNX operator since opset 17; 18 is what the dynamo exporter emits best.
ONNX_OPSET = 18
#: Largest tolerated difference between an exported model's embedding and the eager one's.
PARITY_TOLERANCE = 1e-4
METADATA_KEY = "sslsv"


class InferenceGraph(nn.Module):
    """Waveforms (B, L) -> L2-normalised embeddings (B, D): what is exported."""

    def __init__(self, model: EmbeddingModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model(wave), dim=-1)


def export_metadata(model: EmbeddingModel, cfg: Config, fingerprint: str) -> dict:
    """What a user of the exported file needs to feed it and to check what it is."""
    return {
        "sslsv_version": __version__,
        "input": "wave: float32 (batch, samples), mono, at sample_rate; rows embedded whole",
        "output": "embedding: float32 (batch, embed_dim), L2-normalised",
        "sample_rate": cfg.features.sample_rate,
        "embed_dim": model.embed_dim,
        "min_samples": min_samples(cfg),
        "encoder": cfg.encoder.name,
        "features": dataclasses.asdict(cfg.features),
        "model_fingerprint": fingerprint,
    }


def min_samples(cfg: Config) -> int:
    """The shortest input the graph takes: the centred STFT reflects n_fft // 2 samples at
    each end, which needs more samples than that."""
    return cfg.features.n_fft // 2 + 1


def _example(cfg: Config, batch: int = 2, seconds: float = 2.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    samples = round(seconds * cfg.features.sample_rate)
    return 0.1 * torch.randn(batch, samples, generator=generator)


def export_torchscript(graph: InferenceGraph, cfg: Config, path: Path, meta: dict) -> None:
    with torch.no_grad():
        traced = torch.jit.trace(graph, _example(cfg), check_trace=False)
    with atomic_write(path, "wb") as f:
        torch.jit.save(traced, f, _extra_files={"sslsv.json": json.dumps(meta)})


def export_onnx(graph: InferenceGraph, cfg: Config, path: Path, meta: dict) -> None:
    import onnx  # imported here: only export needs it

    batch = torch.export.Dim("batch", min=1)
    samples = torch.export.Dim("samples", min=min_samples(cfg))
    tmp = temporary_beside(path)  # unique: two exports to one file never write the same temporary
    try:
        program = torch.onnx.export(
            graph,
            (_example(cfg),),
            input_names=["wave"],
            output_names=["embedding"],
            dynamic_shapes={"wave": {0: batch, 1: samples}},
            opset_version=ONNX_OPSET,
            dynamo=True,
            verbose=False,
        )
        proto = program.model_proto
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(meta)
        onnx.save_model(proto, os.fspath(tmp))
        fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def export_model(
    model: EmbeddingModel, cfg: Config, fmt: str, path: str | os.PathLike, fingerprint: str
) -> dict:
    """Write ``model`` as ``fmt`` (see :data:`FORMATS`) to ``path``; returns its metadata."""
    if fmt not in FORMATS:
        raise DataError(f"export format {fmt!r}; allowed: {', '.join(FORMATS)}")
    path = Path(path)
    graph = InferenceGraph(model.cpu().eval()).eval()
    meta = export_metadata(model, cfg, fingerprint)
    # The exporters narrate (deprecation notices of torch.jit, onnxscript's optimiser at INFO
    # level); what matters to the user is the parity check that follows.
    for name in ("onnxscript", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (export_torchscript if fmt == "torchscript" else export_onnx)(graph, cfg, path, meta)
    return meta


def export_verified(
    model: EmbeddingModel,
    cfg: Config,
    fmt: str,
    path: str | os.PathLike,
    fingerprint: str,
    waves: list[np.ndarray],
) -> tuple[dict, float]:
    """Export ``model`` to a temporary file beside ``path``, check it on ``waves`` (see
    :func:`parity_error`) with its own runtime, and only then rename it to ``path``: a
    failed check, an error or a kill leaves ``path`` as it was (or absent), never an
    unchecked or half-written file. Returns the metadata and the parity error."""
    path = Path(path)
    tmp = temporary_beside(path)
    try:
        meta = export_model(model, cfg, fmt, tmp, fingerprint)
        error = parity_error(model, load_exported(tmp, fmt), waves)
        if not error <= PARITY_TOLERANCE:  # NaN fails too
            raise DataError(
                f"{path}: exported embeddings differ from the eager model's by {error:.2e} "
                f"(tolerance {PARITY_TOLERANCE:g}); not written (an existing {path.name} is "
                "left as it was)"
            )
        fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return meta, error


def load_exported(path: str | os.PathLike, fmt: str):  # -> Callable[[np.ndarray], np.ndarray]
    """A function ``waves (B, L) float32 -> embeddings (B, D)`` running an exported file
    with its own runtime (TorchScript: torch; ONNX: onnxruntime), for the parity check."""
    if fmt == "torchscript":
        module = torch.jit.load(os.fspath(path), map_location="cpu").eval()

        def run(waves: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return module(torch.from_numpy(waves)).numpy()

        return run
    import onnxruntime

    session = onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    return lambda waves: session.run(None, {"wave": waves})[0]


def parity_error(
    model: EmbeddingModel, exported, waves: list[np.ndarray]
) -> float:  # exported: load_exported's function
    """Largest absolute difference between the exported and the eager embeddings, each
    array of ``waves`` (B, L) a batch."""
    graph = InferenceGraph(model.cpu().eval()).eval()
    worst = 0.0
    for batch in waves:
        with torch.no_grad():
            eager = graph(torch.from_numpy(batch)).numpy()
        worst = max(worst, float(np.abs(exported(batch) - eager).max()))
    return worst
