"""The second stage's clustering (sslsv.cluster) and its CLI (sslsv.bin.cluster)."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections import Counter
from pathlib import Path

import kaldiio
import numpy as np
import pytest
from conftest import make_tone_data_dir
from scipy.spatial.distance import pdist

from sslsv.bin import cluster as cluster_cli
from sslsv.cluster import (
    cluster_embeddings,
    condensed_cosine_distances,
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
    for linkage in ("average", "ward"):
        merged = merge_clusters(km.centroids, merge_to=12, linkage=linkage)
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
    np.testing.assert_allclose(
        condensed_cosine_distances(c, block=5), pdist(c.astype(np.float64), "cosine"), atol=1e-6
    )


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
# CLI

PL_CONFIG = (
    "pseudo_label: {kmeans_clusters: 16, kmeans_iters: 30, merge_threshold: 0.5, "
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
    assert (stats["kmeans_clusters"], stats["clusters"]) == (16, 6)
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
    config.write_text("pseudo_label: {kmeans_clusters: 12, merge_threshold: 0.5}\n")
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
