"""Back ends (cosine, LDA, PLDA, score normalisation) and the scoring CLI."""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

import kaldiio
import numpy as np
import pytest
from scipy.stats import multivariate_normal

import sslsv.arkio as arkio
from sslsv.backend import (
    LDA,
    PLDA,
    CosineBackend,
    PLDABackend,
    cosine_scores,
    fit_whitening,
    length_norm,
    load_backend,
    load_embeddings,
    pair_scores,
    save_backend,
    score_norm,
    speaker_means,
)
from sslsv.bin import score as score_cli
from sslsv.datadir.io import write_trials
from sslsv.errors import DataError
from sslsv.fileio import write_table
from sslsv.metrics import compute_eer
from sslsv.scores import read_scores

# ---------------------------------------------------------------------------------------
# Helpers


def write_embeddings(path_stem, ids, x):
    """Kaldi ark + scp of float32 vectors; returns the scp path."""
    with kaldiio.WriteHelper(f"ark,scp:{path_stem}.ark,{path_stem}.scp") as writer:
        for utt, vec in zip(ids, x):
            writer(utt, vec.astype(np.float32))
    return f"{path_stem}.scp"


def two_cov_data(rng, counts, mean, between, within):
    """Embeddings from the two-covariance model: identity per speaker plus noise."""
    d = len(mean)
    identities = rng.multivariate_normal(mean, between, len(counts))
    labels = np.repeat(np.arange(len(counts)), counts)
    x = identities[labels] + rng.multivariate_normal(np.zeros(d), within, len(labels))
    return x, labels


def random_spd(rng, d, scale=1.0):
    a = rng.normal(size=(d, d))
    return scale * (a @ a.T / d + 0.2 * np.eye(d))


# ---------------------------------------------------------------------------------------
# Embedding files


def test_load_embeddings_scp_ark_and_subsets(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"utt{i}" for i in range(5)]
    x = rng.normal(size=(5, 4)).astype(np.float32)
    scp = write_embeddings(tmp_path / "emb", ids, x)
    got_ids, got = load_embeddings(scp)
    assert got_ids == ids
    np.testing.assert_array_equal(got, x)
    got_ids, got = load_embeddings(scp, ["utt3", "utt1", "utt3"])
    assert got_ids == ["utt3", "utt1"]
    np.testing.assert_array_equal(got, x[[3, 1]])
    got_ids, got = load_embeddings(f"ark:{tmp_path / 'emb.ark'}", ["utt4"])
    np.testing.assert_array_equal(got, x[[4]])
    with pytest.raises(DataError, match=r"no embedding for 2 utterance\(s\): ghost1 ghost2"):
        load_embeddings(scp, ["utt0", "ghost1", "ghost2"])
    with pytest.raises(DataError, match="no embedding for 1 utterance.*: ghost"):
        load_embeddings(tmp_path / "emb.ark", ["ghost"])


def test_load_embeddings_all_kaldi_float_layouts(tmp_path):
    vec = np.array([0.5, -1.25, 3.0, 7.5], dtype=np.float32)
    ark = str(tmp_path / "layouts.ark")
    with open(ark, "wb") as f:
        kaldiio.save_ark(f, {"fv": vec, "dv": vec.astype(np.float64), "fm": vec[None, :]})
        kaldiio.save_ark(f, {"cm": vec[None, :]}, compression_method=2)
    kaldiio.save_ark(str(tmp_path / "text.ark"), {"txt": vec}, text=True)
    ids, x = load_embeddings(ark)
    assert ids == ["fv", "dv", "fm", "cm"]
    np.testing.assert_array_equal(x[:3], np.tile(vec, (3, 1)))
    np.testing.assert_allclose(x[3], vec, atol=0.05)  # compressed: lossy
    np.testing.assert_allclose(load_embeddings(tmp_path / "text.ark")[1], vec[None, :])
    scp = write_embeddings(tmp_path / "nan", ["ok", "bad"], np.array([vec, vec * np.nan]))
    with pytest.raises(DataError, match=r"1 embedding\(s\) with non-finite values: bad"):
        load_embeddings(scp)
    (tmp_path / "trunc.ark").write_bytes(Path(ark).read_bytes()[:20])
    with pytest.raises(DataError, match="'fv'.*truncated"):
        load_embeddings(tmp_path / "trunc.ark")
    with open(tmp_path / "dup.ark", "wb") as f:
        kaldiio.save_ark(f, {"a": vec})
        kaldiio.save_ark(f, {"a": vec})
    with pytest.raises(DataError, match="duplicate utterance 'a'"):
        load_embeddings(tmp_path / "dup.ark")


def test_load_embeddings_refuses_pipes_and_bad_objects(tmp_path):
    scp = tmp_path / "evil.scp"
    scp.write_text(f"u1 touch {tmp_path}/ran |\n")
    with pytest.raises(DataError, match="pipes"):
        load_embeddings(scp)
    assert not (tmp_path / "ran").exists()
    kaldiio.save_ark(str(tmp_path / "pkl.ark"), {"p": {"a": 1}}, write_function="pickle")
    with pytest.raises(DataError, match="'p': unsupported object"):
        load_embeddings(tmp_path / "pkl.ark")  # never unpickled
    kaldiio.save_ark(str(tmp_path / "mat.ark"), {"m": np.ones((3, 4), dtype=np.float32)})
    with pytest.raises(DataError, match="'m'.*expected an embedding vector, got shape"):
        load_embeddings(tmp_path / "mat.ark")
    write_embeddings(tmp_path / "a", ["x"], np.ones((1, 3)))
    write_embeddings(tmp_path / "b", ["y"], np.ones((1, 4)))
    mixed = tmp_path / "mixed.scp"
    mixed.write_text((tmp_path / "a.scp").read_text() + (tmp_path / "b.scp").read_text())
    with pytest.raises(DataError, match="'y' has dimension 4, 'x' has 3"):
        load_embeddings(mixed)


# ---------------------------------------------------------------------------------------
# Pair scoring


def test_pair_scores_match_a_plain_loop():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(30, 8)).astype(np.float32)
    b = rng.normal(size=(20, 8)).astype(np.float32)
    a_idx = rng.integers(0, 30, 500)
    b_idx = rng.integers(0, 20, 500)
    a_idx[:3], b_idx[:3] = 7, 5  # repeated pairs too
    expected = [float(a[i].astype(np.float64) @ b[j]) for i, j in zip(a_idx, b_idx)]
    for chunk in (64, 1 << 22):
        np.testing.assert_allclose(
            pair_scores(a, b, a_idx, b_idx, chunk_size=chunk), expected, rtol=1e-5, atol=1e-5
        )
    # Far more trials than distinct pairs.
    a_idx, b_idx = rng.integers(0, 3, 50), rng.integers(0, 2, 50)
    expected = [float(a[i].astype(np.float64) @ b[j]) for i, j in zip(a_idx, b_idx)]
    np.testing.assert_allclose(pair_scores(a, b, a_idx, b_idx), expected, rtol=1e-5, atol=1e-5)
    assert len(pair_scores(a, b, np.zeros(0, int), np.zeros(0, int))) == 0
    with pytest.raises(IndexError):
        pair_scores(a, b, np.array([30]), np.array([0]))


def test_cosine_scores_match_a_plain_loop():
    rng = np.random.default_rng(2)
    e = rng.normal(size=(10, 5)) + 3
    t = rng.normal(size=(12, 5)) + 3
    mean = np.full(5, 3.0)
    ei, ti = rng.integers(0, 10, 50), rng.integers(0, 12, 50)

    def cos(u, v):
        return u @ v / math.sqrt(u @ u) / math.sqrt(v @ v)

    for m in (None, mean):
        sub = 0 if m is None else m
        expected = [cos(e[i] - sub, t[j] - sub) for i, j in zip(ei, ti)]
        np.testing.assert_allclose(cosine_scores(e, t, ei, ti, m), expected, atol=1e-6)


# ---------------------------------------------------------------------------------------
# Transforms


def test_length_norm_and_whitening():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 4)) @ rng.normal(size=(4, 4)) + 5
    np.testing.assert_allclose(np.linalg.norm(length_norm(x, 2.0), axis=1), 2.0)
    with pytest.raises(ValueError, match="zero embedding"):
        length_norm(np.zeros((2, 3)))
    mean, w = fit_whitening(x)
    y = (x - mean) @ w
    np.testing.assert_allclose(np.cov(y.T, bias=True), np.eye(4), atol=1e-6)


def test_lda_against_scatter_matrices_and_eigen_reference():
    rng = np.random.default_rng(4)
    d, n_cls = 6, 12
    x, labels = two_cov_data(
        rng, rng.integers(5, 15, n_cls), np.zeros(d), random_spd(rng, d), random_spd(rng, d)
    )
    # Plain loops over classes for the scatter matrices.
    mean = x.mean(0)
    sw = np.zeros((d, d))
    sb = np.zeros((d, d))
    for c in range(n_cls):
        xc = x[labels == c]
        mc = xc.mean(0)
        sw += (xc - mc).T @ (xc - mc)
        sb += len(xc) * np.outer(mc - mean, mc - mean)
    sw /= len(x)
    sb /= len(x)
    lda = LDA.fit(x, labels, 3)
    v = lda.projection
    np.testing.assert_allclose(v.T @ sw @ v, np.eye(3), atol=1e-6)
    between = v.T @ sb @ v
    np.testing.assert_allclose(between, np.diag(np.diag(between)), atol=1e-6)
    assert np.all(np.diff(np.diag(between)) < 0)
    # Same subspace as the top eigenvectors of Sw^-1 Sb.
    eigval, eigvec = np.linalg.eig(np.linalg.solve(sw, sb))
    top = np.real(eigvec[:, np.argsort(-np.real(eigval))[:3]])
    projector = lambda m: m @ np.linalg.pinv(m)  # noqa: E731
    np.testing.assert_allclose(projector(v), projector(top), atol=1e-6)
    np.testing.assert_allclose(lda.transform(x), (x - mean) @ v)
    with pytest.raises(ValueError, match="LDA dimension 12"):
        LDA.fit(x, labels, 12)


# ---------------------------------------------------------------------------------------
# PLDA


def test_plda_llr_is_the_gaussian_likelihood_ratio():
    rng = np.random.default_rng(5)
    d = 3
    mean = rng.normal(size=d)
    between, within = random_spd(rng, d), random_spd(rng, d, 0.5)
    plda = PLDA(mean, between, within)
    total = between + within
    joint = multivariate_normal(np.r_[mean, mean], np.block([[total, between], [between, total]]))
    single = multivariate_normal(mean, total)
    a, b = rng.normal(size=(6, d)), rng.normal(size=(4, d))
    expected = np.array(
        [[joint.logpdf(np.r_[u, v]) - single.logpdf(u) - single.logpdf(v) for v in b] for u in a]
    )
    np.testing.assert_allclose([[plda.llr(u, v) for v in b] for u in a], expected, atol=1e-9)
    np.testing.assert_allclose(plda.score_matrix(a, b), expected, atol=1e-5)  # float32 dot
    ai, bi = rng.integers(0, 6, 30), rng.integers(0, 4, 30)
    np.testing.assert_allclose(plda.score_pairs(a, b, ai, bi), expected[ai, bi], atol=1e-4)


def test_plda_log_likelihood_formula_and_em_monotonic():
    rng = np.random.default_rng(6)
    d = 2
    counts = np.array([1, 2, 3, 3, 5])
    x, labels = two_cov_data(rng, counts, np.ones(d), random_spd(rng, d), random_spd(rng, d))
    model = PLDA.fit(x, labels, n_iter=0)
    # Brute force: each speaker's stacked embeddings are one Gaussian vector.
    brute = 0.0
    for s, n in enumerate(counts):
        cov = np.kron(np.eye(n), model.within_cov) + np.kron(np.ones((n, n)), model.between_cov)
        brute += multivariate_normal(np.tile(model.mean, n), cov).logpdf(x[labels == s].ravel())
    assert model.loglik_history == [pytest.approx(brute, rel=1e-10)]
    history = PLDA.fit(x, labels, n_iter=20).loglik_history
    assert len(history) == 21
    assert np.all(np.diff(history) >= -1e-9 * abs(history[0]))
    assert history[-1] > history[0]


def test_plda_recovers_the_generating_covariances():
    rng = np.random.default_rng(7)
    d = 5
    mean = rng.normal(size=d)
    between, within = random_spd(rng, d), random_spd(rng, d, 0.7)
    x, labels = two_cov_data(rng, rng.integers(2, 12, 3000), mean, between, within)
    model = PLDA.fit(x, labels, n_iter=10)

    def rel_err(est, ref):
        return np.linalg.norm(est - ref) / np.linalg.norm(ref)

    assert rel_err(model.between_cov, between) < 0.08
    assert rel_err(model.within_cov, within) < 0.03
    assert np.linalg.norm(model.mean - mean) < 0.1


def _anisotropic_sets(rng):
    """Identities in 12 dims; within-speaker noise 50x stronger in 6 of them."""
    d = 12
    mean = np.full(d, 2.0)
    between = np.eye(d)
    within = np.diag(np.r_[np.full(6, 0.1), np.full(6, 5.0)])
    train = two_cov_data(rng, np.full(400, 8), mean, between, within)
    test_x, test_spk = two_cov_data(rng, np.full(100, 4), mean, between, within)
    pairs = np.array([(i, j) for i in range(len(test_x)) for j in range(i + 1, len(test_x))])
    return train, test_x, pairs, test_spk[pairs[:, 0]] == test_spk[pairs[:, 1]]


def test_plda_beats_cosine_on_anisotropic_noise():
    rng = np.random.default_rng(8)
    (train_x, train_spk), test_x, pairs, labels = _anisotropic_sets(rng)
    eers = {}
    for backend in (CosineBackend.trained_on(train_x), PLDABackend.trained_on(train_x, train_spk)):
        prepared = backend.prepare(test_x)
        scores = backend.score_pairs(prepared, prepared, pairs[:, 0], pairs[:, 1])
        eers[backend.name] = compute_eer(scores, labels)[0]
    assert eers["plda"] < 0.5 * eers["cosine"], eers


def test_backend_npz_round_trip(tmp_path):
    rng = np.random.default_rng(9)
    (train_x, train_spk), test_x, pairs, _ = _anisotropic_sets(rng)
    backends = [
        CosineBackend(),
        CosineBackend.trained_on(train_x),
        PLDABackend.trained_on(train_x, train_spk),
        PLDABackend.trained_on(train_x, train_spk, lda_dim=8, whiten=True, n_iter=3),
    ]
    for i, backend in enumerate(backends):
        path = tmp_path / f"b{i}.npz"
        save_backend(path, backend)
        with np.load(path, allow_pickle=False) as npz:
            assert all(npz[k].dtype != object for k in npz.files)
        loaded = load_backend(path)
        assert type(loaded) is type(backend) and loaded.settings() == backend.settings()
        prepared = backend.prepare(test_x)
        np.testing.assert_array_equal(loaded.prepare(test_x), prepared)
        np.testing.assert_array_equal(
            loaded.score_pairs(prepared, prepared, pairs[:, 0], pairs[:, 1]),
            backend.score_pairs(prepared, prepared, pairs[:, 0], pairs[:, 1]),
        )
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="bad.npz"):
        load_backend(tmp_path / "bad.npz")


# ---------------------------------------------------------------------------------------
# Score normalisation against per-trial loops


def _loop_norm(score_fn, scores, enroll, test, ei, ti, cohort, method, top_k):
    def stats(x):
        values = sorted((score_fn(x, c) for c in cohort), reverse=True)
        if method == "as":
            values = values[:top_k]
        return statistics.fmean(values), statistics.pstdev(values)

    out = []
    for s, i, j in zip(scores, ei, ti):
        me, se = stats(enroll[i])
        mt, st = stats(test[j])
        z, t = (s - me) / se, (s - mt) / st
        out.append({"z": z, "t": t, "s": (z + t) / 2, "as": (z + t) / 2}[method])
    return np.array(out)


@pytest.mark.parametrize("method", ["z", "t", "s", "as"])
def test_score_norm_matches_plain_loops(method):
    rng = np.random.default_rng(10)
    backend = CosineBackend()
    enroll = backend.prepare(rng.normal(size=(6, 5)))
    test = backend.prepare(rng.normal(size=(7, 5)))
    cohort = backend.prepare(rng.normal(size=(25, 5)))
    ei, ti = rng.integers(0, 6, 40), rng.integers(0, 7, 40)
    raw = backend.score_pairs(enroll, test, ei, ti).astype(np.float64)

    def dot(u, v):
        return float(np.dot(u.astype(np.float64), v))

    expected = _loop_norm(dot, raw, enroll, test, ei, ti, cohort, method, 5)
    got = score_norm(backend, raw, enroll, test, ei, ti, cohort, method, top_k=5, chunk_rows=4)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # One shared embedding set for both sides (statistics computed once).
    ei2, ti2 = rng.integers(0, 6, 40), rng.integers(0, 6, 40)
    raw2 = backend.score_pairs(enroll, enroll, ei2, ti2).astype(np.float64)
    expected2 = _loop_norm(dot, raw2, enroll, enroll, ei2, ti2, cohort, method, 5)
    got2 = score_norm(backend, raw2, enroll, enroll, ei2, ti2, cohort, method, top_k=5)
    np.testing.assert_allclose(got2, expected2, rtol=1e-5, atol=1e-5)


def test_as_norm_with_plda_matches_plain_loop():
    rng = np.random.default_rng(11)
    (train_x, train_spk), test_x, pairs, _ = _anisotropic_sets(rng)
    backend = PLDABackend.trained_on(train_x, train_spk)
    x = backend.prepare(test_x[:10])
    cohort = backend.prepare(train_x[:40])
    ei, ti = rng.integers(0, 10, 30), rng.integers(0, 10, 30)
    raw = backend.score_pairs(x, x, ei, ti)
    expected = _loop_norm(backend.plda.llr, raw, x, x, ei, ti, cohort, "as", 7)
    got = score_norm(backend, raw, x, x, ei, ti, cohort, "as", top_k=7)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_score_norm_errors():
    backend = CosineBackend()
    x = backend.prepare(np.eye(3))
    ei = ti = np.array([0, 1])
    with pytest.raises(ValueError, match="top_k=5"):
        score_norm(backend, np.zeros(2), x, x, ei, ti, x, "as", top_k=5)
    with pytest.raises(ValueError, match="zero spread.*u0"):
        score_norm(backend, np.zeros(2), x, x, ei, ti, x[:1], "z", enroll_ids=["u0", "u1", "u2"])


def test_speaker_means():
    x = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]])
    names, means = speaker_means(x, ["b", "b", "a"])
    assert names == ["a", "b"]
    np.testing.assert_allclose(means, [[5, 5], [2, 1]])


# ---------------------------------------------------------------------------------------
# Scoring CLI


@pytest.fixture
def recipe(tmp_path):
    """A test set (shared enroll/test scp), a labelled training set and a shuffled trial list."""
    rng = np.random.default_rng(12)
    (train_x, train_spk), test_x, _, _ = _anisotropic_sets(rng)
    test_x, test_ids = test_x[:40], [f"spk{i // 4:02d}-u{i % 4}" for i in range(40)]
    train_ids = [f"tr{s:03d}-{i:04d}" for i, s in enumerate(train_spk)]
    d = {
        "test_scp": write_embeddings(tmp_path / "test", test_ids, test_x),
        "train_scp": write_embeddings(tmp_path / "train", train_ids, train_x),
        "utt2spk": tmp_path / "utt2spk",
        "trials": tmp_path / "trials",
        "tmp": tmp_path,
        "test_x": test_x.astype(np.float32),
        "test_ids": test_ids,
    }
    write_table(d["utt2spk"], {u: f"tr{s:03d}" for u, s in zip(train_ids, train_spk)})
    pairs = [(a, b) for i, a in enumerate(test_ids) for b in test_ids[i + 1 :]]
    order = rng.permutation(len(pairs))
    d["trial_list"] = [(*pairs[k], pairs[k][0][:5] == pairs[k][1][:5]) for k in order]
    write_trials(d["trials"], d["trial_list"])
    return d


def _score(recipe, *extra, output="scores") -> int:
    out = recipe["tmp"] / output
    base = ["--trials", str(recipe["trials"]), "--enroll", recipe["test_scp"]]
    return score_cli.main(base + ["--test", recipe["test_scp"], "--output", str(out), *extra])


def _run(recipe, *extra, output="scores"):
    assert _score(recipe, *extra, output=output) == 0
    enrolls, tests, scores = read_scores(recipe["tmp"] / output)
    return list(zip(enrolls, tests)), scores


def _fails(recipe, capsys, *extra) -> str:
    """The error line of a scoring run that must fail (exit status 1)."""
    capsys.readouterr()
    assert _score(recipe, *extra, output="failed") == 1
    return capsys.readouterr().err


def test_score_cli_cosine_order_values_and_single_loading(recipe, monkeypatch):
    calls = []
    original = arkio._read_object
    monkeypatch.setattr(
        arkio,
        "_read_object",
        lambda fd, where: calls.append(where) or original(fd, where),
    )
    pairs, scores = _run(recipe, "--backend", "cosine", "--no-subtract-mean")
    assert pairs == [(e, t) for e, t, _ in recipe["trial_list"]]
    assert len(calls) == 40  # 780 trials over 40 embeddings: each read once
    row = {u: i for i, u in enumerate(recipe["test_ids"])}
    x = recipe["test_x"].astype(np.float64)
    expected = [
        x[row[e]] @ x[row[t]] / np.linalg.norm(x[row[e]]) / np.linalg.norm(x[row[t]])
        for e, t in pairs
    ]
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    _, centred = _run(recipe, "--subtract-mean", "--train", recipe["train_scp"])
    _, default = _run(recipe, "--backend", "cosine", "--train", recipe["train_scp"])
    np.testing.assert_array_equal(default, scores)  # plain cosine unless asked
    assert not np.allclose(centred, scores)
    # Separate enroll and test files: each side reads its own utterances only.
    other = recipe["tmp"] / "copy.scp"
    other.write_text(Path(recipe["test_scp"]).read_text())
    calls.clear()
    out = recipe["tmp"] / "separate"
    base = ["--no-subtract-mean", "--trials", str(recipe["trials"]), "--output", str(out)]
    assert score_cli.main(base + ["--enroll", recipe["test_scp"], "--test", str(other)]) == 0
    enrolls, tests, separate = read_scores(out)
    assert list(zip(enrolls, tests)) == pairs
    np.testing.assert_array_equal(separate, scores)
    assert len(calls) == len({e for e, _ in pairs}) + len({t for _, t in pairs})


def test_score_cli_missing_or_zero_embedding_is_named(recipe, capsys):
    write_trials(recipe["trials"], recipe["trial_list"][:5] + [("ghost", "spk00-u0", False)])
    assert re.search(
        "no embedding for 1 utterance.*ghost", _fails(recipe, capsys, "--no-subtract-mean")
    )
    x = recipe["test_x"].copy()
    x[3] = 0
    recipe["test_scp"] = write_embeddings(recipe["tmp"] / "zero", recipe["test_ids"], x)
    write_trials(recipe["trials"], recipe["trial_list"])
    assert re.search("all-zero embedding.*: spk00-u3", _fails(recipe, capsys, "--no-subtract-mean"))


def test_score_cli_reads_its_config_section_and_options_override_it(recipe, tmp_path, capsys):
    """scoring: keys come from --config; the command line overrides them one by one."""
    config = tmp_path / "c.yaml"
    config.write_text("scoring: {subtract_mean: false, norm: s}\n")
    train = ["--train", recipe["train_scp"]]
    _, from_config = _run(recipe, "--config", str(config), *train)
    _, plain_s_norm = _run(recipe, "--no-subtract-mean", "--norm", "s", *train)
    np.testing.assert_array_equal(from_config, plain_s_norm)
    _, overridden = _run(recipe, "--config", str(config), "--norm", "none", *train)
    _, plain = _run(recipe, "--no-subtract-mean")
    np.testing.assert_array_equal(overridden, plain)
    assert "scoring.norm s needs --train" in _fails(recipe, capsys, "--config", str(config))
    err = _fails(recipe, capsys, "--subtract-mean")
    assert "scoring.subtract_mean (or --no-subtract-mean) needs --train" in err
    config.write_text("scoring: {backend: pdla}\n")
    err = _fails(recipe, capsys, "--config", str(config))
    assert "'scoring.backend' is 'pdla'; allowed: cosine, plda" in err


def test_score_cli_plda_model_reuse_and_norm(recipe, capsys):
    model = recipe["tmp"] / "backend" / "plda.npz"
    train = ["--train", recipe["train_scp"], "--train-utt2spk", str(recipe["utt2spk"])]
    opts = ["--backend", "plda", "--lda-dim", "10", "--backend-model", str(model)]
    pairs, first = _run(recipe, *opts, *train)
    assert model.is_file()
    assert pairs == [(e, t) for e, t, _ in recipe["trial_list"]]
    _, again = _run(recipe, *opts)  # no training data needed: the model is loaded
    np.testing.assert_array_equal(again, first)
    err = _fails(
        recipe, capsys, "--backend", "plda", "--lda-dim", "8", "--backend-model", str(model)
    )
    assert "lda_dim: saved 10, asked 8" in err
    assert "needs --train and --train-utt2spk" in _fails(recipe, capsys, "--backend", "plda")
    labels = np.array([y for _, _, y in recipe["trial_list"]])
    assert compute_eer(first, labels)[0] < 0.2
    cohort = [*train, "--cohort-speaker-means"]
    _, normed = _run(recipe, *opts, "--norm", "as", "--top-k", "50", *cohort)
    backend = load_backend(model)
    from sslsv.backend import load_labelled_embeddings

    _, cx, spk = load_labelled_embeddings(recipe["train_scp"], recipe["utt2spk"])
    x = backend.prepare(recipe["test_x"])
    row = {u: i for i, u in enumerate(recipe["test_ids"])}
    ei = np.array([row[e] for e, _ in pairs])
    ti = np.array([row[t] for _, t in pairs])
    expected = score_norm(
        backend, first, x, x, ei, ti, backend.prepare(speaker_means(cx, spk)[1]), "as", 50
    )
    np.testing.assert_allclose(normed, expected, rtol=1e-6, atol=1e-6)
    err = _fails(recipe, capsys, *opts, "--norm", "as", "--top-k", "500", *cohort)
    assert "scoring.top_k 500 exceeds cohort size 400" in err


def test_score_cli_per_utterance_cohort_and_duplicate_trials(recipe, capsys):
    centred = ["--subtract-mean", "--train", recipe["train_scp"]]
    pairs, raw = _run(recipe, "--backend", "cosine", *centred)
    _, normed = _run(recipe, *centred, "--norm", "s")
    _, train_x = load_embeddings(recipe["train_scp"])
    backend = CosineBackend.trained_on(train_x)
    x = backend.prepare(recipe["test_x"])
    row = {u: i for i, u in enumerate(recipe["test_ids"])}
    ei = np.array([row[e] for e, _ in pairs])
    ti = np.array([row[t] for _, t in pairs])
    expected = score_norm(backend, raw, x, x, ei, ti, backend.prepare(train_x), "s")
    np.testing.assert_allclose(normed, expected, rtol=1e-5, atol=1e-5)
    write_trials(recipe["trials"], recipe["trial_list"][:3] + recipe["trial_list"][1:2])
    assert re.search(r"duplicate .*line\(s\) 4", _fails(recipe, capsys, "--no-subtract-mean"))
