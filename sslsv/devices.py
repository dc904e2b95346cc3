"""Devices: checking a device name (:func:`check_device`), moving data to the device without
making the host wait, the precision of the products that decide a loss, and cuDNN
autotuning (:func:`cudnn_benchmark`).

Two rules that keep a GPU busy (:mod:`sslsv.train.sync_probe` checks both in the tests):
host tensors reach the device through :func:`upload` (pinned memory, an asynchronous copy),
and nothing in a step reads a device value back. And one rule that keeps bf16 training
honest: the similarity products and the loss run in float32 (:func:`full_precision`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from sslsv.errors import UserError


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


class DeviceError(UserError, ValueError):
    """A device that does not exist here (no CUDA, or a GPU index beyond those visible)."""


def check_device(device: str | torch.device) -> torch.device:
    """``device`` ("cpu", "cuda", "cuda:1", ...) as a ``torch.device``, checked to exist
    here (CUDA devices: those that ``CUDA_VISIBLE_DEVICES`` leaves visible), or a one-line
    :class:`DeviceError` naming it, rather than torch's error deep inside a load."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"device {device!r}: not a device (cpu, cuda or cuda:N)") from None
    if resolved.type != "cuda":
        return resolved
    if not torch.cuda.is_available():
        raise DeviceError(
            f"device {str(device)!r}: CUDA is not available here (no GPU visible, or torch "
            "built without CUDA); use --device cpu"
        )
    count = torch.cuda.device_count()
    if resolved.index is not None and resolved.index >= count:
        raise DeviceError(
            f"device {str(device)!r}: only {count} CUDA device(s) visible (cuda:0 to "
            f"cuda:{count - 1}; CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')})"
        )
    return resolved


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool) -> Iterator[None]:
    """cuDNN autotuning on or off inside the block, the previous setting restored after.

    Autotuning pays only when every input has one shape (crops): each new shape is tuned
    again, which for whole utterances (a new length nearly every time) costs more than it
    saves. Only the flag changes (``torch.backends.cudnn.flags`` would also reset the
    other cuDNN settings to its own defaults)."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous
