"""Self-supervised positive sampling (sslsv.methods.ssps) on synthetic clustered embeddings:
positives come from the anchor's cluster, never from the anchor's own utterance; k-means
reaches its fixed point; the memory wraps; the methods use the sampled positives."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from sslsv.config.load import load_config
from sslsv.losses import nt_xent_am
from sslsv.methods import StepInfo, build_method
from sslsv.methods.ssps import PositiveSampler, SSPSConfig, spherical_kmeans
from sslsv.models.embedding import EmbeddingModel

CLUSTERS, PER_CLUSTER, DIM = 5, 12, 16


def clustered(seed: int, noise: float = 0.05):
    """(indices, embeddings, cluster of each): PER_CLUSTER utterances around each of
    CLUSTERS orthogonal directions."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(DIM)[:CLUSTERS]
    labels = torch.arange(CLUSTERS).repeat_interleave(PER_CLUSTER)
    x = F.normalize(centres[labels] + noise * torch.randn(len(labels), DIM, generator=g), dim=1)
    return torch.arange(len(labels)), x, labels


def filled_sampler(**cfg) -> tuple[PositiveSampler, torch.Tensor]:
    settings = {"enabled": True, "start": 0.0, "queue_size": 200, "clusters": CLUSTERS}
    sampler = PositiveSampler(SSPSConfig(**(settings | cfg)), DIM, 1, seed=0)
    indices, x, labels = clustered(0)
    # The positive embedding of a slot is its utterance index: a sample says whose it is.
    sampler.enqueue(indices, x, indices[:, None].float())
    return sampler, labels


def test_spherical_kmeans_reaches_its_fixed_point_and_finds_the_clusters():
    _, x, labels = clustered(1, noise=0.2)
    centroids, assign = spherical_kmeans(x, CLUSTERS, 20, torch.Generator().manual_seed(0))
    # Definition: every point at its most similar centroid, every centroid its cluster's
    # normalised mean.
    assert torch.equal(assign, (x @ centroids.T).argmax(dim=1))
    for c in range(CLUSTERS):
        torch.testing.assert_close(centroids[c], F.normalize(x[assign == c].mean(0), dim=0))
    # Well separated clusters: the partition is the true one (up to names).
    pairs = set(zip(labels.tolist(), assign.tolist()))
    assert len(pairs) == CLUSTERS and len({c for _, c in pairs}) == CLUSTERS


def test_sampled_positives_share_the_anchor_cluster_and_are_never_the_anchor():
    sampler, labels = filled_sampler()
    anchors, x, _ = clustered(7)  # the same utterances, new noisy embeddings
    seen = set()
    for step in range(20):
        pos, found = sampler.sample(anchors, x, epoch=0, global_step=step)
        assert bool(found.all())
        picked = pos[:, 0].long()
        assert bool((labels[picked] == labels[anchors]).all())
        assert bool((picked != anchors).all())
        seen.update(zip(anchors.tolist(), picked.tolist()))
    # Uniform over the cluster: over 20 steps an anchor gets several of its 11 neighbours.
    assert len(seen) > 4 * len(anchors)


def test_an_anchor_alone_in_its_cluster_keeps_its_own_positive():
    sampler = PositiveSampler(
        SSPSConfig(enabled=True, start=0.0, queue_size=50, clusters=2), DIM, 1, seed=0
    )
    lone = F.normalize(torch.eye(DIM)[:1], dim=1)
    crowd = F.normalize(torch.eye(DIM)[1:2] + 0.01 * torch.randn(6, DIM), dim=1)
    # Utterance 0 three times (three epochs' worth) in its own cluster, 1-6 in another.
    sampler.enqueue(torch.tensor([0, 0, 0, 1, 2, 3, 4, 5, 6]), torch.cat([lone] * 3 + [crowd]),
                    torch.arange(9)[:, None].float())  # fmt: skip
    pos, found = sampler.sample(torch.tensor([0, 1]), torch.cat([lone, crowd[:1]]), 0, 0)
    assert found.tolist() == [False, True]
    assert int(pos[1, 0]) >= 4  # slots 4-8 hold utterances 2-6 (not 1, the anchor)


def test_sampling_waits_for_its_start_and_the_memory_wraps():
    cfg = SSPSConfig(enabled=True, start=0.4, queue_size=5, clusters=2)
    sampler = PositiveSampler(cfg, DIM, 1, seed=0)
    assert not sampler.active(0.39) and sampler.active(0.4)
    for first in (0, 3, 6):
        sampler.enqueue(torch.arange(first, first + 3), torch.randn(3, DIM), torch.zeros(3, 1))
    # 9 entries through 5 slots: the last five (4-8) remain, the oldest overwritten.
    assert sorted(sampler.index.tolist()) == [4, 5, 6, 7, 8]


def test_k_means_refreshes_once_per_epoch_and_new_slots_are_assigned():
    sampler, _ = filled_sampler()
    anchors, x, _ = clustered(3)
    sampler.sample(anchors[:4], x[:4], epoch=2, global_step=0)
    centroids = sampler.centroids.clone()
    sampler.enqueue(anchors[:4] + 100, x[:4], torch.zeros(4, 1))
    assert bool((sampler.assign[sampler.index >= 100] >= 0).all())
    sampler.sample(anchors[:4], x[:4], epoch=2, global_step=1)
    assert torch.equal(sampler.centroids, centroids)  # same epoch: same centroids
    assert int(sampler.clustered_epoch) == 2


def simclr(*extra):
    cfg = load_config(
        None,
        [
            "encoder.name=resnet",
            "encoder.args={channels: [4, 8], blocks: [1, 1], embed_dim: 16}",
            "method.name=simclr",
            "method.ssps.enabled=true",
            "method.ssps.start=0.5",
            "method.ssps.queue_size=64",
            "method.ssps.clusters=2",
            *extra,
        ],
    )
    torch.manual_seed(0)
    return build_method(cfg, EmbeddingModel(cfg)).eval()  # eval: batch norm per row


def test_simclr_uses_the_sampled_positive_once_sampling_has_started():
    method = simclr()
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(6, 2, 40, 30, generator=g)
    indices = torch.arange(6)
    before = method(feats, None, StepInfo(progress=0.1, indices=indices))[0]
    with torch.no_grad():
        z = method.model.forward_features(feats.transpose(0, 1).flatten(0, 1))
    want = nt_xent_am(z[:6], z[6:], 30.0, 0.1, True)[0]
    assert float(before.detach()) == pytest.approx(float(want), rel=1e-5)  # not started: own views
    assert sorted(method.ssps.index[:6].tolist()) == list(range(6))
    # Started: each anchor's positive is the remembered second view of another utterance
    # of its cluster (the draw repeated on a copy of the memory, which the step changes).
    memory = copy.deepcopy(method.ssps)
    info = StepInfo(progress=0.6, indices=indices + 6, global_step=1)
    loss = method(feats, None, info)[0]
    pos, found = memory.sample(info.indices, z[:6], info.epoch, info.global_step)
    assert bool(found.any())
    want = nt_xent_am(z[:6], torch.where(found[:, None], pos, z[6:]), 30.0, 0.1)
    assert float(loss.detach()) == pytest.approx(float(want[0]), rel=1e-5)
    assert not torch.allclose(pos[found], z[6:][found])  # not the own second views


def test_the_recipe_diagnostic_counts_same_speaker_positives_by_hand():
    """egs/librispeech/local/ssps_positive_purity.py on a memory of 6 slots (utterance 0
    remembered twice), against shares counted by hand."""
    import importlib.util

    import numpy as np
    from conftest import REPO

    path = REPO / "egs" / "librispeech" / "local" / "ssps_positive_purity.py"
    spec = importlib.util.spec_from_file_location("ssps_positive_purity", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    index = np.array([0, 1, 2, 0, 3, -1])
    assign = np.array([0, 0, 0, 1, 1, -1])
    speaker = np.array(["a", "a", "b", "a", "c", ""])
    in_cluster, anywhere, possible = script.same_speaker_shares(index, assign, speaker)
    # Slot 0 (utt 0, a): cluster-0 others are utts 1 (a), 2 (b): 1/2; all others 1, 2, 3: 1/3.
    # Slot 1 (utt 1, a): others 0, 2 in its cluster: 1/2; anywhere 0, 2, 0, 3: 2/4.
    # Slot 2 (b): 0/2 and 0/4. Slot 3 (utt 0, a): utt 3 (c) in cluster 1: 0/1; anywhere 1/3.
    # Slot 4 (c): utt 0 (a) in cluster 1: 0/1; anywhere 0/4. Slot 5 is empty.
    np.testing.assert_allclose(in_cluster, [1 / 2, 1 / 2, 0, 0, 0])
    np.testing.assert_allclose(anywhere, [1 / 3, 2 / 4, 0, 1 / 3, 0])
    assert possible.tolist() == [True, True, False, True, False]
