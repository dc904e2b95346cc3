"""Moving data to the training device without making the host wait, and the precision of
the products that decide a loss.

Two rules that keep a GPU busy (:mod:`sslsv.train.sync_probe` checks both in the tests):
host tensors reach the device through :func:`upload` (pinned memory, an asynchronous copy),
and nothing in a step reads a device value back. And one rule that keeps bf16 training
honest: the similarity products and the loss run in float32 (:func:`full_precision`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def upload(x: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A host tensor on ``device`` without making the host wait: a copy from pageable memory
    synchronises with the GPU, one from pinned memory is queued like a kernel (the caching
    pinned allocator keeps the buffer until the copy has run)."""
    device = torch.device(device)
    if device.type == "cuda" and x.device.type == "cpu":
        x = x.pin_memory()
    return x.to(device, non_blocking=True)


@contextlib.contextmanager
def full_precision(device_type: str) -> Iterator[None]:
    """Autocast off and float32 matrix products in full IEEE precision (no TF32) inside.

    Under bf16 autocast, ``a.float() @ b.float().T`` runs in bf16 all the same (autocast
    casts the operands of a matmul back): cosines rounded by about 0.004, logits at scale 30
    by about 0.1, on the decision the loss is made of. Inside this context the caller's
    float32 operands stay float32. The matmul-precision switch is a host-side flag: no
    synchronisation.
    """
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        with torch.autocast(device_type, enabled=False):
            yield
    finally:
        torch.set_float32_matmul_precision(previous)


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` as float32, or as it is when it is already wider (float64 in gradient checks)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def enable_tf32() -> None:
    """TF32 tensor cores for the float32 products of a CUDA training run (encoder layers in
    fp32 runs, SSPS's k-means): about 8x the float32 rate on an A100/H100, with a 10-bit
    mantissa, the precision that cuDNN already uses for convolutions by default. The loss
    products opt out (:func:`full_precision`), and so does the second stage's clustering
    (:mod:`sslsv.kmeans`: its labels decide at near-ties)."""
    torch.set_float32_matmul_precision("high")
