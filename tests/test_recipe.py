"""End to end: egs/mini/run.sh on a tiny corpus, --stop-stage 5 (the paper's pipeline: SSL
and the stats baseline, RESULTS of the init, stats and ssl rows), then --stage 6 on from there
(two second-stage rounds, the supervised ceiling, RESULTS of every row); reruns, and bad
input."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import kaldiio
import numpy as np
import pytest
from conftest import REPO

import sslsv

TINY_CONFIG = """
base: simclr_ntxent_am.yaml
experiment: tiny
encoder:
  args: {channels: [4, 8, 8, 16], blocks: [1, 1, 1, 1], embed_dim: 16, stem_stride: [2, 2]}
train: {epochs: 2, batch_size: 16, num_workers: 0, average_last: 1}
"""
# The second stage and the ceiling at the same tiny scale (8 training speakers x 5 utts).
TINY_PL_CONFIG = """
base: classifier_pl.yaml
experiment: tiny_pl
encoder:
  args: {channels: [4, 8, 8, 16], blocks: [1, 1, 1, 1], embed_dim: 16, stem_stride: [2, 2]}
train: {epochs: 2, batch_size: 16, num_workers: 0, average_last: 1}
pseudo_label: {kmeans_clusters: 10, min_cluster_size: 2}
"""
# The rounds with the loss gate and label correction, then large-margin fine-tuning.
TINY_GATED_CONFIG = """
base: tiny_pl.yaml
experiment: tiny_gated
method: {gate: {kind: gmm, start_epoch: 1}, correction: {enabled: true, confidence: 0.5}}
"""
TINY_LMFT_CONFIG = """
base: tiny_gated.yaml
experiment: tiny_lmft
method: {margin: 0.4, margin_warmup: 0.0, gate: {kind: none}, correction: {enabled: false}}
train: {epochs: 1, crop_seconds: 3.0, lr: 0.0001}
"""
TINY_SUPERVISED_CONFIG = """
base: tiny_pl.yaml
experiment: tiny_supervised
pseudo_label: {init_from_seed: false}
"""

TINY_ARGS = ["--num-speakers", "12", "--utts-per-speaker", "5", "--num-test-speakers", "4",
             "--trials-per-utt", "6", "--num-rirs", "4", "--num-dev-speakers", "4", "--nj", "1",
             "--config", "conf/tiny.yaml",
             "--pl-config", "conf/tiny_gated.yaml", "--lmft-config", "conf/tiny_lmft.yaml",
             "--supervised-config", "conf/tiny_supervised.yaml"]  # fmt: skip


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    return make_recipe(tmp_path_factory.mktemp("mini recipe"))  # a space in the path


def make_recipe(work: Path) -> Path:
    """A recipe directory of links to egs/mini, like a user's copy for a new experiment."""
    mini = REPO / "egs" / "mini"
    work.mkdir(exist_ok=True)
    for name in ("run.sh", "sv.sh", "path.sh", "cmd.sh", "utils", "steps", "local"):
        os.symlink(mini / name, work / name)
    (work / "conf").mkdir()
    for conf in (mini / "conf").glob("*.yaml"):
        os.symlink(conf, work / "conf" / conf.name)
    (work / "conf" / "tiny.yaml").write_text(TINY_CONFIG)
    (work / "conf" / "tiny_pl.yaml").write_text(TINY_PL_CONFIG)
    (work / "conf" / "tiny_gated.yaml").write_text(TINY_GATED_CONFIG)
    (work / "conf" / "tiny_lmft.yaml").write_text(TINY_LMFT_CONFIG)
    (work / "conf" / "tiny_supervised.yaml").write_text(TINY_SUPERVISED_CONFIG)
    return work


def run(recipe: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    return subprocess.run(
        ["bash", str(recipe / "run.sh"), *TINY_ARGS, *args],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip


def brute_force_eer(scores: list[float], labels: list[bool]) -> float:
    """Sweep every threshold; EER where miss and false-alarm rates cross (interpolated)."""
    thresholds = sorted(set(scores))
    n_tar, n_non = sum(labels), len(labels) - sum(labels)
    points = []
    for t in [thresholds[0] - 1, *thresholds]:
        miss = sum(1 for s, y in zip(scores, labels) if y and s <= t) / n_tar
        fa = sum(1 for s, y in zip(scores, labels) if not y and s > t) / n_non
        points.append((miss, fa))
    for (m0, f0), (m1, f1) in zip(points, points[1:]):
        if m0 <= f0 and m1 >= f1:
            d0, d1 = f0 - m0, m1 - f1
            w = d0 / (d0 + d1) if d0 + d1 > 0 else 0.0
            return m0 + w * (m1 - m0)
    raise AssertionError("rates never cross")


@pytest.fixture(scope="module")
def finished(recipe):
    """Stages 0-5, their RESULTS and the SSL model's card kept beside the recipe (*.stage5),
    then stages 6-9."""
    first = run(recipe, "--stop-stage", "5")
    (recipe / "run.log").write_text(first.stderr)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    shutil.copy(recipe / "exp" / "tiny" / "RESULTS", recipe / "RESULTS.stage5")
    shutil.copy(recipe / "exp" / "tiny" / "model.card.md", recipe / "model.card.md.stage5")
    rest = run(recipe, "--stage", "6")
    (recipe / "run.log").write_text(first.stderr + rest.stderr)
    assert rest.returncode == 0, rest.stdout[-3000:] + rest.stderr[-3000:]
    return recipe


#: RESULTS row -> the directory and model name of its scores.
ROWS = {
    "init": ("tiny", "init"),
    "stats": ("stats", "final"),
    "ssl": ("tiny", "final"),
    "pl1": ("tiny_tiny_gated_pl1", "final"),
    "pl2": ("tiny_tiny_gated_pl2", "final"),
    "lmft": ("tiny_tiny_gated_lmft", "final"),
    "supervised": ("tiny_supervised", "final"),
}


def result_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("#")]


def test_stop_stage_5_is_the_first_stage_pipeline(finished):
    """--stop-stage 5 ends in RESULTS with the init, stats and ssl rows (calibrated), and a
    packaged SSL model, having made nothing that only the second stage needs (embeddings of
    the training set: plain cosine scoring does not read them); stage 9 rewrites RESULTS
    with every row, the first three identical."""
    first = (finished / "RESULTS.stage5").read_text()
    assert "# this run: stages 0-5 in" in first and "# clustering" not in first
    rows = result_lines(first)
    assert [line.split()[:2] for line in rows] == [
        [row, "test_trials"] for row in ("init", "stats", "ssl")
    ]
    assert all("Cllr calibrated:" in line for line in rows)
    assert (finished / "model.card.md.stage5").read_text().startswith("# ssl")
    log = (finished / "run.log").read_text()
    stage5_log = log[: log.index("stage 6:")]
    assert "embeddings of data/train" not in stage5_log
    assert "stage 5: " in stage5_log and "RESULTS" in stage5_log
    assert not (finished / "exp" / "tiny" / "embeddings_init" / "train").exists()
    assert not (finished / "exp" / "stats" / "embeddings_final" / "train").exists()
    final = (finished / "exp" / "tiny" / "RESULTS").read_text()
    assert "# this run: stages 6-9 in" in final
    assert result_lines(final)[:3] == rows
    assert [line.split()[0] for line in result_lines(final)] == list(ROWS)


def test_end_to_end_results_match_scores(finished):
    results = (finished / "exp" / "tiny" / "RESULTS").read_text()
    assert "# embeddings: whole utterances; scoring: cosine" in results
    assert re.search(r"^# clustering pl1: utterances 40, .*nmi [0-9.]+", results, re.M), results
    assert "# clustering pl2:" in results
    for row, (name, model) in ROWS.items():
        exp = finished / "exp" / name
        line = next(ln for ln in results.splitlines() if ln.startswith(f"{row} test_trials"))
        eer = float(re.search(r"EER: ([0-9.]+)%", line).group(1)) / 100
        assert re.search(r"minDCF\(p=0.01\): [0-9.]+", line)
        trials = {}
        for ln in (finished / "data" / "test" / "trials").read_text().splitlines():
            e, t, y = ln.split()
            trials[(e, t)] = y == "target"
        scores, labels = [], []
        for ln in (exp / f"scores_{model}" / "test_trials.scores").read_text().splitlines():
            e, t, s = ln.split()
            scores.append(float(s))
            labels.append(trials.pop((e, t)))
        assert not trials, "every trial is scored"
        assert eer == pytest.approx(brute_force_eer(scores, labels), abs=1e-4)
    assert (finished / "exp" / "tiny" / "plots_final" / "test_trials" / "det.png").stat().st_size
    # The second stage's data dirs: pseudo-speakers, keyed like the training set.
    train = (finished / "data" / "train" / "utt2spk").read_text().splitlines()
    for round in (1, 2):
        pl = (finished / "data" / f"train_tiny_tiny_gated_pl{round}" / "utt2spk").read_text()
        pl = pl.splitlines()
        assert {ln.split()[0] for ln in pl} <= {ln.split()[0] for ln in train}
        assert not {ln.split()[1] for ln in pl} & {ln.split()[1] for ln in train}
    # Round 2 is seeded by round 1's model, round 1 by the SSL model (same encoder).
    for seed in ("tiny", "tiny_tiny_gated_pl1", "tiny_tiny_gated_pl2"):
        assert (finished / "exp" / seed / "embeddings_final" / "train" / "embeddings.scp").exists()
    log = (finished / "run.log").read_text()
    assert "encoder initialised from exp/tiny_tiny_gated_pl1/final.pt" in log
    # Label correction: each round's labels as a data dir; fine-tuning trains on round 2's.
    for round in (1, 2):
        corrected = finished / "data" / f"train_tiny_tiny_gated_pl{round}_corrected"
        summary = json.loads((corrected / "relabel.json").read_text())
        kept = corrected.parent / corrected.name.removesuffix("_corrected") / "utt2spk"
        assert summary["utterances"] == len(kept.read_text().splitlines())
        assert "purity" in summary["after"]
    assert "on data/train_tiny_tiny_gated_pl2_corrected -> exp/tiny_tiny_gated_lmft" in log
    assert not (finished / "exp" / "tiny_tiny_gated_lmft" / "utt2label").exists()
    # The label-free choice: the dev audio's split-utterance EER of each candidate.
    selection = (finished / "exp" / "tiny_tiny_gated_SELECTION").read_text().splitlines()
    assert [x.split()[0] for x in selection[:-1]] == ["ssl", "pl1", "pl2", "lmft"]
    assert "label-free choice (split-utterance EER of the dev audio" in results
    assert results.count(selection[-1].split()[1]) >= 1


def test_calibration_thresholds_and_packaged_model(finished, monkeypatch):
    """Stage 4 calibrates each model on the dev trials (never the test trials), stages 5 and
    9 report calibrated actDCF/Cllr and THRESHOLDS, and package final.pt as model.pt, which
    the verify command and the API use; its embeddings are stage 3's."""
    exp = finished / "exp" / "tiny"
    cal = json.loads((exp / "calibration_final" / "calibration.json").read_text())
    assert cal["trials"] == "data/dev/trials" and cal["n_target"] > 0
    results = (exp / "RESULTS").read_text()
    assert re.search(r"^ssl test_trials EER: .* Cllr calibrated: [0-9.]+$", results, re.M)
    thresholds = (exp / "THRESHOLDS").read_text().splitlines()
    rows = [line.split()[0] for line in thresholds if not line.startswith("#")]
    assert "ssl" in rows and set(rows) <= set(ROWS)
    assert all(line.split()[1] == "data/dev/trials" for line in thresholds if line[0] != "#")
    package = exp / "model.pt"
    assert (exp / "model.card.md").read_text().startswith("# ssl")
    wavs = dict(
        ln.split(maxsplit=1)
        for ln in (finished / "data" / "test" / "wav.scp").read_text().splitlines()
    )
    utt2spk = dict(
        ln.split() for ln in (finished / "data" / "test" / "utt2spk").read_text().splitlines()
    )
    utts = sorted(wavs)
    same = next(u for u in utts[1:] if utt2spk[u] == utt2spk[utts[0]])
    other = next(u for u in utts if utt2spk[u] != utt2spk[utts[0]])
    for b in (same, other):
        result = subprocess.run(
            [str(REPO / ".venv" / "bin" / "python"), "-m", "sslsv.bin.verify", "--checkpoint",
             str(package), wavs[utts[0]], wavs[b]],
            capture_output=True, text=True, cwd=finished,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert [ln.split(":")[0] for ln in lines] == ["score", "llr", "decision"]
    monkeypatch.chdir(finished)  # the scp's ark paths are relative to the recipe
    stage5 = dict(kaldiio.load_scp("exp/tiny/embeddings_final/test/embeddings.scp"))
    model = sslsv.load_model(package)
    raw = model.embed([wavs[u] for u in utts[:3]], raw=True)
    for row, u in zip(raw, utts[:3]):
        np.testing.assert_allclose(row, stage5[u], atol=1e-4)


def test_single_stage_rerun_reuses_outputs(finished):
    """Stages 6-7 again: the seeds' embeddings of the training set and the trained rounds
    are not redone. (The embedding stages rerun the same extraction reuse for every model;
    tests/test_reuse.py covers it.)"""
    emb = finished / "exp" / "tiny_tiny_gated_pl1" / "embeddings_final" / "train" / "embeddings.scp"
    before = emb.stat().st_mtime_ns
    final = finished / "exp" / "tiny_tiny_gated_pl2" / "final.pt"
    final_before = final.stat().st_mtime_ns
    result = run(finished, "--stage", "6", "--stop-stage", "7")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "up to date" in result.stderr and "nothing to do" in result.stderr
    assert emb.stat().st_mtime_ns == before and final.stat().st_mtime_ns == final_before


def test_unknown_option_and_bad_stage(recipe):
    result = run(recipe, "--no-such-option", "1")
    assert result.returncode != 0 and "--no-such-option" in result.stderr
    result = run(recipe, "--stage", "10")
    assert result.returncode != 0 and "stages are 0 to 9" in result.stderr


@pytest.mark.parametrize(
    "section,named",
    [
        ("train: {epohcs: 3}", "train.epohcs"),
        ("scoring: {backend: pdla}", "'scoring.backend' is 'pdla'; allowed: cosine, plda"),
        (
            "method: {name: byol}",
            "'method.name' is 'byol'; allowed: classifier, dino, moco, simclr",
        ),
    ],
)
def test_bad_config_fails_before_any_stage(tmp_path, section, named):
    recipe = make_recipe(tmp_path / "recipe")
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"experiment: bad\n{section}\n")
    result = run(recipe, "--config", str(bad), "--stage", "0", "--stop-stage", "9")
    assert result.returncode == 1 and named in result.stderr
    assert not (recipe / "corpus").exists() and not (recipe / "data").exists()


def test_missing_audio_is_named_and_nothing_is_lost(finished, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(finished / "data" / "test", data, ignore=shutil.ignore_patterns("split*"))
    (data / "feats.scp").unlink()
    lines = (data / "wav.scp").read_text().splitlines()
    victim = lines[3].split()[0]
    lines[3] = f"{victim} {tmp_path}/gone.wav"
    (data / "wav.scp").write_text("\n".join(lines) + "\n")
    out = tmp_path / "emb"
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "sslsv.bin.extract", "--checkpoint",
         str(finished / "exp" / "tiny" / "final.pt"), "--data", str(data), "--output", str(out),
         "--nj", "2"],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert result.returncode != 0
    assert victim in result.stderr and "gone.wav" in result.stderr
    # The job that did not meet the bad file kept its finished output.
    assert (out / "embeddings.2.scp").exists()


def test_trial_without_embedding_is_named(finished, tmp_path):
    exp = finished / "exp" / "tiny"
    trials = tmp_path / "trials"
    first = (finished / "data" / "test" / "trials").read_text().splitlines()[0].split()
    trials.write_text(f"{first[0]} ghost-utt nontarget\n")
    emb = exp / "embeddings_final" / "test" / "embeddings.scp"
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "sslsv.bin.score", "--no-subtract-mean",
         "--trials", str(trials),
         "--enroll", str(emb), "--test", str(emb), "--output", str(tmp_path / "s")],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert result.returncode != 0 and "ghost-utt" in result.stderr


def test_changed_extract_section_reruns_the_embeddings_with_crops(finished):
    """Stages 3-5 with another extract: section. Last in this file: it replaces the finished
    experiment's embeddings and RESULTS."""
    (finished / "conf" / "tiny_crops.yaml").write_text(
        "base: tiny.yaml\nextract: {crop_seconds: 1.0, num_crops: 3, batch_size: 8}\n"
    )
    emb = finished / "exp" / "tiny" / "embeddings_final" / "test" / "embeddings.scp"
    before = emb.stat().st_mtime_ns
    result = run(finished, "--config", "conf/tiny_crops.yaml", "--stage", "3", "--stop-stage", "5")
    assert result.returncode == 0, result.stderr[-2000:]
    assert emb.stat().st_mtime_ns != before
    log = (emb.parent / "log" / "extract.1.log").read_text()
    assert "3 crops of 1 s" in log
    results = (finished / "exp" / "tiny" / "RESULTS").read_text()
    assert "# embeddings: mean of 3 crops of 1 s" in results
    assert re.search(r"^ssl test_trials EER: [0-9.]+%", results, re.M)
