"""The second stage's clustering: pseudo-speaker labels from the training set's embeddings.

k-means of the L2-normalised embeddings into ``kmeans_clusters``, then (optionally)
agglomerative merging of the k-means centroids, the JHU VoxSRC-21 / sslsv-authors recipe
(VoxCeleb2: k-means into 50,000, AHC to 7,500), then dense relabelling with the clusters
smaller than ``min_cluster_size`` left out (their utterances get no label). The settings are
the config's ``pseudo_label:`` section (:class:`sslsv.config.schema.PseudoLabelConfig`); the
device (``cpu``, ``cuda``) is the caller's (``python -m sslsv.bin.cluster --device``).

k-means, two back ends (``pseudo_label.kmeans_backend``) of one algorithm: Lloyd with
``max_iter = kmeans_iters``, started by greedy k-means++ over a random subsample of 2 K
embeddings, all seeded by ``pseudo_label.seed``:

- ``torch`` (the default): :mod:`sslsv.kmeans`, on the CPU or a GPU, deterministic by seed
  (fixed-point centroid sums). On the benchmark below, 2 shared CPU cores: 78 s against
  scikit-learn's 92 s (best of 3 each, docs/clustering_bench.md); on a GPU it is the way to
  VoxCeleb2's size (projected: k-means and merging in about a minute on one H100).
- ``sklearn``: scikit-learn's Lloyd (BLAS-chunked distances, OpenMP), ``n_init=1``, CPU only.

The algorithm was chosen by measurement, with scikit-learn (bench/bench_clustering.py and
docs/clustering_bench.md; 2 CPU cores shared with other work, so times vary by up to 2x
with the load):

- the benchmark, 200,000 x 256 of 6,000 speakers into K = 6,000: a random start (Forgy) and
  30 Lloyd iterations took 162 s on idle cores, NMI 0.976; the k-means++ start on 2 K adds
  about 25 s (NMI 0.979). k-means++ over all points would add about 4 minutes: it is K
  sequential steps, each a thin product over the points.
- the recipe's regime, over-clustering then merging (20,000 x 256 of 600 speakers, K = 2,400,
  average-linkage merging to 600): from a random start 1% of the utterances end in mixed
  clusters (k-means purity 0.990 to 0.991, NMI after merging 0.993 to 0.994); k-means++
  over all points 0.9993 / 0.9995, over a 2 K subsample 0.998 / 0.9987, over 4 K 0.999.
- MiniBatchKMeans (batch 8,192) on the benchmark: 39 s, but it stopped early at NMI 0.56
  with 73 empty clusters. Elkan's variant keeps N x K bounds (4.8 GB here, 220 GB for
  VoxCeleb2): not usable.

scikit-learn's k-means++ start runs on one BLAS thread and on a float64 copy of the
subsample: its steps are thin products, which BLAS threads slowed down 2x to 10x here, and
on float32 input scikit-learn upcasts the distances chunk by chunk (4x slower).

Reproducibility of the sklearn back end: the same seed gives the same labels with one or two
OpenMP threads. Each thread sums its fixed (static) share of the rows; the threads' sums are
then added in the order they finish, which with more than two threads can change the last
bit of a centroid and, rarely, a label near a boundary.

Merging: :func:`sslsv.ahc.linkage` (scipy's nearest-neighbour chain and its merges, on a
float32 condensed matrix: 4 bytes per pair, 4.66 GiB at K = 50,000 where scipy's float64
linkage needed about 18 GiB) over the re-normalised centroids, on the device, each
centroid counting once whatever its size (plain, unweighted centroid linkage, as scipy's;
AHC over the utterances themselves, N(N-1)/2 distances, is out of reach), on cosine
distances (``average``, ``complete``, ``single``) or on euclidean distances between the
unit-length centroids (``ward``, which needs them); then scipy's ``fcluster``.
``merge_to``: cut to that many clusters; ``merge_threshold``: cut at that cosine distance
(for ``ward``, at the ward height ``sqrt(2 x threshold)``, which is the height of two single
centroids that far apart).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sslsv.ahc import linkage as float32_linkage
from sslsv.config.schema import PseudoLabelConfig
from sslsv.errors import DataError
from sslsv.kmeans import INIT_SAMPLE_PER_CLUSTER, KMeansResult, torch_kmeans

log = logging.getLogger(__name__)

#: Lower edges of the cluster-size histogram's bins (the last bin has no upper edge).
HISTOGRAM_EDGES: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500)


def normalise(x: np.ndarray, copy: bool = True) -> np.ndarray:
    """``x`` (N x D) as float32 with unit-length rows: k-means on the sphere, i.e. by cosine
    similarity, which is how the embeddings are scored. A zero row is an error. A copy unless
    ``copy`` is false and ``x`` is float32 already (then ``x`` itself is normalised)."""
    x = np.array(x, dtype=np.float32, copy=True) if copy else np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or not len(x):
        raise DataError(f"expected a non-empty N x D matrix of embeddings, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1)
    zero = np.flatnonzero(norms == 0)
    if len(zero):
        raise DataError(f"{len(zero)} all-zero embedding(s), e.g. row {zero[0]}")
    x /= norms[:, None]
    return x


def kmeans(
    x: np.ndarray,
    k: int,
    iters: int,
    seed: int,
    backend: str = "torch",
    device: torch.device | str = "cpu",
) -> KMeansResult:
    """Lloyd's k-means of the rows of ``x`` (already normalised) into ``k`` clusters, started
    by k-means++ on a random subsample of ``2 k`` rows, all drawn with ``seed``, by the
    ``backend`` (``torch`` on ``device``, or ``sklearn`` on the CPU; the module docstring
    says why)."""
    if backend == "torch":
        return torch_kmeans(x, k, iters, seed, device)
    if backend != "sklearn":
        raise ValueError(f"k-means back end {backend!r}: not torch or sklearn")
    return sklearn_kmeans(x, k, iters, seed)


def sklearn_kmeans(x: np.ndarray, k: int, iters: int, seed: int) -> KMeansResult:
    """scikit-learn's Lloyd k-means, started by its k-means++ on the subsample."""
    from sklearn.cluster import KMeans, kmeans_plusplus  # seconds: only for this stage
    from threadpoolctl import threadpool_limits

    if k > len(x):
        raise DataError(f"pseudo_label.kmeans_clusters {k} exceeds the {len(x)} utterances")
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    m = min(len(x), INIT_SAMPLE_PER_CLUSTER * k)
    sample = np.sort(rng.choice(len(x), m, replace=False))
    # float64: sklearn's k-means++ upcasts float32 distances chunk by chunk, 4x slower. One
    # BLAS thread: its K steps are thin products that threads slow down (2x to 10x, measured).
    with threadpool_limits(limits=1, user_api="blas"):
        init, _ = kmeans_plusplus(x[sample].astype(np.float64), k, random_state=seed)
    init_seconds = time.perf_counter() - start
    km = KMeans(
        n_clusters=k,
        init=init.astype(x.dtype),
        n_init=1,
        max_iter=iters,
        algorithm="lloyd",
        random_state=seed,
        copy_x=False,  # x is the caller's normalised copy: no second copy of it
    )
    labels = km.fit_predict(x).astype(np.int64)
    centroids = km.cluster_centers_.astype(np.float32)
    seconds = time.perf_counter() - start
    return KMeansResult(labels, centroids, int(km.n_iter_), seconds, init_seconds)


def merge_clusters(
    centroids: np.ndarray,
    merge_to: int = 0,
    threshold: float = 0.0,
    linkage: str = "average",
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Agglomerative clustering of the centroids on ``device``: ``(K,)`` merged label
    (0-based) of each.

    ``merge_to`` > 0: at most that many clusters; else ``threshold`` > 0: merge up to that
    cosine distance. Both 0: every centroid is its own cluster."""
    from scipy.cluster.hierarchy import fcluster

    k = len(centroids)
    if merge_to and threshold:
        raise ValueError("give merge_to or threshold, not both")
    if (not merge_to and not threshold) or k < 2:
        return np.arange(k, dtype=np.int64)
    c = torch.from_numpy(normalise(centroids)).to(device)
    z = float32_linkage(c, linkage)
    del c
    if merge_to:
        flat = fcluster(z, t=merge_to, criterion="maxclust")
    else:
        cut = float(np.sqrt(2.0 * threshold)) if linkage == "ward" else threshold
        flat = fcluster(z, t=cut, criterion="distance")
    return flat.astype(np.int64) - 1


def relabel(labels: np.ndarray, min_size: int = 1) -> np.ndarray:
    """Dense cluster ids 0, 1, ... ordered by size, largest first, ties by first member
    (lowest row), so that the same partition always gets the same ids; rows of clusters
    smaller than ``min_size`` get -1."""
    labels = np.asarray(labels, dtype=np.int64)
    values, first, inverse, sizes = np.unique(
        labels, return_index=True, return_inverse=True, return_counts=True
    )
    order = np.lexsort((first, -sizes))  # last key first: size descending, then first row
    kept = order[sizes[order] >= min_size]
    new_id = np.full(len(values), -1, dtype=np.int64)
    new_id[kept] = np.arange(len(kept))
    return new_id[inverse.reshape(-1)]


@dataclass
class Clustering:
    """The result of :func:`cluster_embeddings`."""

    labels: np.ndarray  # (N,) int64 dense pseudo-speaker ids, -1: left out
    kmeans_labels: np.ndarray  # (N,) the k-means clusters
    merged_labels: np.ndarray  # (N,) after merging, before leaving small clusters out
    kmeans_clusters: int  # non-empty k-means clusters
    merged_clusters: int
    iterations: int
    kmeans_seconds: float  # the k-means++ start included
    init_seconds: float
    merge_seconds: float

    @property
    def clusters(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    @property
    def kept(self) -> int:
        return int(np.count_nonzero(self.labels >= 0))


def cluster_embeddings(
    x: np.ndarray,
    cfg: PseudoLabelConfig,
    copy: bool = True,
    device: torch.device | str = "cpu",
) -> Clustering:
    """k-means, merging and relabelling of the embeddings ``x`` (N x D) per ``cfg``, the
    torch parts (k-means with ``kmeans_backend: torch``, and the merging) on ``device``.

    ``copy=False``: ``x`` (float32) is normalised in place, no second copy of it (1.1 M x 512
    embeddings are 2.1 GiB)."""
    x = normalise(x, copy)
    k, backend = cfg.kmeans_clusters, cfg.kmeans_backend
    km = kmeans(x, k, cfg.kmeans_iters, cfg.seed, backend, device)
    del x
    log.info(
        "k-means (%s on %s): %d clusters, %d iterations, %.1f s (k-means++ start: %.1f s)",
        backend,
        device if backend == "torch" else "cpu",
        k,
        km.iterations,
        km.seconds,
        km.init_seconds,
    )
    start = time.perf_counter()
    used = np.unique(km.labels)  # Lloyd relocates empty clusters; duplicates can leave some
    merged_of = merge_clusters(
        km.centroids[used], cfg.merge_to, cfg.merge_threshold, cfg.linkage, device
    )
    to_used = np.full(len(km.centroids), -1, dtype=np.int64)
    to_used[used] = np.arange(len(used))
    merged = merged_of[to_used[km.labels]]
    merge_seconds = time.perf_counter() - start
    n_merged = len(np.unique(merged))
    if n_merged != len(used):
        log.info(
            "merging (%s linkage): %d -> %d clusters, %.1f s",
            cfg.linkage,
            len(used),
            n_merged,
            merge_seconds,
        )
    return Clustering(
        labels=relabel(merged, cfg.min_cluster_size),
        kmeans_labels=km.labels,
        merged_labels=relabel(merged),
        kmeans_clusters=len(used),
        merged_clusters=n_merged,
        iterations=km.iterations,
        kmeans_seconds=km.seconds,
        init_seconds=km.init_seconds,
        merge_seconds=merge_seconds,
    )


# ----------------------------------------------------------------------------- quality


def _codes(labels: Sequence) -> np.ndarray:
    return np.unique(np.asarray(labels), return_inverse=True)[1].reshape(-1)


def _best_overlap(rows: np.ndarray, cols: np.ndarray) -> int:
    """Sum over the values of ``rows`` of their largest overlap with one value of ``cols``."""
    n_cols = int(cols.max()) + 1
    pairs, counts = np.unique(rows * n_cols + cols, return_counts=True)
    best = np.zeros(int(rows.max()) + 1, dtype=np.int64)
    np.maximum.at(best, pairs // n_cols, counts)
    return int(best.sum())


def purity(true: Sequence, pred: Sequence) -> float:
    """Share of the utterances that carry their cluster's most common true label: 1 when no
    cluster mixes speakers (however much a speaker is split)."""
    t, p = _codes(true), _codes(pred)
    return _best_overlap(p, t) / len(t) if len(t) else float("nan")


def inverse_purity(true: Sequence, pred: Sequence) -> float:
    """Share of the utterances in their speaker's most common cluster: 1 when no speaker is
    split (however much clusters mix speakers)."""
    return purity(pred, true)


def quality(true: Sequence, pred: Sequence) -> dict[str, float | int]:
    """NMI, ARI, purity and inverse purity of ``pred`` against ``true``, with the numbers of
    speakers and clusters; for statistics only (the labels never reach the training)."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    t, p = _codes(true), _codes(pred)
    return {
        "utterances": len(t),
        "speakers": int(t.max()) + 1 if len(t) else 0,
        "clusters": int(p.max()) + 1 if len(p) else 0,
        "nmi": float(normalized_mutual_info_score(t, p)),
        "ari": float(adjusted_rand_score(t, p)),
        "purity": purity(t, p),
        "inverse_purity": inverse_purity(t, p),
    }


def size_histogram(labels: np.ndarray) -> list[dict[str, int | str]]:
    """Clusters by size: per bin of :data:`HISTOGRAM_EDGES` (``"1"``, ``"2-4"``, ...,
    ``"500+"``), the number of clusters and of their utterances; rows labelled -1 ignored."""
    labels = np.asarray(labels)
    sizes = np.bincount(labels[labels >= 0]) if np.any(labels >= 0) else np.zeros(0, int)
    sizes = sizes[sizes > 0]
    rows: list[dict[str, int | str]] = []
    for low, high in zip(HISTOGRAM_EDGES, (*HISTOGRAM_EDGES[1:], None)):
        inside = sizes >= low if high is None else (sizes >= low) & (sizes < high)
        if high is None:
            name = f"{low}+"
        else:
            name = str(low) if high == low + 1 else f"{low}-{high - 1}"
        rows.append(
            {"sizes": name, "clusters": int(inside.sum()), "utterances": int(sizes[inside].sum())}
        )
    return rows
