"""Two gloo processes on CPU give the same SimCLR and classifier (AAM-softmax) loss and
gradients, and MoCo queue, as one."""

import os
import socket
import time
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sslsv.config.load import load_config
from sslsv.methods import build_method
from sslsv.models import ENCODERS, register_encoder
from sslsv.models.embedding import EmbeddingModel

N, T = 8, 30
CLASSES = 5

if "test_mean_linear" not in ENCODERS:

    @register_encoder("test_mean_linear")
    class MeanLinear(nn.Module):
        """Batch-independent encoder (no batch norm), so any split of the batch is exact."""

        def __init__(self, n_mels: int = 40, embed_dim: int = 16) -> None:
            super().__init__()
            self.embed_dim = embed_dim
            self.proj = nn.Linear(n_mels, embed_dim)

        def forward(self, feats):
            return self.proj(torch.tanh(feats).mean(dim=-1))


def make_method(name):
    cfg = load_config(
        None,
        [
            "encoder.name=test_mean_linear",
            f"method.name={name}",
            "method.queue_size=20",
            "method.momentum=0.9",
            "loss.margin=0.1",
            "loss.scale=10",
        ],
    )
    torch.manual_seed(0)
    return build_method(cfg, EmbeddingModel(cfg), CLASSES)


def batches(name):
    """Two batches of (feats, labels): two views each, or one view for the classifier."""
    g = torch.Generator().manual_seed(3)
    views = 1 if name == "classifier" else 2
    return [
        (torch.randn(N, views, 40, T, generator=g), torch.randint(CLASSES, (N,), generator=g))
        for _ in range(2)
    ]


def run_steps(method, forward, data, rank=0, world=1):
    """Two optimizer steps; returns (losses, grads after step 1, queue)."""
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.5)
    losses, grads = [], None
    local = N // world
    for feats, labels in data:
        mine = slice(rank * local, (rank + 1) * local)
        loss, _ = forward(feats[mine], 0.1, labels[mine])
        opt.zero_grad()
        loss.backward()
        if grads is None:
            grads = [p.grad.clone() for p in method.parameters() if p.requires_grad]
        opt.step()
        if world > 1:
            loss = loss.detach().clone()
            dist.all_reduce(loss)
            loss /= world
        losses.append(float(loss.detach()))
    queue = method.queue.clone() if hasattr(method, "queue") else None
    return losses, grads, queue


def worker(rank, world, port, name, out_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    # A bounded timeout: a stuck collective fails the test instead of hanging the suite.
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=90))
    try:
        method = make_method(name)
        ddp = DistributedDataParallel(method)
        result = run_steps(method, ddp, batches(name), rank, world)
        if rank == 0:
            torch.save(result, out_path)
        del ddp  # before the process group: see sslsv.train.trainer.Trainer.close
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("name", ["simclr", "moco", "classifier"])
def test_two_processes_equal_one(tmp_path, name):
    method = make_method(name)
    want_losses, want_grads, want_queue = run_steps(method, method, batches(name))
    out = tmp_path / "rank0.pt"
    context = mp.spawn(worker, args=(2, free_port(), name, str(out)), nprocs=2, join=False)
    deadline = time.monotonic() + 180  # a hang fails the test rather than the whole run
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the two worker processes did not finish within 180 s")
    losses, grads, queue = torch.load(out, weights_only=True)
    assert losses == pytest.approx(want_losses, rel=1e-5)
    for g, w in zip(grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)
    if name == "moco":
        torch.testing.assert_close(queue, want_queue, rtol=1e-5, atol=1e-6)
        # After two steps of 8 keys in a queue of 20, slots 0-15 hold real keys.
        assert not torch.allclose(queue[:, :16], make_method("moco").queue[:, :16])
