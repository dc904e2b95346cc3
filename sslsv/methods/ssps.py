"""Self-supervised positive sampling (SSPS; Lepage and Dehak, 2025): the positive of an
anchor is, once sampling has started, another utterance that falls in the anchor's cluster
of recent reference embeddings, instead of a second crop of the same recording (which
shares its channel and session with the anchor).

A memory (queue) of the last ``queue_size`` training utterances holds, per slot, the
utterance's training-set index, its L2-normalised reference embedding (what clustering and
assignment use: an encoder embedding) and its positive embedding (what the loss uses in
place of the anchor's own positive: a projection, a key or a teacher embedding). At the
first step of every epoch from ``start`` (a share of training) on, spherical k-means of
the memory's reference embeddings into ``clusters`` refreshes the centroids; slots written
later are assigned to the nearest centroid when they arrive. Each anchor then takes its
nearest centroid's cluster and draws a slot of it uniformly, never one of its own
utterance; with none after ``draws`` tries the anchor keeps its ordinary positive.

Differences from the authors' code (``sslsv/methods/_SSPS``), and why:

- one memory of recent utterances (size set by ``queue_size``), used both for k-means and
  for the positives, instead of a memory of the whole training set for k-means beside a
  queue for the positives: it needs no dataset size at construction, and with
  ``queue_size`` at least the training set's size it is the whole set, as theirs;
- an anchor's cluster is that of its current reference embedding, not the one k-means gave
  its index at the epoch's start;
- the anchor's own utterance is never its pseudo-positive (the authors' sampling may return
  it).

Under DDP every process holds the same memory (the global batch's entries are gathered),
k-means runs on rank 0 and its centroids and assignments are broadcast, and the draws are
made for the global batch from a generator seeded by (seed, global step), each process
taking its rows: two processes sample what one would.

k-means is a few lines of torch here rather than scikit-learn (:mod:`sslsv.cluster`) because
it runs on the training device every epoch (a million embeddings into 50,000 clusters is
seconds on a GPU, tens of minutes with scikit-learn on a CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sslsv import distributed
from sslsv.config.schema import checked
from sslsv.devices import upload

#: Rows of the memory scored against the centroids at once in k-means (bounds memory).
KMEANS_CHUNK = 8192


@dataclass
class SSPSConfig:
    """``method.ssps`` of simclr, moco and dino: positives drawn from the anchor's k-means
    cluster of a memory of recent utterances. Off by default (the paper's rows)."""

    enabled: bool = False
    start: float = checked(0.5, minimum=0, maximum=1)  # share of training before sampling
    queue_size: int = checked(50000, minimum=2)  # utterances remembered
    clusters: int = checked(2500, minimum=1)  # k-means clusters of the memory
    kmeans_iters: int = checked(10, minimum=1)
    draws: int = checked(8, minimum=1)  # tries at a slot of another utterance


def spherical_kmeans(
    x: torch.Tensor, k: int, iters: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means of unit vectors ``x`` (N, D) by cosine similarity: returns (centroids (k, D),
    unit length; assignments (N,)). Started at ``k`` distinct rows drawn by ``generator``
    (a CPU generator); a cluster that empties keeps its previous centroid."""
    n = x.shape[0]
    k = min(k, n)
    start = upload(torch.randperm(n, generator=generator)[:k], x.device)
    centroids = x[start].clone()
    assign = _nearest(x, centroids)
    for _ in range(iters):
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = _counts(assign, k)
        centroids = torch.where(counts[:, None] > 0, F.normalize(sums, dim=1), centroids)
        assign = _nearest(x, centroids)
    return centroids, assign


def _counts(labels: torch.Tensor, size: int) -> torch.Tensor:
    """How many of ``labels`` (values in [0, size)) equal each value: ``torch.bincount``
    without its host read (on CUDA it reads the input's min and max to size its output)."""
    ones = torch.ones_like(labels)
    return torch.zeros(size, dtype=labels.dtype, device=labels.device).index_add_(0, labels, ones)


def _nearest(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    return torch.cat([(chunk @ centroids.T).argmax(dim=1) for chunk in x.split(KMEANS_CHUNK)])


class PositiveSampler(nn.Module):
    """The memory and the sampling; its state is in buffers, so checkpoints keep it and a
    resumed run samples what an uninterrupted one does."""

    def __init__(self, cfg: SSPSConfig, ref_dim: int, pos_dim: int, seed: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.seed = seed
        size = cfg.queue_size
        self.register_buffer("index", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ref", torch.zeros(size, ref_dim))
        self.register_buffer("pos", torch.zeros(size, pos_dim))
        self.register_buffer("assign", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("centroids", torch.zeros(0, ref_dim))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        # The epoch whose first sampling step refreshed the centroids (-1: never), and its
        # host copy (reading the buffer at every step would make the host wait for a GPU).
        self.register_buffer("clustered_epoch", torch.full((), -1, dtype=torch.long))
        self._clustered: int | None = None
        # How many slots are filled, on the host: slots fill in order from 0 (the pointer
        # wraps only once all are), so they are [0, filled). None: to be read once (after
        # loading a checkpoint) from the buffers.
        self._filled: int | None = 0

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # The centroids' count is known only once k-means has run.
        key = prefix + "centroids"
        if key in state_dict:
            self.centroids = torch.empty_like(state_dict[key], device=self.centroids.device)
        self._clustered = None
        self._filled = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def active(self, progress: float) -> bool:
        return self.cfg.enabled and progress >= self.cfg.start

    @torch.no_grad()
    def sample(
        self, indices: torch.Tensor, ref: torch.Tensor, epoch: int, global_step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pseudo-positives of this process's anchors: (positive embeddings (B, pos_dim),
        found (B,) bool). ``indices``: the anchors' training-set indices; ``ref``: their
        reference embeddings (B, ref_dim). Rows not found keep the anchor's own positive."""
        if self._clustered is None:  # read once (after a resume), not at every step
            self._clustered = int(self.clustered_epoch)
        if self._clustered != epoch or not self.centroids.shape[0]:
            self._refresh(epoch)
        local = indices.shape[0]
        all_indices = distributed.gather_no_grad(indices)
        all_ref = distributed.gather_no_grad(F.normalize(ref.to(self.ref.dtype), dim=1))
        found = torch.zeros(all_indices.shape[0], dtype=torch.bool, device=indices.device)
        slot = torch.zeros_like(all_indices)
        filled = self.index >= 0
        if self.centroids.shape[0]:
            cluster = _nearest(all_ref, self.centroids)
            # Slots grouped by cluster: cluster c owns order[first[c] : first[c] + count[c]].
            assign = torch.where(filled & (self.assign >= 0), self.assign, self.centroids.shape[0])
            order = torch.argsort(assign, stable=True)
            count = _counts(assign, self.centroids.shape[0] + 1)
            first = torch.cumsum(count, 0) - count
            generator = torch.Generator().manual_seed(
                (self.seed * 1_000_003 + global_step) % (2**63 - 1)
            )
            u = upload(torch.rand(all_indices.shape[0], self.cfg.draws, generator=generator),
                       indices.device)  # fmt: skip
            n = count[cluster]
            pick = first[cluster][:, None] + (u * n[:, None]).long()
            candidates = order[pick.clamp_max(order.shape[0] - 1)]
            ok = (n[:, None] > 0) & (self.index[candidates] != all_indices[:, None])
            found = ok.any(dim=1)
            slot = candidates.gather(1, ok.float().argmax(dim=1, keepdim=True))[:, 0]
        mine = slice(distributed.rank() * local, (distributed.rank() + 1) * local)
        return self.pos[slot[mine]].clone(), found[mine]

    @torch.no_grad()
    def enqueue(self, indices: torch.Tensor, ref: torch.Tensor, pos: torch.Tensor) -> None:
        """Write the global batch's entries (gathered from every process) into the memory."""
        indices = distributed.gather_no_grad(indices)
        ref = F.normalize(distributed.gather_no_grad(ref.to(self.ref.dtype)), dim=1)
        pos = distributed.gather_no_grad(pos.to(self.pos.dtype))
        size = self.index.shape[0]
        slots = (self.ptr + torch.arange(indices.shape[0], device=indices.device)) % size
        self.index[slots] = indices
        self.ref[slots] = ref
        self.pos[slots] = pos
        if self.centroids.shape[0]:
            self.assign[slots] = _nearest(ref, self.centroids)
        self.ptr.copy_((self.ptr + indices.shape[0]) % size)
        if self._filled is not None:
            self._filled = min(size, self._filled + indices.shape[0])

    def _refresh(self, epoch: int) -> None:
        if self._filled is None:  # once after loading a checkpoint
            self._filled = int((self.index >= 0).sum())
        filled = self._filled
        if filled >= 2:
            centroids = self.ref.new_zeros(min(self.cfg.clusters, filled), self.ref.shape[1])
            if distributed.rank() == 0:
                generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                centroids, _ = spherical_kmeans(
                    self.ref[:filled], self.cfg.clusters, self.cfg.kmeans_iters, generator
                )
            distributed.broadcast_(centroids)
            self.centroids = centroids
            self.assign.fill_(-1)
            self.assign[:filled] = _nearest(self.ref[:filled], centroids)
        self.clustered_epoch.fill_(epoch)
        self._clustered = epoch
