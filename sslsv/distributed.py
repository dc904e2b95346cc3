"""Thin helpers over torch.distributed; every one is a no-op in a single process."""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def init_from_env(device_type: str) -> torch.device:
    """Join the process group that ``torchrun`` describes in the environment, if any."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not is_distributed():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(minutes=30))
    if device_type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def data_parallel(module: nn.Module, device: torch.device) -> DistributedDataParallel:
    """``module`` under DDP (gradients all-reduced in the backward pass), without the buffer
    broadcast: DDP would otherwise send every buffer from rank 0 at every forward, MoCo's
    queues (134 MB a step) and SSPS's memory (4.5 GB a step at VoxCeleb2's 1.1 M slots).
    They are the same on every rank already: enqueues gather the global batch, batch-norm
    statistics are those of the global batch (SyncBatchNorm / GlobalBatchNorm), DINO's
    centre is all-reduced, and every rank starts from the same weights and buffers."""
    return DistributedDataParallel(
        module,
        device_ids=[device.index] if device.type == "cuda" else None,
        broadcast_buffers=False,
    )


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along dim 0; gradients flow back to each owner."""
    if not is_distributed():
        return x
    return torch.cat(dist_fn.all_gather(x), dim=0)


@torch.no_grad()
def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def broadcast_(x: torch.Tensor, src: int = 0) -> torch.Tensor:
    if is_distributed():
        dist.broadcast(x, src)
    return x


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        x = x.clone()
        dist.all_reduce(x)
        x /= world_size()
    return x


def shutdown() -> None:
    """Leave the process group (free DDP wrappers first: ``Trainer.close``)."""
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm with statistics of the global batch, on any device.

    Each process sums its x and x^2 per channel, one autograd-aware all-reduce adds them up,
    and every process normalises with the same mean and (biased) variance, as one process
    would on the whole batch. ``torch.nn.SyncBatchNorm`` does the same with fused kernels,
    but it drops empty inputs' statistics by boolean-mask indexing, a host synchronisation
    in every layer of every step, and ``torch.compile`` breaks its graph at every one of
    them (a ResNet-34 is then compiled as dozens of small graphs); this module makes the
    host wait nowhere and compiles into the encoder's one graph (measured on 2 gloo
    processes: tests/test_distributed.py). Sums are taken in float32 at least, also for
    bf16 activations.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-d input, got {x.dim()}-d")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        xf = x.to(torch.promote_types(x.dtype, torch.float32))
        count = torch.full((1,), x.numel() / channels, dtype=xf.dtype, device=x.device)
        totals = dist_fn.all_reduce(torch.cat([xf.sum(dims), (xf * xf).sum(dims), count]))
        n = totals[-1]
        mean = totals[:channels] / n
        var = (totals[channels : 2 * channels] / n - mean * mean).clamp_min(0.0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(m * mean)
                self.running_var.mul_(1 - m).add_(m * var * n / (n - 1))
        shape = [1, channels] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_to_global_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm1d/2d in ``module`` by a GlobalBatchNorm with the same state."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
        module, GlobalBatchNorm
    ):
        new = GlobalBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine,
            module.track_running_stats,
        )  # fmt: skip
        new.load_state_dict(module.state_dict())
        # A frozen copy (MoCo's key encoder, DINO's teacher) stays frozen, as with
        # torch.nn.SyncBatchNorm.convert_sync_batchnorm, which keeps the parameters.
        for new_param, param in zip(new.parameters(), module.parameters()):
            new_param.requires_grad_(param.requires_grad)
        return new
    for name, child in module.named_children():
        setattr(module, name, convert_to_global_batchnorm(child))
    return module
