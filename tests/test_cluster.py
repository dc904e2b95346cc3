"""The second stage's clustering (sslsv.cluster, sslsv.kmeans, sslsv.ahc) and its CLI
(sslsv.bin.cluster)."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch
from conftest import make_tone_data_dir
from scipy.cluster.hierarchy import fcluster
from scipy.cluster.hierarchy import linkage as scipy_linkage
from scipy.spatial.distance import pdist
from sklearn.cluster import KMeans

from sslsv.ahc import condensed_distances, linkage
from sslsv.bin import cluster as cluster_cli
from sslsv.cluster import (
    cluster_embeddings,
    inverse_purity,
    kmeans,
    merge_clusters,
    normalise,
    purity,
    quality,
    relabel,
    size_histogram,
)
from sslsv.config.load import load_config
from sslsv.config.schema import PseudoLabelConfig
from sslsv.datadir.validate import validate_data_dir
from sslsv.errors import ConfigError, DataError
from sslsv.fileio import read_dict, write_table
from sslsv.kmeans import assign, draws, fixed_point_scale, kmeans_plusplus, lloyd

# ---------------------------------------------------------------------------------------
# Helpers


def blobs(n_per, n_blobs, dim=32, noise=0.1, seed=0, sizes=None):
    """Gaussian blobs around random unit centres; within-blob cosine about 0.5 at dim 32."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_blobs, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    y = np.repeat(np.arange(n_blobs), sizes if sizes is not None else n_per)
    x = centres[y] + noise * rng.standard_normal((len(y), dim))
    return x.astype(np.float32), y


def nmi(y, labels):
    return quality(y, labels)["nmi"]


def plain_purity(true, pred):
    """Purity by its definition: per cluster, the count of its most common true label."""
    clusters = {}
    for t, p in zip(true, pred):
        clusters.setdefault(p, []).append(t)
    return sum(Counter(members).most_common(1)[0][1] for members in clusters.values()) / len(true)


# ---------------------------------------------------------------------------------------
# Library


@pytest.mark.parametrize("linkage", ["average", "complete", "single", "ward"])
def test_kmeans_then_merge_recovers_blobs(linkage):
    x, y = blobs(40, 15)
    cfg = PseudoLabelConfig(kmeans_clusters=60, kmeans_iters=30, merge_to=15, linkage=linkage)
    result = cluster_embeddings(x, cfg)
    assert result.kmeans_clusters == 60 and result.merged_clusters == 15
    assert result.clusters == 15 and result.kept == len(x)
    q = quality(y, result.labels)
    assert q["nmi"] > 0.95 and q["purity"] > 0.99 and q["inverse_purity"] > 0.95


def test_kmeans_alone_over_clusters_purely():
    x, y = blobs(40, 15)
    result = kmeans(normalise(x), 45, 30, seed=0)
    assert len(np.unique(result.labels)) == 45 and result.centroids.shape == (45, 32)
    assert purity(y, result.labels) > 0.99
    assert nmi(y, result.labels) > 0.85


def test_merging_an_over_clustering_back_to_the_true_number():
    """AHC of the k-means centroids: cut at a count, or at a cosine distance."""
    x, y = blobs(40, 12)
    km = kmeans(normalise(x), 48, 30, seed=1)
    for method in ("average", "ward"):
        merged = merge_clusters(km.centroids, merge_to=12, linkage=method)
        assert merged.shape == (48,) and set(merged) == set(range(12))
        assert nmi(y, merged[km.labels]) > 0.99
    # Centroids of one blob are within cosine distance ~0.05, of two blobs ~1.
    by_distance = merge_clusters(km.centroids, threshold=0.5, linkage="average")
    assert nmi(y, by_distance[km.labels]) > 0.99
    by_ward = merge_clusters(km.centroids, threshold=0.5, linkage="ward")
    assert len(set(by_ward)) == 12
    np.testing.assert_array_equal(merge_clusters(km.centroids), np.arange(48))


def test_same_seed_same_labels_other_seed_other_start():
    x, _ = blobs(30, 10, seed=3)
    cfg = PseudoLabelConfig(kmeans_clusters=40, kmeans_iters=20, merge_to=10, seed=5)
    a, b = cluster_embeddings(x, cfg), cluster_embeddings(x, cfg)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.kmeans_labels, b.kmeans_labels)
    other = PseudoLabelConfig(kmeans_clusters=40, kmeans_iters=20, merge_to=10, seed=6)
    c = cluster_embeddings(x, other)
    assert not np.array_equal(a.kmeans_labels, c.kmeans_labels)  # the seed is used


def test_relabel_orders_by_size_then_first_member_and_drops_small_clusters():
    labels = np.array([7, 3, 3, 9, 7, 3, 9, 5])  # sizes: 3 -> 3, 7 -> 2, 9 -> 2, 5 -> 1
    np.testing.assert_array_equal(relabel(labels), [1, 0, 0, 2, 1, 0, 2, 3])
    np.testing.assert_array_equal(relabel(labels, min_size=2), [1, 0, 0, 2, 1, 0, 2, -1])
    np.testing.assert_array_equal(relabel(labels, min_size=3), [-1, 0, 0, -1, -1, 0, -1, -1])
    # The ids do not depend on the input's cluster numbering.
    np.testing.assert_array_equal(relabel(labels * 10 + 1), relabel(labels))


def test_min_cluster_size_leaves_small_clusters_out():
    x, y = blobs(0, 6, sizes=[40, 40, 40, 3, 2, 1], noise=0.05, seed=4)
    cfg = PseudoLabelConfig(kmeans_clusters=30, kmeans_iters=30, merge_threshold=0.5)
    every = cluster_embeddings(x, dataclasses.replace(cfg, min_cluster_size=1))
    result = cluster_embeddings(x, dataclasses.replace(cfg, min_cluster_size=5))
    np.testing.assert_array_equal(every.merged_labels, result.merged_labels)
    sizes = np.bincount(result.merged_labels)
    dropped = result.labels < 0
    np.testing.assert_array_equal(dropped, sizes[result.merged_labels] < 5)
    assert dropped.sum() >= 1 and result.kept == (~dropped).sum()
    assert set(y[dropped]) <= {3, 4, 5}  # only the small blobs' utterances
    assert np.all(np.bincount(result.labels[~dropped]) >= 5)
    assert set(result.labels[~dropped]) == set(range(result.clusters))


def test_purity_against_a_plain_definition():
    rng = np.random.default_rng(7)
    for _ in range(5):
        true = [f"spk{s}" for s in rng.integers(0, 9, 200)]
        pred = rng.integers(0, 14, 200) * 3 + 100  # sparse ids
        assert purity(true, pred) == pytest.approx(plain_purity(true, pred))
        assert inverse_purity(true, pred) == pytest.approx(plain_purity(pred, true))
    assert purity([0, 0, 1, 1], [5, 5, 5, 5]) == 0.5
    assert purity([0, 0, 1, 1], [1, 2, 3, 4]) == 1.0
    assert inverse_purity([0, 0, 1, 1], [1, 2, 3, 4]) == 0.5
    q = quality([0, 0, 1, 1], [1, 1, 2, 2])
    assert (q["nmi"], q["ari"], q["speakers"], q["clusters"]) == (
        pytest.approx(1.0),
        pytest.approx(1.0),
        2,
        2,
    )


def test_size_histogram_bins_clusters_and_utterances():
    labels = np.repeat(np.arange(5), [1, 3, 4, 12, 600])
    rows = {r["sizes"]: (r["clusters"], r["utterances"]) for r in size_histogram(labels)}
    assert rows["1"] == (1, 1) and rows["2-4"] == (2, 7) and rows["10-19"] == (1, 12)
    assert rows["500+"] == (1, 600) and rows["5-9"] == (0, 0)
    assert sum(c for c, _ in rows.values()) == 5
    assert sum(u for _, u in rows.values()) == len(labels)


def test_condensed_distances_match_pdist():
    c = normalise(np.random.default_rng(2).standard_normal((37, 8)))
    c64 = c.astype(np.float64)
    for ward, metric in ((False, "cosine"), (True, "euclidean")):
        d = condensed_distances(torch.from_numpy(c), ward=ward, rows=5)
        assert d.dtype == torch.float32
        np.testing.assert_allclose(d.numpy(), pdist(c64, metric), atol=1e-6)


def test_zero_embedding_and_too_many_clusters_are_errors():
    x, _ = blobs(3, 2)
    with pytest.raises(DataError, match="exceeds the 6 utterances"):
        cluster_embeddings(x, PseudoLabelConfig(kmeans_clusters=7))
    x[2] = 0
    with pytest.raises(DataError, match="all-zero embedding"):
        normalise(x)


def test_config_refuses_both_merge_criteria_and_merge_to_not_below_k(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("pseudo_label: {kmeans_clusters: 100, merge_to: 10, merge_threshold: 0.3}\n")
    with pytest.raises(ConfigError, match=r"'pseudo_label.merge_to' is 10; .*not both"):
        load_config(path)
    path.write_text("pseudo_label: {kmeans_clusters: 100, merge_to: 100}\n")
    with pytest.raises(ConfigError, match="must be < kmeans_clusters 100"):
        load_config(path)


# ---------------------------------------------------------------------------------------
# The torch k-means (sslsv.kmeans) and the float32 AHC (sslsv.ahc), each against an
# independent implementation of its definition


def unit_rows(n, dim, seed):
    x = np.random.default_rng(seed).standard_normal((n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def plain_lloyd_step(x, centroids):
    """One Lloyd iteration by the definition: each point to its nearest centroid (squared
    euclidean, the lowest index among equals), each centroid the mean of its points."""
    labels = np.array([int(np.argmin([np.sum((p - c) ** 2) for c in centroids])) for p in x])
    means = np.array([x[labels == j].mean(0) for j in range(len(centroids))])
    return labels, means


def plain_greedy_plusplus(x, k, first, uniforms):
    """Greedy k-means++ by its definition, with the given draws: candidates by the
    cumulative squared distances to the nearest chosen centre, the one keeping the least
    potential chosen."""
    chosen = [first]
    closest = np.sum((x - x[first]) ** 2, axis=1)
    for step in range(1, k):
        cumulative = np.cumsum(closest)
        picks = np.searchsorted(cumulative, uniforms[step - 1] * closest.sum())
        best = None
        for cand in np.minimum(picks, len(x) - 1):
            d = np.minimum(closest, np.sum((x - x[cand]) ** 2, axis=1))
            if best is None or d.sum() < best[1].sum():
                best = (int(cand), d)
        chosen.append(best[0])
        closest = best[1]
    return chosen


def test_torch_kmeans_quality_matches_scikit_learn_on_the_blob_tests():
    x, y = blobs(40, 15)
    for linkage_name in ("average", "complete", "single", "ward"):
        cfg = PseudoLabelConfig(
            kmeans_clusters=60, kmeans_iters=30, merge_to=15, linkage=linkage_name
        )
        scores = [
            nmi(y, cluster_embeddings(x, dataclasses.replace(cfg, kmeans_backend=b)).labels)
            for b in ("torch", "sklearn")
        ]
        assert abs(scores[0] - scores[1]) <= 0.005, (linkage_name, scores)
    # k-means alone, over-clustering 45 of 15: the start matters; mean NMI over 10 seeds.
    u = normalise(x)
    mean = {
        b: np.mean([nmi(y, kmeans(u, 45, 30, seed, b).labels) for seed in range(10)])
        for b in ("torch", "sklearn")
    }
    assert mean["torch"] >= mean["sklearn"] - 0.005, mean


def test_lloyd_from_a_given_start_is_scikit_learns():
    """The same iterations, tolerance and final assignment: labels, centroids and the
    iteration count of scikit-learn's KMeans(lloyd) from the same start."""
    for seed in range(3):
        x, _ = blobs(40, 15, noise=0.3, seed=seed)
        x = normalise(x)
        init = x[np.random.default_rng(seed).choice(len(x), 60, replace=False)]
        sk = KMeans(60, init=init, n_init=1, max_iter=30, algorithm="lloyd").fit(x)
        labels, centroids, iters = lloyd(torch.from_numpy(x), torch.from_numpy(init), 30, 64)
        np.testing.assert_array_equal(labels.numpy(), sk.labels_)
        np.testing.assert_allclose(centroids.numpy(), sk.cluster_centers_, atol=1e-6)
        assert iters == sk.n_iter_ and 2 < iters < 30


def test_assignment_and_sums_are_a_plain_lloyd_iteration():
    x = unit_rows(53, 5, seed=1)
    c = x[[0, 7, 19, 30, 41, 50]] + 0.01
    p = assign(torch.from_numpy(x), torch.from_numpy(c), rows=7, scale=fixed_point_scale(53))
    labels, means = plain_lloyd_step(x, c)
    np.testing.assert_array_equal(p.labels.numpy(), labels)
    np.testing.assert_array_equal(p.counts.numpy(), np.bincount(labels, minlength=6))
    got = p.sums.double().numpy() / fixed_point_scale(53) / p.counts.numpy()[:, None]
    np.testing.assert_allclose(got, means, rtol=0, atol=1e-12)


def test_kmeans_plusplus_is_a_plain_greedy_kmeans_plusplus():
    x = unit_rows(90, 6, seed=3)
    d = draws(90, 12, seed=4)
    chosen = kmeans_plusplus(torch.from_numpy(x), 12, d.first, d.uniforms)
    expected = plain_greedy_plusplus(x, 12, d.first, d.uniforms.numpy())
    assert chosen.tolist() == expected and len(set(expected)) == 12


def test_an_empty_cluster_is_reseeded_at_the_farthest_point():
    x, _ = blobs(10, 4, noise=0.2, seed=5)
    x = normalise(x)
    init = x[[0, 0, 10, 20, 30]]  # clusters 0 and 1 start equal: 1 gets no point
    labels, centroids, _ = lloyd(torch.from_numpy(x), torch.from_numpy(init), 1, 8)
    first_labels = np.argmin(((x[:, None] - init[None]) ** 2).sum(2), axis=1)
    assert 1 not in first_labels
    distance = ((x - init[first_labels]) ** 2).sum(1)
    np.testing.assert_array_equal(centroids[1].numpy(), x[np.argmax(distance)])
    sk = KMeans(5, init=init, n_init=1, max_iter=1, algorithm="lloyd").fit(x)
    np.testing.assert_allclose(centroids.numpy(), sk.cluster_centers_, atol=1e-6)
    np.testing.assert_array_equal(labels.numpy(), sk.labels_)


def test_fixed_point_sums_do_not_depend_on_the_order_of_the_rows():
    """Integer sums: the same centroids, bit for bit, whatever order the rows are added in
    (float sums differ in the last bits: what would make GPU runs differ)."""
    x, _ = blobs(200, 8, noise=0.4, seed=6)
    x = torch.from_numpy(normalise(x))
    init = x[::100].clone()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    labels, centroids, _ = lloyd(x, init, 5, 64)
    labels_p, centroids_p, _ = lloyd(x[perm], init, 5, 64)
    assert torch.equal(centroids, centroids_p)
    assert torch.equal(labels[perm], labels_p)
    # Split over host threads (the CPU's passes): the same, whatever the split.
    for workers in (2, 3):
        labels_w, centroids_w, _ = lloyd(x, init, 5, 64, workers)
        assert torch.equal(centroids_w, centroids) and torch.equal(labels_w, labels)


@pytest.mark.parametrize("method", ["average", "complete", "single", "ward"])
def test_float32_ahc_is_scipys_linkage(method):
    """The same merges, in the same order and numbering, heights to float32 precision, and
    the same flat clusters at counts and at distances."""
    for seed, n in ((0, 150), (1, 61), (2, 9)):
        c = unit_rows(n, 12, seed).astype(np.float32)
        z = linkage(torch.from_numpy(c), method)
        c64 = c.astype(np.float64)
        expected = scipy_linkage(pdist(c64, "euclidean" if method == "ward" else "cosine"), method)
        np.testing.assert_array_equal(z[:, [0, 1, 3]], expected[:, [0, 1, 3]])
        np.testing.assert_allclose(z[:, 2], expected[:, 2], rtol=0, atol=2e-6)
        for t in (2, 5, n // 3):
            cut = fcluster(expected, t, "maxclust")
            np.testing.assert_array_equal(fcluster(z, t, "maxclust"), cut)
        middle = (n - 1) // 2  # cut halfway between two heights, not at one
        height = float(expected[middle - 1 : middle + 1, 2].mean())
        np.testing.assert_array_equal(
            fcluster(z, height, "distance"), fcluster(expected, height, "distance")
        )


def test_merge_clusters_cuts_like_scipy():
    c = unit_rows(120, 10, seed=7).astype(np.float32)
    y = pdist(c.astype(np.float64), "cosine")
    for method in ("average", "complete"):
        z = scipy_linkage(y, method)
        expected = fcluster(z, 20, "maxclust") - 1
        np.testing.assert_array_equal(merge_clusters(c, merge_to=20, linkage=method), expected)
        expected = fcluster(z, 0.8, "distance") - 1
        np.testing.assert_array_equal(merge_clusters(c, threshold=0.8, linkage=method), expected)
    z = scipy_linkage(pdist(c.astype(np.float64)), "ward")
    expected = fcluster(z, np.sqrt(2 * 0.8), "distance") - 1
    np.testing.assert_array_equal(merge_clusters(c, threshold=0.8, linkage="ward"), expected)


AHC_MEMORY_CHILD = """
import resource, sys, numpy as np, torch
from sslsv.ahc import condensed_distances, nn_chain
def kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
n = int(sys.argv[1])
x = np.random.default_rng(0).standard_normal((n, 64)).astype(np.float32)
c = torch.nn.functional.normalize(torch.from_numpy(x), dim=1)
nn_chain(condensed_distances(c[:50], rows=16), 50, "average")  # torch's lazy set-up
before = kib("VmRSS")
z = nn_chain(condensed_distances(c, rows=128), n, "average")
print((kib("VmHWM") - before) * 1024)
"""


def test_ahc_peak_memory_is_four_bytes_a_pair():
    """The AHC's peak resident memory above its input (a child process's VmHWM): the float32
    condensed matrix and a fill block; scipy's float64 linkage needed 4x the matrix (its
    float64 distances and its copy of them)."""
    n = 3000
    pairs = n * (n - 1) // 2
    out = subprocess.run(
        [sys.executable, "-c", AHC_MEMORY_CHILD, str(n)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    extra = int(out.stdout.split()[-1])
    fill = 4 * 128 * n  # a block of similarities
    # 8 MiB for what else the process touches at its first large allocation (allocator
    # arenas, thread stacks: 4.7 to 5.4 bytes a pair seen in two venvs of this machine).
    assert 0.95 * 4 * pairs <= extra <= 4 * pairs + fill + 8 * 2**20, extra / pairs
    assert extra < 16 * pairs / 2  # half of what scipy's linkage took


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_kmeans_and_merging_give_the_cpus_clusters():
    x, y = blobs(40, 15)
    cfg = PseudoLabelConfig(kmeans_clusters=60, kmeans_iters=30, merge_to=15)
    on_cpu = cluster_embeddings(x, cfg)
    on_gpu = cluster_embeddings(x, cfg, device="cuda")
    np.testing.assert_array_equal(on_gpu.labels, on_cpu.labels)
    np.testing.assert_array_equal(on_gpu.kmeans_labels, on_cpu.kmeans_labels)


# ---------------------------------------------------------------------------------------
# CLI

# K = 24: the k-means++ subsample (2 K) is every utterance, so the outliers become centres.
PL_CONFIG = (
    "pseudo_label: {kmeans_clusters: 24, kmeans_iters: 30, merge_threshold: 0.5, "
    "min_cluster_size: 2, seed: SEED}\n"
)


@pytest.fixture(scope="module")
def train_set(tmp_path_factory):
    """A data dir of 6 speakers x 8 short utterances (real audio), with spk2gender and a trial
    list, and embeddings clustered around one centre per speaker (plus 2 utterances far from
    every centre and from each other: clusters of one)."""
    root = tmp_path_factory.mktemp("train")
    data = make_tone_data_dir(root, speakers=6, utts=8, seconds=0.2)
    utt2spk = read_dict(data / "utt2spk")
    write_table(data / "spk2gender", {s: "m" for s in set(utt2spk.values())})
    (data / "trials").write_text("spk0-utt0 spk0-utt1 target\nspk0-utt0 spk1-utt1 nontarget\n")
    utts = sorted(utt2spk)
    x, _ = blobs(8, 6, dim=32, noise=0.08, seed=1)
    x[[0, 9]] = np.eye(32, dtype=np.float32)[[3, 11]] * 5  # spk0-utt0, spk1-utt1: outliers
    return {"data": data, "utts": utts, "x": x, "root": root}


def write_embeddings(stem: Path, ids, x) -> str:
    with kaldiio.WriteHelper(f"ark,scp:{stem}.ark,{stem}.scp") as writer:
        for utt, vec in zip(ids, x):
            writer(utt, vec.astype(np.float32))
    return f"{stem}.scp"


@pytest.fixture
def run_cli(train_set, tmp_path, capsys):
    scp = write_embeddings(tmp_path / "emb", train_set["utts"], train_set["x"])
    state = {"scp": scp, "out": tmp_path / "train_pl1", "config": tmp_path / "pl.yaml"}
    state["config"].write_text(PL_CONFIG.replace("SEED", "0"))

    def run(*extra, scp=None):
        capsys.readouterr()
        argv = ["--config", str(state["config"]), "--embeddings", scp or state["scp"]]
        argv += ["--data", str(train_set["data"]), "--output", str(state["out"]), *extra]
        status = cluster_cli.main(argv)
        return status, capsys.readouterr()

    state["run"] = run
    return state


def _snapshot(folder: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())}


def test_cli_writes_a_valid_pseudo_labelled_data_dir_keyed_like_the_training_set(
    train_set, run_cli
):
    status, _ = run_cli["run"]()
    assert status == 0
    out, data = run_cli["out"], train_set["data"]
    validate_data_dir(out, check_wav_exists=True)
    utt2spk = read_dict(out / "utt2spk")
    kept = list(utt2spk)
    # The two outliers form clusters of one: left out; everything else kept, in C order.
    assert kept == [u for u in train_set["utts"] if u not in ("spk0-utt0", "spk1-utt1")]
    assert (out / "utt2spk").read_text().splitlines() == sorted(
        (out / "utt2spk").read_text().splitlines()
    )
    for name in ("wav.scp", "utt2dur"):
        source = read_dict(data / name)
        assert read_dict(out / name) == {u: source[u] for u in kept}
    # Pseudo-speakers, numbered by size; no true label, gender or trial list copied.
    assert all(re.fullmatch(r"pl\d{4}", s) for s in utt2spk.values())
    assert set(utt2spk.values()) == {f"pl{i:04d}" for i in range(1, 7)}
    assert not (out / "spk2gender").exists() and not (out / "trials").exists()
    true = read_dict(data / "utt2spk")
    for path in out.iterdir():
        if path.name not in ("wav.scp", "clustering.txt", "clustering.json"):
            words = set(path.read_text().split())
            assert not words & set(true.values()), path.name  # ids like spk0 nowhere
    groups = {}
    for u, s in utt2spk.items():
        groups.setdefault(s, set()).add(true[u])
    assert all(len(g) == 1 for g in groups.values())  # the blobs are recovered
    stats = json.loads((out / "clustering.json").read_text())
    assert (stats["utterances"], stats["kept"], stats["dropped"]) == (48, 46, 2)
    assert (stats["kmeans_clusters"], stats["clusters"]) == (24, 6)
    assert stats["merged_clusters"] == 8
    assert stats["nmi"] == pytest.approx(1.0) and stats["purity"] == 1.0
    assert stats["true_labels"]["speakers"] == 6
    hist = {h["sizes"]: h["clusters"] for h in stats["histogram"]}
    assert hist["1"] == 2 and hist["5-9"] == 6
    text = (out / "clustering.txt").read_text()
    assert "statistics only: true labels are not used for training" in text
    assert "kept: 46, dropped: 2" in text


def test_cli_rerun_reuses_and_changed_inputs_redo(train_set, run_cli, caplog):
    run = run_cli["run"]
    assert run()[0] == 0
    before = _snapshot(run_cli["out"])
    with caplog.at_level(logging.INFO):
        assert run()[0] == 0
    assert _snapshot(run_cli["out"]) == before
    assert [r.message for r in caplog.records if "up to date" in r.message]
    caplog.clear()
    run_cli["config"].write_text(PL_CONFIG.replace("SEED", "1"))
    with caplog.at_level(logging.INFO):
        assert run()[0] == 0
    assert any("settings (seed 0 -> 1)" in r.message for r in caplog.records)
    assert json.loads((run_cli["out"] / "clustering.json").read_text())["settings"]["seed"] == 1
    caplog.clear()
    x = train_set["x"].copy()
    x[5] *= -1
    write_embeddings(Path(run_cli["scp"]).with_suffix(""), train_set["utts"], x)
    with caplog.at_level(logging.INFO):
        assert run()[0] == 0
    assert any("embeddings changed" in r.message for r in caplog.records)


def test_cli_missing_embedding_is_one_line_and_status_1(train_set, run_cli, tmp_path):
    utts = train_set["utts"]
    scp = write_embeddings(
        tmp_path / "part", utts[:20] + utts[21:], np.delete(train_set["x"], 20, 0)
    )
    status, captured = run_cli["run"](scp=scp)
    assert status == 1
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "no embedding for 1 utterance(s)" in lines[0]
    assert utts[20] in lines[0]
    assert not run_cli["out"].exists()


def test_cli_with_segments_and_unlabelled_data(tmp_path, capsys):
    """segments: the recordings' files are restricted too; utt2spk with one speaker per
    utterance (no labels): no quality figures."""
    data = tmp_path / "data"
    utts = [f"rec{r}-seg{s}" for r in range(4) for s in range(8 if r < 3 else 4)]
    write_table(data / "wav.scp", {f"rec{r}": f"/audio/rec{r}.wav" for r in range(4)})
    write_table(data / "reco2dur", {f"rec{r}": "60.0" for r in range(4)})
    spans = {u: f"{u[:4]} {int(u[-1]) * 5}.0 {int(u[-1]) * 5 + 4}.0" for u in utts}
    write_table(data / "segments", spans)
    write_table(data / "utt2spk", {u: u for u in utts})
    write_table(data / "spk2utt", {u: u for u in utts})
    # Recordings 0-2: one blob each; recording 3: outliers (clusters of one, left out), so
    # its wav.scp and reco2dur lines go too.
    x, _ = blobs(8, 3, dim=32, noise=0.05, seed=2)
    x = np.concatenate([x, np.eye(32, dtype=np.float32)[20:24]])
    scp = write_embeddings(tmp_path / "emb", sorted(utts), x)
    out = tmp_path / "pl"
    config = tmp_path / "c.yaml"
    # K = 14: the k-means++ subsample (2 K) is every utterance, outliers included.
    config.write_text("pseudo_label: {kmeans_clusters: 14, merge_threshold: 0.5}\n")
    argv = ["--config", str(config), "--embeddings", scp, "--data", str(data)]
    assert cluster_cli.main([*argv, "--output", str(out)]) == 0
    validate_data_dir(out, check_wav_exists=False)
    kept = list(read_dict(out / "utt2spk"))
    assert kept == [u for u in sorted(utts) if not u.startswith("rec3")]
    recordings = {"rec0", "rec1", "rec2"}
    assert set(read_dict(out / "wav.scp")) == set(read_dict(out / "reco2dur")) == recordings
    assert read_dict(out / "segments") == {u: spans[u] for u in kept}
    stats = json.loads((out / "clustering.json").read_text())
    assert stats["true_labels"] is None and "nmi" not in stats
    assert stats["clusters"] == 3
    assert "against true speakers: none" in (out / "clustering.txt").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text("pseudo_label: {kmeans_clusters: 29}\n")
    capsys.readouterr()
    assert cluster_cli.main(["--config", str(bad), *argv[2:], "--output", str(out)]) == 1
    assert "kmeans_clusters 29 exceeds the 28 utterances" in capsys.readouterr().err


def test_cli_device_option_and_back_end_choice(train_set, run_cli, caplog):
    """--device (unknown before: argparse's exit 2) goes into clustering.json and the stamp;
    a change of pseudo_label.kmeans_backend redoes the clustering."""
    status, captured = run_cli["run"]("--device", "cpu")
    assert status == 0
    out = run_cli["out"]
    stats = json.loads((out / "clustering.json").read_text())
    assert stats["device"] == "cpu" and stats["settings"]["kmeans_backend"] == "torch"
    assert "k-means (torch on cpu)" in captured.out
    stamp = json.loads(out.with_name(out.name + ".stamp").read_text())
    assert stamp["device"] == "cpu" and stamp["settings"]["kmeans_backend"] == "torch"
    run_cli["config"].write_text(
        PL_CONFIG.replace("SEED", "0").replace("seed: 0", "seed: 0, kmeans_backend: sklearn")
    )
    with caplog.at_level(logging.INFO):
        status, captured = run_cli["run"]("--device", "cpu")
    assert status == 0
    assert any("kmeans_backend 'torch' -> 'sklearn'" in r.message for r in caplog.records)
    assert "k-means (sklearn)" in captured.out
    stats = json.loads((out / "clustering.json").read_text())
    assert stats["settings"]["kmeans_backend"] == "sklearn"
    assert (stats["clusters"], stats["kept"]) == (6, 46)  # the same blobs, either back end


@pytest.mark.parametrize(
    "device, message",
    [
        ("tpu", "device 'tpu': not a device (cpu, cuda or cuda:N)"),
        pytest.param(
            "cuda",
            "device 'cuda': CUDA is not available here",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible"),
        ),
    ],
)
def test_cli_bad_device_is_one_line_and_status_1(run_cli, device, message):
    status, captured = run_cli["run"]("--device", device)
    assert status == 1
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not run_cli["out"].exists()
