"""Lloyd's k-means in torch, on the CPU or a GPU: the second stage's default back end.

The algorithm of scikit-learn's ``KMeans(algorithm="lloyd", n_init=1)``, which
:mod:`sslsv.cluster` also offers (``pseudo_label.kmeans_backend: sklearn``), on the
L2-normalised embeddings with euclidean distances (centroids are plain means, not
re-normalised):

- assignment: the nearest centroid by ``argmax_c (x . c - |c|^2 / 2)``, the same order as
  ``|x - c|^2``, from chunked products ``x @ C.T`` (full float32, see below), the lowest
  index among equals;
- update: each centroid the mean of its members, the sums accumulated in 64-bit fixed point
  (``index_add_`` of ``round(x * 2^s)``): integer sums do not depend on the order of the
  additions, so the same seed gives the same labels on every run and however the rows are
  split, which float atomics on a GPU would not (they add in the order the threads finish).
  CPU and GPU products round differently: their labels may differ at near-ties;
- an empty cluster is re-seeded, as scikit-learn does, at the point farthest from its
  centroid, which leaves its own cluster;
- stop when no label changed, or when the centroids moved less than scikit-learn's
  tolerance (``1e-4`` x the mean per-dimension variance of the data, summed squared shift),
  or after ``iters`` iterations; then one more assignment so that the labels belong to the
  final centroids. The only host read of an iteration is these tests (the changed labels,
  the empty clusters, the shift: one read, two after a re-seeding), against about a second
  of products per iteration at VoxCeleb2 size on an H100.

On the CPU each pass is split over host threads (as many as torch's intra-op threads), each
running its share of the rows on one intra-op thread: one join per pass, not one per
operation (:func:`single_cpu_thread` says why; 20,000 x 256 into 600 on shared cores: 0.62 s
an iteration on torch's two intra-op threads, 0.07 s so).

The start: greedy k-means++ (scikit-learn's: ``2 + ln K`` candidates a step, the one that
lowers the potential most kept) on a random subsample of ``2 K`` embeddings, as the
scikit-learn back end does (docs/clustering_bench.md measured that start: most of the
k-means++ gain over a random start, at a fraction of the cost of all points). On the device
without host reads: the random numbers (subsample, first centre, the candidates' uniforms)
are drawn up front from a CPU ``torch.Generator`` seeded by ``pseudo_label.seed``, so the
draws are the same on every device. Why not k-means||: its rounds over all N points only
gather candidates, which must then be reduced to K by the same K sequential weighted
k-means++ steps, over as many or more points; the subsample start keeps the measured
quality, and on a GPU its K steps (each a ``(2 + ln K) x D`` by ``D x 2K`` product) cost
about a second of arithmetic at VoxCeleb2 size plus the kernel launches.

TF32 is not used (the products run under :func:`sslsv.devices.full_precision`): its 10-bit
mantissa can move a score by up to about 1e-3, and an utterance whose two best centroids
are closer than that may change cluster. On the benchmark (docs/clustering_bench.md), 0.2%
of the utterances were that close and an emulated TF32 assignment changed none of 200,000
labels; VoxCeleb2 at K = 50,000 packs the centroids closer. The saving does not pay for the
doubt: full float32 Lloyd for VoxCeleb2 projects to about 25 s on an H100 and TF32 to
about 5 s, both far inside the 5-minute budget; and float32 keeps a GPU run's products
comparable with the CPU's.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from sslsv.devices import full_precision
from sslsv.errors import DataError

#: k-means++ picks the K starting centres among this many times K embeddings drawn at random.
INIT_SAMPLE_PER_CLUSTER = 2
#: Embedding rows per distance product on the CPU: 256 x K float32 scores stay near the
#: caches (measured at K = 6,000 x 256 dims on 2 cores, 2 host threads: 2.2 s a pass over
#: 200,000 rows at 256 rows a product, 2.6 s at 512).
CPU_CHUNK_ROWS = 256
#: On a GPU: rows such that a chunk's scores take about this many bytes (1 GiB).
GPU_CHUNK_BYTES = 1 << 30
#: scikit-learn's default relative tolerance on the centroids' shift.
TOLERANCE = 1e-4


@dataclass
class KMeansResult:
    labels: np.ndarray  # (N,) int64, in 0..K-1
    centroids: np.ndarray  # (K, D) float32, not normalised
    iterations: int
    seconds: float  # in all, the start included
    init_seconds: float  # k-means++ on the subsample


@contextlib.contextmanager
def single_cpu_thread(device: torch.device) -> Iterator[None]:
    """One intra-op thread inside, on the CPU: for sequences of thin steps (k-means++, the
    AHC chain), which a second thread does not speed up, and which on shared cores wait at
    every parallel region for a descheduled thread (measured on 2 busy cores: k-means++ of
    6,000 centres among 12,000 x 256, 5 s on one thread, 76 s on two; the AHC chain of
    10,000 centroids, 14 s and 107 s)."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def chunk_rows(k: int, device: torch.device) -> int:
    """Embedding rows per distance product (see :data:`CPU_CHUNK_ROWS`)."""
    if device.type == "cpu":
        return CPU_CHUNK_ROWS
    return max(256, GPU_CHUNK_BYTES // (4 * k))


@dataclass
class Draws:
    """Every random choice of a run, drawn up front on the CPU."""

    sample: torch.Tensor  # (m,) int64, increasing: the rows k-means++ chooses from
    first: int  # the first centre, an index into the sample
    uniforms: torch.Tensor  # (K - 1, trials) float64 in [0, 1): the candidates' draws


def draws(n: int, k: int, seed: int) -> Draws:
    g = torch.Generator().manual_seed(seed)
    m = min(n, INIT_SAMPLE_PER_CLUSTER * k)
    sample = torch.randperm(n, generator=g)[:m].sort().values
    trials = 2 + int(math.log(k))  # scikit-learn's number of local trials
    first = int(torch.randint(m, (1,), generator=g))
    uniforms = torch.rand(k - 1, trials, generator=g, dtype=torch.float64)
    return Draws(sample, first, uniforms)


def _squared_distances(a: torch.Tensor, b_t: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
    """``|a_i - b_j|^2`` for the rows of ``a`` and the columns of ``b_t`` (``b`` transposed,
    contiguous: a few rows by thousands of columns multiply 2.7x faster that way than by a
    transposed view, measured on 2 cores), ``b_sq``: ``|b_j|^2``."""
    out = torch.addmm(b_sq, a, b_t, alpha=-2.0)
    out += a.square().sum(1, keepdim=True)
    return out.clamp_(min=0.0)


def kmeans_plusplus(x: torch.Tensor, k: int, first: int, uniforms: torch.Tensor) -> torch.Tensor:
    """Greedy k-means++ over the rows of ``x``: the (K,) indices of the chosen rows, on
    ``x``'s device. Step c draws ``uniforms[c - 1]`` x the potential (the sum of the
    squared distances to the nearest chosen centre) as candidates, by inverse cumulative
    sums, and keeps the candidate whose potential is least, the first among equals."""
    m = len(x)
    x_sq = x.square().sum(1)
    x_t = x.T.contiguous()
    uniforms = uniforms.to(x.device)
    chosen = torch.empty(k, dtype=torch.int64, device=x.device)
    chosen[0] = first
    closest = _squared_distances(x[first : first + 1], x_t, x_sq)[0]
    potential = closest.sum(dtype=torch.float64)
    for c in range(1, k):
        cumulative = torch.cumsum(closest, 0, dtype=torch.float64)
        candidates = torch.searchsorted(cumulative, uniforms[c - 1] * potential)
        candidates.clamp_(max=m - 1)
        to_candidates = _squared_distances(x[candidates], x_t, x_sq)
        torch.minimum(to_candidates, closest, out=to_candidates)
        potentials = to_candidates.sum(1, dtype=torch.float64)
        best = torch.argmin(potentials)
        potential = potentials[best]
        closest = to_candidates[best]
        chosen[c] = candidates[best]
    return chosen


def fixed_point_scale(n: int) -> float:
    """``2^s`` such that the fixed-point sum of up to ``n`` values in [-1, 1] fits int64."""
    return 2.0 ** (62 - max(n, 1).bit_length())


@dataclass
class Pass:
    """One assignment pass over the data."""

    labels: torch.Tensor  # (N,) int64
    best: torch.Tensor  # (N,) x . c - |c|^2 / 2 of the assigned centroid
    sums: torch.Tensor | None = None  # (K, D) int64 fixed point
    counts: torch.Tensor | None = None  # (K,) int64


def assign(
    x: torch.Tensor,
    centroids: torch.Tensor,
    rows: int,
    scale: float | None = None,
    workers: int = 1,
) -> Pass:
    """Each row's nearest centroid; with ``scale``, the clusters' fixed-point sums and
    counts too, accumulated in the same pass over ``x``. ``workers`` host threads take a
    contiguous share of the rows each, with their own sums (integers: their total does not
    depend on the split)."""
    n = len(x)
    k = len(centroids)
    half = centroids.square().sum(1).mul_(-0.5)
    labels = torch.empty(n, dtype=torch.int64, device=x.device)
    best = torch.empty(n, dtype=x.dtype, device=x.device)

    def part(low: int, high: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        if scale is not None:
            sums = torch.zeros(k, x.shape[1], dtype=torch.int64, device=x.device)
            counts = torch.zeros(k, dtype=torch.int64, device=x.device)
            ones = torch.ones(rows, dtype=torch.int64, device=x.device)
        for begin in range(low, high, rows):
            end = min(begin + rows, high)
            chunk = x[begin:end]
            best[begin:end], labels[begin:end] = torch.addmm(half, chunk, centroids.T).max(1)
            if scale is not None:
                sums.index_add_(0, labels[begin:end], torch.round(chunk * scale).long())
                counts.index_add_(0, labels[begin:end], ones[: end - begin])
        return (sums, counts) if scale is not None else None

    bounds = [n * i // workers for i in range(workers + 1)]
    if workers == 1:
        parts = [part(0, n)]
    else:
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(part, bounds[:-1], bounds[1:]))
    out = Pass(labels, best)
    if scale is not None:
        out.sums, out.counts = parts[0]
        for sums, counts in parts[1:]:
            out.sums += sums
            out.counts += counts
    return out


def _reseed_empty(x: torch.Tensor, p: Pass, empty: torch.Tensor, x_sq: torch.Tensor, scale: float):
    """scikit-learn's relocation: the i-th empty cluster (by index) takes the i-th farthest
    point from its centroid, which leaves its own cluster's sums (its label is kept: the next
    assignment moves it)."""
    far = torch.topk(x_sq - 2 * p.best, len(empty)).indices
    fixed = torch.round(x[far] * scale).long()
    p.sums.index_add_(0, p.labels[far], -fixed)
    p.counts.index_add_(0, p.labels[far], -torch.ones_like(far))
    p.sums[empty] = fixed
    p.counts[empty] = 1


def _means(p: Pass, scale: float, old: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The clusters' means (an empty cluster keeps its old centroid) and the summed squared
    shift from ``old`` (float64, on the device)."""
    counts = p.counts.unsqueeze(1)
    new = torch.where(counts > 0, p.sums.double() / scale / counts.clamp(min=1), old)
    new = new.to(old.dtype)
    return new, (new.double() - old.double()).square().sum()


def tolerance(x: torch.Tensor, rows: int) -> float:
    """scikit-learn's absolute tolerance: :data:`TOLERANCE` x the mean variance per
    dimension (float64 sums, chunk by chunk: no float64 copy of ``x``)."""
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    squares = torch.zeros_like(total)
    for begin in range(0, len(x), rows):
        chunk = x[begin : begin + rows].double()
        total += chunk.sum(0)
        squares += chunk.square().sum(0)
    mean = total / len(x)
    return float((squares / len(x) - mean.square()).mean()) * TOLERANCE


def lloyd(
    x: torch.Tensor, centroids: torch.Tensor, iters: int, rows: int, workers: int = 1
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """At most ``iters`` Lloyd iterations from ``centroids`` (the module docstring says how),
    each pass over ``x`` shared by ``workers`` host threads; ``(labels, centroids,
    iterations)``."""
    scale = fixed_point_scale(len(x))
    tol = tolerance(x, rows)
    x_sq = x.square().sum(1)
    previous = torch.full((len(x),), -1, dtype=torch.int64, device=x.device)
    converged = False
    iterations = 0
    while iterations < iters:
        iterations += 1
        p = assign(x, centroids, rows, scale, workers)
        empty = p.counts == 0
        changed = torch.count_nonzero(p.labels != previous)
        new, shift = _means(p, scale, centroids)
        # The iteration's one read: its three tests together.
        n_empty, n_changed, shift = torch.stack((empty.sum(), changed, shift)).tolist()
        if n_empty:
            _reseed_empty(x, p, torch.nonzero(empty)[:, 0], x_sq, scale)
            new, shift = _means(p, scale, centroids)
            shift = float(shift)
        centroids, previous = new, p.labels
        if n_changed == 0:
            converged = True
            break
        if shift <= tol:
            break
    labels = previous if converged else assign(x, centroids, rows, workers=workers).labels
    return labels, centroids, iterations


def torch_kmeans(
    x: np.ndarray, k: int, iters: int, seed: int, device: torch.device | str = "cpu"
) -> KMeansResult:
    """k-means of the rows of ``x`` (N x D float32, already normalised) into ``k`` clusters
    on ``device``, started by k-means++ on a random subsample of ``2 k`` rows, all drawn
    with ``seed`` (the module docstring says how)."""
    if k > len(x):
        raise DataError(f"pseudo_label.kmeans_clusters {k} exceeds the {len(x)} utterances")
    device = torch.device(device)
    start = time.perf_counter()
    d = draws(len(x), k, seed)
    # On the CPU, one intra-op thread and the passes split over host threads instead: one
    # join per pass rather than one per operation (single_cpu_thread says why).
    workers = torch.get_num_threads() if device.type == "cpu" else 1
    with full_precision(device.type), torch.no_grad(), single_cpu_thread(device):
        data = torch.from_numpy(np.ascontiguousarray(x)).to(device)
        sample = data[d.sample.to(device)]
        init = sample[kmeans_plusplus(sample, k, d.first, d.uniforms)]
        del sample
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the start's time is its own
        init_seconds = time.perf_counter() - start
        rows = chunk_rows(k, device)
        labels, centroids, iterations = lloyd(data, init, iters, rows, workers)
        result = KMeansResult(
            labels.cpu().numpy(),
            centroids.float().cpu().numpy(),
            iterations,
            0.0,
            init_seconds,
        )
    result.seconds = time.perf_counter() - start
    return result
