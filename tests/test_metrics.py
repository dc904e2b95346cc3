"""Metrics against brute-force references, hand-computed values, and the metrics CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sslsv.bin import compute_metrics as cli
from sslsv.datadir.io import write_trials
from sslsv.errors import DataError
from sslsv.metrics import (
    compute_act_dcf,
    compute_cllr,
    compute_eer,
    compute_metrics,
    compute_min_dcf,
    det_curve,
)
from sslsv.scores import scores_for_trials

# ---------------------------------------------------------------------------------------
# Brute-force references: every distinct score (and +inf) as a threshold, plain loops.


def brute_rates(scores, labels):
    scores = [float(s) for s in scores]
    labels = [bool(y) for y in labels]
    n_tar = sum(labels)
    n_non = len(labels) - n_tar
    points = []
    for t in sorted(set(scores)) + [math.inf]:
        miss = sum(1 for s, y in zip(scores, labels) if y and s < t)
        fa = sum(1 for s, y in zip(scores, labels) if not y and s >= t)
        points.append((t, miss / n_tar, fa / n_non))
    return points


def brute_eer(scores, labels):
    points = brute_rates(scores, labels)
    for (t0, m0, f0), (t1, m1, f1) in zip(points, points[1:]):
        if m1 - f1 >= 0:  # first point where the miss rate has caught up
            # Solve m0 + a (m1 - m0) = f0 + a (f1 - f0) for a.
            a = (f0 - m0) / ((m1 - m0) - (f1 - f0))
            if a == 1:
                threshold = t1
            elif t1 == math.inf:
                threshold = t0
            else:
                threshold = t0 + a * (t1 - t0)
            return m0 + a * (m1 - m0), threshold
    raise AssertionError("no crossing")


def brute_min_dcf(scores, labels, p, c_miss=1.0, c_fa=1.0):
    best = math.inf
    for _, miss, fa in brute_rates(scores, labels):
        best = min(best, c_miss * p * miss + c_fa * (1 - p) * fa)
    return best / min(c_miss * p, c_fa * (1 - p))


def random_scores(rng, n, tied=False):
    labels = rng.random(n) < 0.3
    labels[:2] = [True, False]
    scores = rng.normal(size=n) + 1.5 * labels
    if tied:
        scores = np.round(scores * 2) / 2  # few distinct values, many ties across classes
    return scores, labels


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_brute_force(seed, tied):
    rng = np.random.default_rng(seed)
    scores, labels = random_scores(rng, 300, tied)
    points = brute_rates(scores, labels)
    p_miss, p_fa, thresholds = det_curve(scores, labels)
    np.testing.assert_array_equal(thresholds, [p[0] for p in points])
    np.testing.assert_allclose(p_miss, [p[1] for p in points], atol=1e-15)
    np.testing.assert_allclose(p_fa, [p[2] for p in points], atol=1e-15)
    eer, threshold = compute_eer(scores, labels)
    brute, brute_threshold = brute_eer(scores, labels)
    assert eer == pytest.approx(brute, abs=1e-12)
    assert threshold == pytest.approx(brute_threshold, abs=1e-12)
    for p in (0.01, 0.05, 0.5):
        assert compute_min_dcf(scores, labels, p)[0] == pytest.approx(
            brute_min_dcf(scores, labels, p), abs=1e-12
        )
    assert compute_min_dcf(scores, labels, 0.1, c_miss=10, c_fa=2)[0] == pytest.approx(
        brute_min_dcf(scores, labels, 0.1, 10, 2), abs=1e-12
    )


def test_ties_are_one_operating_point_whatever_the_order():
    rng = np.random.default_rng(5)
    scores, labels = random_scores(rng, 500, tied=True)
    assert len(np.unique(scores)) < 30
    reference = compute_metrics(scores, labels, (0.01, 0.05))
    for _ in range(3):
        perm = rng.permutation(len(scores))
        assert compute_metrics(scores[perm], labels[perm], (0.01, 0.05)) == reference


def test_hand_computed_example():
    # Sorted: .1n .2n .3n .4t .7n .8t .9t. At threshold .4: miss 0, fa 1/4; at .7: miss 1/3,
    # fa 1/4. Crossing at alpha = .25 / (.25 + 1/12) = .75: EER = .75 / 3 = .25, threshold
    # .4 + .75 * .3 = .625. DCF(p=.5) = miss + fa, smallest (.25) at threshold .4.
    scores = np.array([0.9, 0.8, 0.4, 0.7, 0.3, 0.2, 0.1])
    labels = np.array([1, 1, 1, 0, 0, 0, 0])
    eer, threshold = compute_eer(scores, labels)
    assert eer == pytest.approx(0.25)
    assert threshold == pytest.approx(0.625)
    assert compute_min_dcf(scores, labels, 0.5) == pytest.approx((0.25, 0.4))
    # p=.01: normaliser .01; rejecting all costs .01 * 1 -> 1.0; accepting >= .8 costs
    # (.01 / 3) / .01 = 1/3.
    assert compute_min_dcf(scores, labels, 0.01) == pytest.approx((1 / 3, 0.8))


def test_hand_computed_ties():
    # .1n then .5 {t, t, n}: points (miss, fa) = (0, 1), (0, .5), (1, 0). Crossing between
    # the last two at alpha = .5 / 1.5: EER 1/3; the accept-nothing point has threshold inf,
    # so the EER threshold is .5.
    eer, threshold = compute_eer(np.array([0.5, 0.5, 0.5, 0.1]), np.array([1, 1, 0, 0]))
    assert eer == pytest.approx(1 / 3)
    assert threshold == 0.5


def test_act_dcf_and_cllr_by_hand():
    scores = np.array([2.0, -1.0, -3.0, 0.5])
    labels = np.array([True, True, False, False])
    # p = .5: Bayes threshold 0; one miss (-1) of 2 targets, one false alarm (.5) of 2.
    assert compute_act_dcf(scores, labels, 0.5) == pytest.approx((1.0, 0.0))
    # p = .01: threshold log(99) = 4.6: every target missed, no false alarm -> 1.
    assert compute_act_dcf(scores, labels, 0.01)[0] == pytest.approx(1.0)
    expected = (
        (math.log2(1 + math.exp(-2)) + math.log2(1 + math.exp(1))) / 2
        + (math.log2(1 + math.exp(-3)) + math.log2(1 + math.exp(0.5))) / 2
    ) / 2
    assert compute_cllr(scores, labels) == pytest.approx(expected)
    # Perfect, confident scores cost almost nothing; all-zero LLRs cost exactly one bit.
    assert compute_cllr(np.array([30.0, -30.0]), np.array([1, 0])) < 1e-10
    assert compute_cllr(np.zeros(4), np.array([1, 0, 1, 0])) == pytest.approx(1.0)


def test_perfect_and_inverted_separation():
    labels = np.array([0, 0, 1, 1])
    assert compute_eer(np.array([0.0, 1.0, 2.0, 3.0]), labels)[0] == 0.0
    assert compute_min_dcf(np.array([0.0, 1.0, 2.0, 3.0]), labels)[0] == 0.0
    assert compute_eer(np.array([3.0, 2.0, 1.0, 0.0]), labels)[0] == 1.0
    assert compute_min_dcf(np.array([3.0, 2.0, 1.0, 0.0]), labels)[0] == 1.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="both target and non-target"):
        compute_eer(np.array([1.0, 2.0]), np.array([1, 1]))
    with pytest.raises(ValueError, match="non-finite"):
        compute_eer(np.array([1.0, np.nan]), np.array([1, 0]))
    with pytest.raises(ValueError, match="equal length"):
        compute_eer(np.array([1.0, 2.0, 3.0]), np.array([1, 0]))
    with pytest.raises(ValueError, match="p_target"):
        compute_min_dcf(np.array([1.0, 2.0]), np.array([1, 0]), p_target=1.0)


def test_compute_metrics_agrees_with_the_single_functions():
    rng = np.random.default_rng(3)
    scores, labels = random_scores(rng, 2000)
    result = compute_metrics(scores, labels, (0.01, 0.05))
    assert (result["eer"], result["eer_threshold"]) == compute_eer(scores, labels)
    for p in (0.01, 0.05):
        assert result["min_dcf"][p] == compute_min_dcf(scores, labels, p)[0]
        assert result["act_dcf"][p] == compute_act_dcf(scores, labels, p)[0]
    assert result["cllr"] == compute_cllr(scores, labels)
    assert (result["n_target"], result["n_nontarget"]) == (labels.sum(), (~labels).sum())


# ---------------------------------------------------------------------------------------
# Score files and the CLI


def _write(tmp_path, trials, scores_lines):
    trials_path = tmp_path / "trials"
    write_trials(trials_path, trials)
    scores_path = tmp_path / "scores"
    scores_path.write_text("".join(line + "\n" for line in scores_lines))
    return trials_path, scores_path


TRIALS = [("a", "b", True), ("a", "c", False), ("b", "c", False), ("c", "d", True)]
SCORES = {("a", "b"): 0.9, ("a", "c"): 0.2, ("b", "c"): 0.5, ("c", "d"): 0.4}


def test_scores_matched_by_pair_in_any_order(tmp_path):
    lines = [f"{e} {t} {SCORES[e, t]}" for e, t, _ in reversed(TRIALS)]
    trials_path, scores_path = _write(tmp_path, TRIALS, lines)
    scores, labels = scores_for_trials(trials_path, scores_path)
    np.testing.assert_array_equal(scores, [SCORES[e, t] for e, t, _ in TRIALS])
    np.testing.assert_array_equal(labels, [y for _, _, y in TRIALS])


def test_missing_extra_and_duplicate_scores_are_named(tmp_path):
    lines = [f"{e} {t} {SCORES[e, t]}" for e, t, _ in TRIALS]
    trials_path, scores_path = _write(tmp_path, TRIALS, lines[:3])
    with pytest.raises(DataError, match=r"1 trial\(s\).*have no score.*\(c d\)"):
        scores_for_trials(trials_path, scores_path)
    trials_path, scores_path = _write(tmp_path, TRIALS, lines + ["x y 0.3"])
    with pytest.raises(DataError, match=r"1 score\(s\) match no trial.*\(x y\)"):
        scores_for_trials(trials_path, scores_path)
    trials_path, scores_path = _write(tmp_path, TRIALS, lines + ["a b 0.3"])
    with pytest.raises(DataError, match=r"duplicate.*line\(s\) 5.*\(a b\)"):
        scores_for_trials(trials_path, scores_path)
    trials_path, scores_path = _write(tmp_path, TRIALS + [("a", "b", False)], lines)
    with pytest.raises(DataError, match=r"trials: duplicate.*\(a b\)"):
        scores_for_trials(trials_path, scores_path)
    trials_path, scores_path = _write(tmp_path, TRIALS, [])
    with pytest.raises(DataError, match=r"4 trial\(s\).*have no score.*\(a b\)"):
        scores_for_trials(trials_path, scores_path)
    trials_path, scores_path = _write(tmp_path, TRIALS, lines[:3] + ["c d nan"])
    with pytest.raises(DataError, match=r"scores:4: score 'nan' is not finite"):
        scores_for_trials(trials_path, scores_path)
    trials_path, scores_path = _write(tmp_path, TRIALS, lines[:3] + ["c d"])
    with pytest.raises(DataError, match=r"scores:4: expected 'enroll test score'"):
        scores_for_trials(trials_path, scores_path)


def _random_files(tmp_path, n=400):
    rng = np.random.default_rng(0)
    scores, labels = random_scores(rng, n)
    trials = [(f"e{i:03d}", f"t{i:03d}", bool(y)) for i, y in enumerate(labels)]
    lines = [f"e{i:03d} t{i:03d} {float(s)!r}" for i, s in enumerate(scores)]
    return scores, labels, _write(tmp_path, trials, lines)


def test_cli_text_json_and_output_file(tmp_path, capsys):
    scores, labels, (trials_path, scores_path) = _random_files(tmp_path)
    out_file = tmp_path / "result.txt"
    args = ["--trials", str(trials_path), "--scores", str(scores_path)]
    assert cli.main(args + ["--p-target", "0.01", "0.05", "--output", str(out_file)]) == 0
    text = capsys.readouterr().out
    assert text == out_file.read_text()
    values = dict(line.split(": ") for line in text.splitlines())
    assert list(values) == [
        "EER",
        "minDCF(p=0.01)",
        "minDCF(p=0.05)",
        "actDCF(p=0.01)",
        "actDCF(p=0.05)",
        "Cllr",
        "#target",
        "#nontarget",
    ]
    assert float(values["EER"].rstrip("%")) == pytest.approx(
        100 * brute_eer(scores, labels)[0], abs=1e-4
    )
    assert float(values["minDCF(p=0.05)"]) == pytest.approx(
        brute_min_dcf(scores, labels, 0.05), abs=1e-4
    )
    assert int(values["#target"]) == labels.sum()
    assert int(values["#nontarget"]) == (~labels).sum()

    assert cli.main(args + ["--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["eer_percent"] == pytest.approx(100 * brute_eer(scores, labels)[0])
    assert set(result["min_dcf"]) == {"0.01"}
    assert result["n_target"] + result["n_nontarget"] == len(scores)
    # The priors can come from the config's scoring.p_target instead.
    config = tmp_path / "c.yaml"
    config.write_text("scoring: {p_target: [0.05, 0.01]}\n")
    assert cli.main(args + ["--config", str(config)]) == 0
    assert "minDCF(p=0.05)" in capsys.readouterr().out


def test_cli_plots(tmp_path):
    _, _, (trials_path, scores_path) = _random_files(tmp_path)
    plots = tmp_path / "plots"
    args = ["--trials", str(trials_path), "--scores", str(scores_path), "--plot-dir", str(plots)]
    assert cli.main(args) == 0
    for name in ("det.png", "score_hist.png"):
        assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in plots.iterdir()) == ["det.png", "score_hist.png"]


def test_cli_errors(tmp_path, capsys):
    trials_path, scores_path = _write(tmp_path, TRIALS, ["a b 1.0"])
    assert cli.main(["--trials", str(trials_path), "--scores", str(scores_path)]) == 1
    assert "have no score" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--trials", "t", "--scores", "s", "--p-target", "2"])


def test_cli_json_reject_all_threshold_is_null(tmp_path, capsys):
    # Scores inverted: at p=0.01 rejecting every trial is optimal (threshold +inf).
    trials = [("a", "b", False), ("a", "c", False), ("b", "c", True), ("c", "d", True)]
    lines = ["a b 3", "a c 2", "b c 1", "c d 0"]
    trials_path, scores_path = _write(tmp_path, trials, lines)
    assert cli.main(["--trials", str(trials_path), "--scores", str(scores_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["min_dcf"] == {"0.01": 1.0}
    assert result["min_dcf_threshold"] == {"0.01": None}
