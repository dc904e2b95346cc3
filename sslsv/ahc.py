"""Agglomerative clustering (AHC) of the k-means centroids in float32, on the CPU or a GPU.

scipy's :func:`~scipy.cluster.hierarchy.linkage` wants the condensed distance matrix in
float64 and copies it: 2 x 8 bytes x K(K-1)/2, about 18.6 GiB at K = 50,000 (VoxCeleb2).
Here the same matrix is float32 (4 bytes a pair: 4.66 GiB at K = 50,000) and the
nearest-neighbour chain runs on it in place, with the Lance-Williams updates of scipy's
``nn_chain`` (average, complete, single, ward: all reducible, so the chain gives the same
dendrogram as merging the closest pair each time). Why the full matrix rather than a k-NN
graph of the centroids: a graph drops the pairs outside it, so average and complete linkage
would merge other clusters than scipy's; a chunked chain that recomputes distances from the
centroids instead of storing them exists only for average and ward linkage (through the
clusters' sums), and reads all K x D centroids per step, 3K times (100 MB a step at 50,000 x
512): slower than the stored matrix on a CPU. The float32 distances differ from scipy's
float64 ones by about 1e-7, which can reorder merges only between distances that close.

The matrix is row-major over the pairs i < j (scipy's condensed order). The chain reads a
cluster's distances to the active clusters: those to higher slots are one contiguous run,
those to lower slots a strided gather. The product that fills the matrix runs in full
float32 (no TF32): the distances decide the merges. Measured (bench/bench_clustering.py,
2 shared CPU cores): 50,000 centroids x 256 merged to 7,500 in 143 to 157 s, with a peak of
4.77 GiB above the centroids; about 140,000 chain queries, each a few small kernels and
one host read on a GPU.
"""

from __future__ import annotations

import numpy as np
import torch

from sslsv.devices import full_precision
from sslsv.kmeans import single_cpu_thread

#: Rows of the centroid matrix whose distances are filled per matrix product.
FILL_ROWS = 1024

LINKAGES = ("average", "complete", "single", "ward")


def condensed_distances(c: torch.Tensor, ward: bool = False, rows: int = FILL_ROWS) -> torch.Tensor:
    """Distances between the unit rows of ``c`` (K x D), i < j, in scipy's condensed order,
    float32 on ``c``'s device: cosine ``1 - c_i . c_j`` in [0, 2], or with ``ward`` the
    euclidean ``|c_i - c_j| = sqrt(2 - 2 c_i . c_j)``. Filled ``rows`` rows at a time, so
    the only large array is the result."""
    k = len(c)
    out = torch.empty(k * (k - 1) // 2, dtype=torch.float32, device=c.device)
    pos = 0
    with full_precision(c.device.type):
        for begin in range(0, k - 1, rows):
            end = min(begin + rows, k)
            sim = c[begin:end] @ c[begin:].T  # the rows right of the diagonal and beyond
            for i in range(end - begin):  # a copy a row: no mask, no index arrays
                row = sim[i, i + 1 :]
                out[pos : pos + len(row)] = row
                pos += len(row)
    if ward:
        out.mul_(-2.0).add_(2.0).clamp_(min=0.0).sqrt_()
    else:
        out.neg_().add_(1.0).clamp_(0.0, 2.0)
    return out


def _lance_williams(
    method: str, dx: torch.Tensor, dy: torch.Tensor, dxy: float, nx: int, ny: int, ni: torch.Tensor
) -> torch.Tensor:
    """The distance from the union of x and y to each cluster i (scipy's formulas)."""
    if method == "average":
        return (nx * dx + ny * dy) / (nx + ny)
    if method == "complete":
        return torch.maximum(dx, dy)
    if method == "single":
        return torch.minimum(dx, dy)
    # ward
    t = ((ni + nx) * dx.square() + (ni + ny) * dy.square() - ni * (dxy * dxy)) / (ni + nx + ny)
    return t.clamp_(min=0.0).sqrt_()


class _Chain:
    """The condensed matrix and the active clusters of the nearest-neighbour chain. The
    bookkeeping (active slots, sizes) is mirrored on the host, so that a step reads one
    number pair back from a GPU, not one per index."""

    def __init__(self, d: torch.Tensor, k: int) -> None:
        self.d, self.k = d, k
        self.slots = np.arange(k)  # the active clusters' slots, increasing (host)
        self.active = torch.arange(k, dtype=torch.int64, device=d.device)  # the same
        # the pair (j, x), j < x, is at col_base[j] + x: kept for the active slots only
        self.col_base = self.active * k - self.active * (self.active + 1) // 2 - self.active - 1
        self.sizes = np.ones(k, dtype=np.int64)
        self.size = torch.ones(k, dtype=torch.float32, device=d.device)  # for ward's updates

    def _row_start(self, i: int) -> int:
        """Position of the pair (i, i + 1)."""
        return i * self.k - i * (i + 1) // 2

    def positions(self, x: int, slots: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """Positions of the pairs (x, s) for the ``slots`` s != x (``base``: their
        ``col_base``)."""
        above = slots + (self._row_start(x) - x - 1)
        return torch.where(slots < x, base + x, above)

    def pair(self, x: int, y: int) -> float:
        i, j = min(x, y), max(x, y)
        return float(self.d[self._row_start(i) + j - i - 1])

    def nearest(self, x: int) -> tuple[int, float]:
        """The active cluster nearest to ``x`` (the lowest slot among equals) and its
        distance."""
        slots, base = self.active, self.col_base
        mine = slots == x
        values = self.d[self.positions(x, slots, base).masked_fill_(mine, 0)]
        values.masked_fill_(mine, float("inf"))
        j = torch.argmin(values)
        index, value = torch.stack((j.double(), values[j].double())).tolist()  # one read
        return int(self.slots[int(index)]), value

    def _without(self, slot: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The active slots and their col_base without ``slot``: cut by its position, which
        the host knows (a boolean mask would read its count back from a GPU)."""
        at = int(np.searchsorted(self.slots, slot))
        return tuple(torch.cat((t[:at], t[at + 1 :])) for t in (self.active, self.col_base))

    def merge(self, method: str, x: int, y: int, dxy: float) -> None:
        """Merge x into y (x < y): y's distances updated, x left out."""
        self.active, self.col_base = self._without(x)
        self.slots = np.delete(self.slots, np.searchsorted(self.slots, x))
        slots, base = self._without(y)
        at_x = self.positions(x, slots, base)
        at_y = self.positions(y, slots, base)
        nx, ny = int(self.sizes[x]), int(self.sizes[y])
        self.d[at_y] = _lance_williams(
            method, self.d[at_x], self.d[at_y], dxy, nx, ny, self.size[slots]
        )
        self.sizes[y], self.sizes[x] = nx + ny, 0
        self.size[y], self.size[x] = nx + ny, 0


def nn_chain(d: torch.Tensor, k: int, method: str) -> np.ndarray:
    """scipy's linkage matrix Z ((K - 1) x 4, float64) of the condensed distances ``d`` of
    K points (float32, overwritten): scipy's nearest-neighbour chain (its tie rules
    included), then its sorting of the merges by height and its cluster numbering."""
    if method not in LINKAGES:
        raise ValueError(f"linkage {method!r}: not one of {', '.join(LINKAGES)}")
    with single_cpu_thread(d.device):
        merges = _merges(d, k, method)
    return _label(merges[np.argsort(merges[:, 2], kind="stable")], k)


def _merges(d: torch.Tensor, k: int, method: str) -> np.ndarray:
    """The chain's merges (x, y, height, size) in the order it finds them."""
    chain = _Chain(d, k)
    merges = np.empty((k - 1, 4))
    stack: list[int] = []
    for step in range(k - 1):
        if not stack:
            stack.append(int(chain.slots[0]))
        while True:
            x = stack[-1]
            y, dist = chain.nearest(x)
            if len(stack) > 1:
                previous = stack[-2]
                # scipy prefers the previous element of the chain among equals: no cycles
                to_previous = chain.pair(x, previous)
                if to_previous <= dist:
                    y, dist = previous, to_previous
                if y == previous:
                    break
            stack.append(y)
        del stack[-2:]
        x, y = min(x, y), max(x, y)
        merges[step] = (x, y, dist, chain.sizes[x] + chain.sizes[y])
        chain.merge(method, x, y, dist)
    return merges


def _label(z: np.ndarray, k: int) -> np.ndarray:
    """scipy's numbering of sorted merges: the union of clusters a and b at step s is
    cluster k + s; each row names the two clusters it joins, the lower first."""
    parent = np.arange(2 * k - 1)
    size = np.ones(2 * k - 1, dtype=np.int64)

    def find(a: int) -> int:
        root = a
        while parent[root] != root:
            root = parent[root]
        while parent[a] != root:  # path compression
            parent[a], a = root, parent[a]
        return root

    for s in range(k - 1):
        a, b = find(int(z[s, 0])), find(int(z[s, 1]))
        z[s, 0], z[s, 1] = min(a, b), max(a, b)
        parent[a] = parent[b] = k + s
        size[k + s] = size[a] + size[b]
        z[s, 3] = size[k + s]
    return z


def linkage(c: torch.Tensor, method: str = "average") -> np.ndarray:
    """scipy's linkage matrix of the unit rows of ``c`` (K x D) on ``c``'s device: cosine
    distances, or for ``ward`` euclidean distances between the unit rows. Memory: 4 bytes
    per pair (K(K-1)/2 float32) plus a fill block of :data:`FILL_ROWS` x K."""
    k = len(c)
    d = condensed_distances(c, ward=method == "ward")
    return nn_chain(d, k, method)
