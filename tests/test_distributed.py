"""Two gloo processes on CPU give the same SimCLR and classifier (AAM-softmax) loss and
gradients, MoCo queue, and DINO loss, centre and teacher (with and without positive
sampling), as one."""

import os
import socket
import time
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import MEAN_LINEAR
from torch import nn

from sslsv import distributed
from sslsv.config.load import load_config
from sslsv.methods import StepInfo, build_method
from sslsv.models.embedding import EmbeddingModel

N, T = 8, 30
CLASSES = 5

DINO = [
    "method.name=dino",
    "method.head_hidden=12",
    "method.head_bottleneck=6",
    "method.head_out=10",
    "method.local_crops=2",
    "method.momentum=0.9",
]
# Positive sampling from the second step on (the memory holds the first step's 8).
SSPS = ["method.ssps.enabled=true", "method.ssps.start=0", "method.ssps.queue_size=20",
        "method.ssps.clusters=3"]  # fmt: skip


def make_method(name):
    moco = ["method.name=moco", "method.queue_size=20", "method.momentum=0.9"]
    margin = ["method.margin=0.1", "method.scale=10"]
    options = {
        "simclr": ["method.name=simclr", *margin],
        "moco": moco + margin,
        "classifier": ["method.name=classifier", *margin],
        # The loss gate (from the first step: some rows pass, some not) and its tables.
        "classifier_gated": [
            "method.name=classifier",
            *margin,
            "method.gate.kind=fixed",
            "method.gate.threshold=1.6",
            "method.gate.start_epoch=0",
        ],
        # The mixture fitted to the epoch's global losses, and label correction.
        "classifier_gmm": [
            "method.name=classifier",
            *margin,
            "method.gate.kind=gmm",
            "method.gate.start_epoch=0",
            "method.correction.enabled=true",
            "method.correction.confidence=0.3",
        ],
        "dino": DINO,
        "dino_ssps": DINO + SSPS,
        "simclr_ssps": ["method.name=simclr", "method.scale=10", *SSPS],
        "moco_ssps": moco + ["method.scale=10"] + SSPS,
    }
    cfg = load_config(None, [f"encoder.name={MEAN_LINEAR}", *options[name]])
    torch.manual_seed(0)
    method = build_method(cfg, EmbeddingModel(cfg), CLASSES)
    if name in (
        "classifier_gated",
        "classifier_gmm",
    ):  # the training set: rows 0-7 and 100-107 (batches())
        table = torch.full((110,), -1, dtype=torch.long)
        for step, (_, labels) in enumerate(batches(name)):
            table[100 * step : 100 * step + N] = labels
        method.attach_training_set(table)
    # Batch norm over the global batch (DINO's head has it), as the trainer converts it.
    method = distributed.convert_to_global_batchnorm(method)
    # DINO in float64: behind its head's batch norm some true gradients are 0 (a shift of
    # the embedding is normalised away), and float32 leaves rounding noise there.
    return method.double() if name.startswith("dino") else method


def batches(name):
    """Two batches of (feats, labels): two views each, one for the classifier, two global
    and two local crops for DINO."""
    g = torch.Generator().manual_seed(3)
    views = 1 if name.startswith("classifier") else 2
    out = []
    for _ in range(2):
        feats = torch.randn(N, views, 40, T, generator=g)
        if name.startswith("dino"):
            feats = [feats.double(), torch.randn(N, 2, 40, T // 2, generator=g).double()]
        out.append((feats, torch.randint(CLASSES, (N,), generator=g)))
    return out


def run_steps(method, forward, data, rank=0, world=1):
    """Two optimizer steps; returns (losses, grads after step 1, state: MoCo's queue, or
    DINO's centre and teacher, or the positive sampler's memory)."""
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.5)
    losses, grads = [], None
    local = N // world
    for step, (feats, labels) in enumerate(data):
        mine = slice(rank * local, (rank + 1) * local)
        indices = torch.arange(N)[mine] + 100 * step
        info = StepInfo(0.2 + 0.3 * step, 1, step, indices)
        part = [f[mine] for f in feats] if isinstance(feats, list) else feats[mine]
        loss, _ = forward(part, labels[mine], info)
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
    state = []
    if hasattr(method, "queue"):
        state = [method.queue.clone()]
    if hasattr(method, "center"):
        state = [method.center.clone(), *[p.detach().clone() for p in method.model.parameters()]]
    if getattr(method, "gate", None) is not None:
        method.end_epoch(0)  # the mixture of the epoch's global losses, on every rank
        gate = method.gate
        state += [gate.loss, gate.prediction, gate.seen, gate.labels, gate.threshold]
    if getattr(method, "ssps", None) is not None:
        state += [method.ssps.index.clone(), method.ssps.pos.clone(), method.ssps.centroids.clone()]
    return losses, grads, state


def worker(rank, world, port, name, out_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    # A bounded timeout: a stuck collective fails the test instead of hanging the suite.
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=90))
    try:
        method = make_method(name)
        ddp = distributed.data_parallel(method, torch.device("cpu"))  # as the trainer wraps
        result = run_steps(method, ddp, batches(name), rank, world)
        torch.save(result, f"{out_path}.{rank}")
        del ddp  # before the process group: see sslsv.train.trainer.Trainer.close
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    # dino_ssps: plain DINO at step 1 (an empty memory), sampling at step 2.
    "name",
    [
        "simclr",
        "moco",
        "classifier",
        "classifier_gated",
        "classifier_gmm",
        "dino_ssps",
        "moco_ssps",
    ],
)
def test_two_processes_equal_one(tmp_path, name):
    method = make_method(name)
    want_losses, want_grads, want_state = run_steps(method, method, batches(name))
    out = tmp_path / "result.pt"
    context = mp.spawn(worker, args=(2, free_port(), name, str(out)), nprocs=2, join=False)
    deadline = time.monotonic() + 180  # a hang fails the test rather than the whole run
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the two worker processes did not finish within 180 s")
    losses, grads, state = torch.load(f"{out}.0", weights_only=True)
    # Buffers (queues, memory, centre, batch-norm statistics) agree on both ranks without
    # DDP broadcasting them from rank 0 (broadcast_buffers=False).
    _, _, state_rank1 = torch.load(f"{out}.1", weights_only=True)
    for got, want in zip(state_rank1, state, strict=True):
        assert torch.equal(got, want)

    assert losses == pytest.approx(want_losses, rel=1e-5)
    for g, w in zip(grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)
    assert len(state) == len(want_state)
    for got, want in zip(state, want_state):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    if name.startswith("moco"):
        # After two steps of 8 keys in a queue of 20, slots 0-15 hold real keys.
        assert not torch.allclose(state[0][:, :16], make_method("moco").queue[:, :16])
    if name.endswith("ssps"):
        # The memory holds both steps' utterances, and k-means has run.
        assert sorted(state[-3][:16].tolist()) == list(range(8)) + list(range(100, 108))
        assert state[-1].shape[0] == 3


def test_global_batchnorm_keeps_frozen_copies_frozen():
    """MoCo's key encoder and DINO's teacher keep requires_grad False when their batch norm
    is converted (before, the conversion made their batch-norm weights trainable, which the
    optimizer then updated and DDP waited for gradients of)."""
    module = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).requires_grad_(False)
    converted = distributed.convert_to_global_batchnorm(module)
    assert not any(p.requires_grad for p in converted.parameters())


def compile_worker(rank, world, port, out_path):
    """Dynamo's view of an encoder with global batch norm, in a real process group."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=90))
    try:
        small = "encoder.args={channels: [4, 8], blocks: [1, 1], embed_dim: 16}"
        cfg = load_config(None, ["encoder.name=resnet", small])
        torch.manual_seed(0)
        model = distributed.convert_to_global_batchnorm(EmbeddingModel(cfg)).train()
        feats = torch.randn(4, 40, 50, generator=torch.Generator().manual_seed(rank))
        explained = torch._dynamo.explain(model.encoder)(feats)
        torch.save([explained.graph_count, explained.graph_break_count], f"{out_path}.{rank}")
    finally:
        dist.destroy_process_group()


def test_global_batchnorm_compiles_into_one_graph_across_processes(tmp_path):
    """torch.compile breaks its graph at every SyncBatchNorm; the trainer uses GlobalBatchNorm
    when it compiles on several processes: one graph, no break (Dynamo's explain)."""
    out = tmp_path / "explain.pt"
    mp.spawn(compile_worker, args=(2, free_port(), str(out)), nprocs=2)
    for rank in (0, 1):
        assert torch.load(f"{out}.{rank}", weights_only=True) == [1, 0]


def test_global_batchnorm_takes_bf16_statistics_in_float32():
    """Sums of bf16 activations in bf16 would lose all but 8 bits; in one process the
    module is plain batch norm, so compare its statistics code through a fake group."""
    bn = distributed.GlobalBatchNorm(3)
    x = torch.randn(64, 3, 10, generator=torch.Generator().manual_seed(0)) * 5 + 100
    reference = torch.nn.functional.batch_norm(x.double(), None, None, training=True)
    real = distributed.is_distributed
    distributed_fn = distributed.dist_fn.all_reduce
    try:
        distributed.is_distributed = lambda: True
        distributed.dist_fn.all_reduce = lambda t: t  # one process: the sum is its own
        y = bn(x.bfloat16())
    finally:
        distributed.is_distributed = real
        distributed.dist_fn.all_reduce = distributed_fn
    # Within bf16's rounding of the output (and of the input: 100 +- 5 keeps ~3 digits).
    torch.testing.assert_close(y.double(), reference, rtol=0, atol=0.1)
    assert y.dtype == torch.bfloat16
