"""Score calibration: the fit against a plain Newton, known Gaussian LLRs, held-out actDCF,
thresholds against brute force, quality measures, the JSON file and the three CLIs."""

from __future__ import annotations

import dataclasses
import json
import math
import pickle

import kaldiio
import numpy as np
import pytest

from sslsv.bin import calibrate as calibrate_cli
from sslsv.bin import compute_metrics as metrics_cli
from sslsv.bin import score as score_cli
from sslsv.calibration import (
    Calibration,
    bayes_threshold,
    calibration_objective,
    decide,
    far_threshold,
    fit_calibration,
    fit_linear,
    quality_measures,
)
from sslsv.config.schema import ScoringConfig
from sslsv.datadir.io import write_trials
from sslsv.errors import DataError
from sslsv.fileio import write_table
from sslsv.metrics import compute_act_dcf, compute_cllr, compute_eer, compute_min_dcf
from sslsv.scores import read_scores

# ---------------------------------------------------------------------------------------
# Helpers


def gaussian_scores(rng, n_tar, n_non, mu0=0.1, mu1=0.6, s=0.1):
    """Equal-variance Gaussian scores: the true LLR is linear in the score."""
    scores = np.concatenate([rng.normal(mu1, s, n_tar), rng.normal(mu0, s, n_non)])
    labels = np.concatenate([np.ones(n_tar, bool), np.zeros(n_non, bool)])
    order = rng.permutation(len(scores))
    return scores[order], labels[order]


def plain_newton(features, labels, p):
    """Newton's method with step halving on the raw-scale objective, written from its
    definition: an implementation independent of fit_linear's."""
    x = np.column_stack([features, np.ones(len(features))]).astype(np.float64)
    y = labels.astype(np.float64)
    w = np.where(labels, p / y.sum(), (1 - p) / (len(y) - y.sum()))
    offset = math.log(p / (1 - p))

    def loss(theta):
        z = x @ theta + offset
        return float(np.sum(w * np.where(labels, np.logaddexp(0, -z), np.logaddexp(0, z))))

    theta = np.zeros(x.shape[1])
    for _ in range(200):
        z = x @ theta + offset
        sig = 1 / (1 + np.exp(-z))
        grad = x.T @ (w * (sig - y))
        if np.abs(grad).max() < 1e-15:
            break
        step = np.linalg.solve(x.T @ (x * (w * sig * (1 - sig))[:, None]), grad)
        t = 1.0
        while loss(theta - t * step) > loss(theta) and t > 1e-10:
            t /= 2
        theta = theta - t * step
    return theta[:-1], theta[-1], loss(theta)


def duration_trials(rng, n_trials, n_utts=3000, shift=0.1):
    """Trials over utterances of 2-60 s whose scores move with log min duration (both
    classes alike, so the true LLR is linear in the score and that quality measure)."""
    utts = [f"u{i:05d}" for i in range(n_utts)]
    durations = dict(zip(utts, np.exp(rng.uniform(np.log(2), np.log(60), n_utts)).tolist()))
    pair = rng.choice(n_utts * (n_utts - 1), n_trials, replace=False)  # distinct, e != t
    e, t = pair // (n_utts - 1), pair % (n_utts - 1)
    t = t + (t >= e)
    enrolls, tests = [utts[i] for i in e], [utts[i] for i in t]
    labels = rng.random(n_trials) < 0.1
    q = quality_measures(["log_dur_min"], enrolls, tests, durations)[:, 0]
    scores = rng.normal(np.where(labels, 0.45, 0.1) + shift * (q - np.log(2)), 0.1)
    return enrolls, tests, durations, scores, labels


def write_score_files(tmp_path, enrolls, tests, labels, scores, name="dev"):
    trials, score_file = tmp_path / f"{name}.trials", tmp_path / f"{name}.scores"
    write_trials(trials, list(zip(enrolls, tests, labels.tolist())))
    score_file.write_text(
        "".join(f"{a} {b} {s!r}\n" for a, b, s in zip(enrolls, tests, scores.tolist()))
    )
    return trials, score_file


def synthetic_files(tmp_path, n=3000, seed=0, name="dev"):
    rng = np.random.default_rng(seed)
    scores, labels = gaussian_scores(rng, n // 10, n)
    ids = [f"e{i:05d}" for i in range(len(scores))], [f"t{i:05d}" for i in range(len(scores))]
    return (*write_score_files(tmp_path, *ids, labels, scores, name), scores, labels)


def error_line(main, argv, capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


# ---------------------------------------------------------------------------------------
# The fit


@pytest.mark.parametrize("p", [0.5, 0.01, 0.001])
def test_fit_matches_a_plain_newton(p):
    rng = np.random.default_rng(1)
    scores, labels = gaussian_scores(rng, 500, 5000, s=0.15)
    quality = rng.normal(size=(len(scores), 2)) + 0.3 * labels[:, None]
    features = np.column_stack([scores, quality])
    weights, bias = fit_linear(features, labels, p)
    plain_w, plain_b, plain_loss = plain_newton(features, labels, p)
    np.testing.assert_allclose(weights, plain_w, rtol=1e-4, atol=1e-4)
    assert bias == pytest.approx(plain_b, rel=1e-4, abs=1e-4)
    fitted_loss = calibration_objective(features @ weights + bias, labels, p)
    assert fitted_loss <= plain_loss + 1e-12


def test_fit_recovers_the_true_gaussian_llr():
    mu0, mu1, s = 0.1, 0.6, 0.1
    scores, labels = gaussian_scores(np.random.default_rng(2), 20000, 200000, mu0, mu1, s)
    cal = fit_calibration(scores, labels, 0.01)
    assert cal.score_weight == pytest.approx((mu1 - mu0) / s**2, rel=0.03)
    assert cal.bias == pytest.approx(-(mu1**2 - mu0**2) / (2 * s**2), rel=0.03)
    assert (cal.n_target, cal.n_nontarget) == (20000, 200000)


def test_calibration_works_on_held_out_data():
    rng = np.random.default_rng(3)
    dev = gaussian_scores(rng, 5000, 50000, s=0.12)
    evl_scores, evl_labels = gaussian_scores(rng, 5000, 50000, s=0.12)
    assert compute_min_dcf(evl_scores, evl_labels, 0.01)[0] > 0.2  # not too easy
    cal = fit_calibration(*dev, 0.01)
    llr = cal.apply(evl_scores)
    min_dcf = compute_min_dcf(evl_scores, evl_labels, 0.01)[0]
    act_dcf = compute_act_dcf(llr, evl_labels, 0.01)[0]
    assert min_dcf <= act_dcf <= 1.1 * min_dcf
    assert compute_cllr(llr, evl_labels) < compute_cllr(evl_scores, evl_labels)
    assert compute_act_dcf(evl_scores, evl_labels, 0.01)[0] > 2 * min_dcf  # raw: no LLR
    np.testing.assert_array_equal(decide(llr, 0.01), llr >= math.log(99))
    assert cal.dev_metrics["after"]["cllr"] < cal.dev_metrics["before"]["cllr"]
    assert cal.dev_metrics["after"]["act_dcf"] < cal.dev_metrics["before"]["act_dcf"]


def test_quality_measures_lower_held_out_cllr():
    rng = np.random.default_rng(4)
    names = ["log_dur_min", "log_dur_max"]
    e, t, durations, scores, labels = duration_trials(rng, 40000)
    q = quality_measures(names, e, t, durations)
    plain = fit_calibration(scores, labels, 0.01)
    with_q = fit_calibration(scores, labels, 0.01, q, names)
    assert with_q.quality == names and len(with_q.quality_weights) == 2
    # The true LLR: 35 * (score - 0.275 - 0.1 * (log_dur_min - log 2)).
    assert with_q.quality_weights[0] == pytest.approx(-3.5, rel=0.1)
    assert with_q.score_weight == pytest.approx(35, rel=0.1)
    assert abs(with_q.quality_weights[1]) < 0.25 * abs(with_q.quality_weights[0])
    e, t, evl_durations, evl, evl_labels = duration_trials(rng, 40000)
    evl_q = quality_measures(names, e, t, evl_durations)
    cllr_plain = compute_cllr(plain.apply(evl), evl_labels)
    assert compute_cllr(with_q.apply(evl, evl_q), evl_labels) < 0.9 * cllr_plain
    assert "raw" not in with_q.thresholds["bayes"]["0.01"]
    with pytest.raises(ValueError, match="quality measures"):
        with_q.apply(evl)


def test_quality_measures_by_hand_and_missing_utterance():
    durations = {"a": 2.0, "b": 8.0, "c": 4.0, "z": 0.0}
    q = quality_measures(["log_dur_min", "log_dur_max"], ["a", "c"], ["b", "a"], durations)
    np.testing.assert_allclose(q, np.log([[2, 8], [2, 4]]))
    with pytest.raises(DataError, match=r"utt2dur: no duration for utterance 'x' \(and 1 more"):
        quality_measures(["log_dur_min"], ["a", "x", "y"], ["b", "b", "b"], durations)
    with pytest.raises(DataError, match="'z' has duration 0"):
        quality_measures(["log_dur_min"], ["a"], ["z"], durations)


def test_fit_refuses_what_has_no_finite_calibration():
    labels = np.array([True, True, False, False])
    with pytest.raises(ValueError, match="every target scores above"):
        fit_calibration(np.array([3.0, 2.0, 1.0, 0.0]), labels)
    with pytest.raises(ValueError, match="need both"):
        fit_calibration(np.array([1.0, 2.0]), np.array([False, False]))


def test_scores_ranked_the_wrong_way_give_the_uninformative_calibration(caplog):
    """An (untrained) model whose dev scores rank the trials backwards: the best map that
    keeps higher-is-more-target-like is LLR 0 everywhere (said in a warning)."""
    scores = np.array([0.0, 1.5, 2.0, 3.0, 1.0, 2.5])
    labels = np.array([1, 1, 0, 0, 0, 1], dtype=bool)
    unconstrained, _ = fit_linear(scores[:, None], labels, 0.01)
    assert unconstrained[0] < 0
    cal = fit_calibration(scores, labels)
    assert cal.score_weight == 0 and cal.bias == 0
    assert "not positive" in caplog.text
    np.testing.assert_array_equal(cal.apply(scores), 0.0)
    assert "raw" not in cal.thresholds["bayes"]["0.01"]
    # LLR 0 is the best constant: the objective is not lower a little to either side.
    at = calibration_objective(np.zeros(6), labels, 0.01)
    for c in (-0.01, 0.01):
        assert calibration_objective(np.full(6, c), labels, 0.01) > at


# ---------------------------------------------------------------------------------------
# Thresholds


def brute_far_threshold(scores, labels, rate):
    non = scores[~labels]
    for u in np.unique(scores):  # increasing
        if np.mean(non >= u) <= rate:
            return u
    return math.inf


@pytest.mark.parametrize("decimals", [None, 2])
def test_thresholds_against_metrics_and_brute_force(decimals):
    rng = np.random.default_rng(5)
    scores, labels = gaussian_scores(rng, 300, 3000)
    if decimals:
        scores = np.round(scores, decimals)  # ties: one operating point per value
    fars = (0.05, 0.01, 0.001, 0.0)
    cal = fit_calibration(scores, labels, 0.01, dcf_p_targets=(0.01, 0.001), fars=fars)
    llr = cal.apply(scores)
    th = cal.thresholds
    assert th["eer"]["raw"] == compute_eer(scores, labels)[1]
    assert th["eer"]["llr"] == compute_eer(llr, labels)[1]
    for p in (0.01, 0.001):
        assert th["min_dcf"][f"{p:g}"]["raw"] == compute_min_dcf(scores, labels, p)[1]
        assert th["min_dcf"][f"{p:g}"]["llr"] == compute_min_dcf(llr, labels, p)[1]
    for kind in ("eer", "min_dcf", "far"):  # no quality: LLR thresholds are a * raw + b
        for point in [th[kind]] if kind == "eer" else th[kind].values():
            expected = cal.score_weight * point["raw"] + cal.bias
            assert point["llr"] == pytest.approx(expected, rel=1e-9, abs=1e-9)
    distinct = np.unique(scores)
    for rate in fars:
        t, achieved = far_threshold(scores, labels, rate)
        assert t == brute_far_threshold(scores, labels, rate) == th["far"][f"{rate:g}"]["raw"]
        assert achieved == np.mean(scores[~labels] >= t) <= rate
        lower = distinct[distinct < t]
        if len(lower):
            assert np.mean(scores[~labels] >= lower[-1]) > rate
    bayes = th["bayes"]["0.01"]
    assert bayes["llr"] == bayes_threshold(0.01) == pytest.approx(math.log(99))
    assert cal.score_weight * bayes["raw"] + cal.bias == pytest.approx(math.log(99))


# ---------------------------------------------------------------------------------------
# The file


def small_calibration(**changes) -> Calibration:
    scores, labels = gaussian_scores(np.random.default_rng(6), 30, 300)
    cal = fit_calibration(scores, labels, 0.01, model="abc123", trials="dev/trials")
    return dataclasses.replace(cal, **changes)


def test_json_round_trip_with_infinite_threshold(tmp_path):
    cal = small_calibration(scoring=dataclasses.asdict(ScoringConfig()))
    cal.thresholds["min_dcf"]["1e-05"] = {"raw": math.inf, "llr": math.inf}
    path = tmp_path / "cal.json"
    cal.to_json(path)
    text = path.read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert data["format"] == "sslsv-calibration-1"
    assert data["thresholds"]["min_dcf"]["1e-05"] == {"raw": None, "llr": None}
    assert text.count("\n") > 20  # pretty
    assert Calibration.from_json(path) == cal
    assert Calibration.from_dict(json.loads(json.dumps(cal.to_dict(), allow_nan=False))) == cal
    np.testing.assert_array_equal(cal.decide(np.array([4.5, 4.7])), [False, True])  # log 99
    assert bool(cal.decide(6.0, 0.001)) is False and bool(cal.decide(7.0, 0.001)) is True
    with pytest.raises(DataError, match=r"^packaged: format is None"):
        Calibration.from_dict({}, "packaged")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "a JSON list"),
        (pickle.dumps({"format": "sslsv-calibration-1"}), "not JSON"),
        (b'{"format": "sslsv-calibration-0"}', "format is 'sslsv-calibration-0'"),
        (b'{"bias": NaN}', "not JSON"),
        (None, "missing key.*'bias'"),
        ("bias", "key 'bias' must be a number"),
        ("score_weight", "key 'score_weight' must be a number >= 0"),
        ("quality", "key 'quality' must be a list"),
        ("n_target", "key 'n_target' must be a count"),
        ("extra", "unknown key"),
    ],
)
def test_malformed_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    if not isinstance(content, bytes):
        data = json.loads(_written(tmp_path))
        if content is None:
            del data["bias"]
        else:
            data[content] = {"bias": "x", "score_weight": -1.0, "quality": "log_dur_min"}.get(
                content, True
            )
        content = json.dumps(data).encode()
    path.write_bytes(content)
    with pytest.raises(DataError, match=rf"^{path}: .*{message}") as info:
        Calibration.from_json(path)
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="file not found"):
        Calibration.from_json(tmp_path / "absent.json")


def _written(tmp_path) -> str:
    small_calibration().to_json(tmp_path / "good.json")
    return (tmp_path / "good.json").read_text()


# ---------------------------------------------------------------------------------------
# sslsv.bin.calibrate


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> tuple[str, str]:
    """``(model file, its fingerprint)``: the model hand-written scores are said to be of
    (``--checkpoint``: they have no stamp saying so)."""
    import torch

    from sslsv.config.load import config_to_dict, load_config
    from sslsv.models.embedding import EmbeddingModel
    from sslsv.train.checkpoint import model_fingerprint, model_payload

    cfg = load_config(None, ["encoder.name=resnet", "encoder.args={channels: [4], blocks: [1]}"])
    state = EmbeddingModel(cfg).state_dict()
    ckpt = tmp_path_factory.mktemp("model") / "final.pt"
    torch.save(model_payload(config_to_dict(cfg), state), ckpt)
    return str(ckpt), model_fingerprint(state)


def test_calibrate_cli_writes_the_file(tmp_path, capsys, tiny_model):
    trials, scores_path, scores, labels = synthetic_files(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text("scoring: {norm: s, top_k: 100}\n")
    out = tmp_path / "cal" / "cal.json"
    argv = ["--trials", str(trials), "--scores", str(scores_path), "--output", str(out)]
    argv += ["--checkpoint", tiny_model[0]]
    assert calibrate_cli.main(argv + ["--config", str(config), "--far", "0.02"]) == 0
    printed = capsys.readouterr().out
    assert "before calibration: EER" in printed and "after calibration: EER" in printed
    cal = Calibration.from_json(out)
    expected = fit_calibration(scores, labels, 0.01, fars=(0.02,), trials=str(trials))
    assert cal.score_weight == pytest.approx(expected.score_weight)
    assert cal.thresholds["far"].keys() == {"0.02"}
    assert cal.scoring["norm"] == "s" and cal.scoring["top_k"] == 100
    assert (cal.model, cal.trials) == (tiny_model[1], str(trials))


def test_calibrate_cli_with_durations(tmp_path, capsys, tiny_model):
    e, t, durations, scores, labels = duration_trials(np.random.default_rng(7), 4000, 400)
    trials, scores_path = write_score_files(tmp_path, e, t, labels, scores)
    utt2dur = tmp_path / "utt2dur"
    write_table(utt2dur, {u: repr(d) for u, d in durations.items()})
    out = tmp_path / "cal.json"
    argv = ["--trials", str(trials), "--scores", str(scores_path), "--output", str(out)]
    argv += ["--checkpoint", tiny_model[0]]
    assert calibrate_cli.main(argv + ["--utt2dur", str(utt2dur)]) == 0
    assert Calibration.from_json(out).quality == ["log_dur_min", "log_dur_max"]
    write_table(utt2dur, {u: repr(d) for u, d in durations.items() if u != e[0]})
    err = error_line(calibrate_cli.main, argv + ["--utt2dur", str(utt2dur)], capsys)
    assert f"no duration for utterance {e[0]!r}" in err


def test_calibrate_cli_bad_inputs(tmp_path, capsys, tiny_model):
    trials, scores_path, _, _ = synthetic_files(tmp_path, n=100)
    out = tmp_path / "cal.json"
    empty = tmp_path / "empty"
    empty.write_text("")
    argv = ["--scores", str(empty), "--output", str(out), "--checkpoint", tiny_model[0]]
    assert "need both target and non-target" in error_line(
        calibrate_cli.main, argv + ["--trials", str(empty)], capsys
    )
    assert "have no score" in error_line(
        calibrate_cli.main, argv + ["--trials", str(trials)], capsys
    )
    assert not out.exists()
    with pytest.raises(SystemExit):
        calibrate_cli.main(["--trials", "t", "--scores", "s", "--output", "o", "--p-target", "1"])


# ---------------------------------------------------------------------------------------
# sslsv.bin.score and sslsv.bin.compute_metrics with --calibration


@pytest.fixture
def embeddings(tmp_path):
    rng = np.random.default_rng(8)
    ids = [f"spk{i // 4}-u{i % 4}" for i in range(16)]
    x = rng.normal(size=(4, 8))[np.arange(16) // 4] + 0.8 * rng.normal(size=(16, 8))
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path}/emb.ark,{tmp_path}/emb.scp") as writer:
        for utt, vec in zip(ids, x):
            writer(utt, vec.astype(np.float32))
    pairs = [(a, b, a[:4] == b[:4]) for i, a in enumerate(ids) for b in ids[i + 1 :]]
    write_trials(tmp_path / "trials", pairs)
    write_table(tmp_path / "utt2dur", {u: str(2.0 + i) for i, u in enumerate(ids)})
    return tmp_path


def _score(tmp, output, *extra) -> int:
    scp, trials = str(tmp / "emb.scp"), str(tmp / "trials")
    base = ["--trials", trials, "--enroll", scp, "--test", scp, "--output", str(tmp / output)]
    return score_cli.main(base + ["--no-subtract-mean", *extra])


def test_score_cli_writes_llrs_and_refuses_other_settings(embeddings, capsys):
    tmp = embeddings
    assert _score(tmp, "raw") == 0
    e, t, raw = read_scores(tmp / "raw")
    settings = dataclasses.replace(ScoringConfig(), subtract_mean=False, p_target=[0.5])
    cal = Calibration(0.01, 7.5, -3.25, model="abc123", scoring=dataclasses.asdict(settings))
    cal.to_json(tmp / "cal.json")
    assert _score(tmp, "llr", "--calibration", str(tmp / "cal.json")) == 0  # p_target: no matter
    e2, t2, llr = read_scores(tmp / "llr")
    assert (e2, t2) == (e, t)
    np.testing.assert_allclose(llr, 7.5 * raw - 3.25, rtol=1e-8, atol=1e-8)

    centred = dataclasses.asdict(ScoringConfig(subtract_mean=True))
    dataclasses.replace(cal, scoring=centred).to_json(tmp / "o.json")
    err = error_line(lambda a: _score(tmp, "x", *a), ["--calibration", str(tmp / "o.json")], capsys)
    assert f"{tmp / 'o.json'}: fitted on scores made with other scoring settings" in err
    assert "subtract_mean: calibrated True, now False" in err and "p_target" not in err

    q = dataclasses.replace(cal, quality=["log_dur_min"], quality_weights=[0.5])
    q.to_json(tmp / "q.json")
    err = error_line(lambda a: _score(tmp, "x", *a), ["--calibration", str(tmp / "q.json")], capsys)
    assert "give --utt2dur" in err
    assert (
        _score(tmp, "q", "--calibration", str(tmp / "q.json"), "--utt2dur", str(tmp / "utt2dur"))
        == 0
    )
    dur = {f"spk{i // 4}-u{i % 4}": 2.0 + i for i in range(16)}
    expected = 7.5 * raw - 3.25 + 0.5 * np.log([min(dur[a], dur[b]) for a, b in zip(e, t)])
    np.testing.assert_allclose(read_scores(tmp / "q")[2], expected, rtol=1e-8, atol=1e-8)


def test_compute_metrics_cli_prints_calibrated_lines(tmp_path, capsys):
    trials, scores_path, scores, labels = synthetic_files(tmp_path)
    cal = fit_calibration(scores, labels, 0.01, model="abc123")
    cal.to_json(tmp_path / "cal.json")
    args = ["--trials", str(trials), "--scores", str(scores_path), "--p-target", "0.01", "0.05"]
    assert metrics_cli.main(args) == 0
    plain = capsys.readouterr().out
    assert metrics_cli.main(args + ["--calibration", str(tmp_path / "cal.json")]) == 0
    text = capsys.readouterr().out
    assert text.startswith(plain)
    extra = dict(line.split(": ") for line in text[len(plain) :].splitlines())
    llr = cal.apply(scores)
    assert list(extra) == [
        "actDCF(p=0.01) calibrated",
        "actDCF(p=0.05) calibrated",
        "Cllr calibrated",
    ]
    for p in (0.01, 0.05):
        value = float(extra[f"actDCF(p={p:g}) calibrated"])
        assert value == pytest.approx(compute_act_dcf(llr, labels, p)[0], abs=1e-4)
    assert float(extra["Cllr calibrated"]) == pytest.approx(compute_cllr(llr, labels), abs=1e-4)
    assert metrics_cli.main(args + ["--calibration", str(tmp_path / "cal.json"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["act_dcf_calibrated"]["0.05"] == pytest.approx(
        compute_act_dcf(llr, labels, 0.05)[0]
    )
    assert result["cllr_calibrated"] == pytest.approx(compute_cllr(llr, labels))
    assert metrics_cli.main(args + ["--json"]) == 0
    assert "cllr_calibrated" not in json.loads(capsys.readouterr().out)
    (tmp_path / "bad.json").write_text("[]")
    err = error_line(metrics_cli.main, args + ["--calibration", str(tmp_path / "bad.json")], capsys)
    assert "bad.json: not a calibration file" in err


def test_compute_metrics_cli_with_quality(tmp_path, capsys):
    e, t, durations, scores, labels = duration_trials(np.random.default_rng(9), 3000, 300)
    trials, scores_path = write_score_files(tmp_path, e, t, labels, scores)
    utt2dur = tmp_path / "utt2dur"
    write_table(utt2dur, {u: repr(d) for u, d in durations.items()})
    names = ["log_dur_min", "log_dur_max"]
    q = quality_measures(names, e, t, durations)
    cal = fit_calibration(scores, labels, 0.01, q, names, model="abc123")
    cal.to_json(tmp_path / "cal.json")
    args = ["--trials", str(trials), "--scores", str(scores_path), "--json"]
    args += ["--calibration", str(tmp_path / "cal.json")]
    assert "give --utt2dur" in error_line(metrics_cli.main, args, capsys)
    assert metrics_cli.main(args + ["--utt2dur", str(utt2dur)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["cllr_calibrated"] == pytest.approx(compute_cllr(cal.apply(scores, q), labels))
