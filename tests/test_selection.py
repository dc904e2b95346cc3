"""The label-free selection criterion (sslsv.selection): against its definition, and in use
(sslsv.bin.select, validation during training) on data dirs without utt2spk or trials."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from sslsv.bin import select as select_cli
from sslsv.bin import train as train_cli
from sslsv.selection import criterion, split_crops
from tests.conftest import make_tone_data_dir
from tests.test_classifier import TINY_CLASSIFIER


def plain_eer(targets: list[float], nontargets: list[float]) -> float:
    """EER by sweeping every score as a threshold (accept >= t): the crossing of the miss
    and false-alarm rates, averaged where they cross between two thresholds."""
    best = None
    for t in sorted(set(targets) | set(nontargets)):
        miss = sum(s < t for s in targets) / len(targets)
        fa = sum(s >= t for s in nontargets) / len(nontargets)
        if best is None or abs(miss - fa) < abs(best[0] - best[1]):
            best = (miss, fa)
    return 100 * (best[0] + best[1]) / 2


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_criterion_matches_its_definition():
    rng = np.random.default_rng(0)
    speakers = unit(rng.standard_normal((40, 16)))
    first = unit(speakers + 0.5 * rng.standard_normal((40, 16)))
    second = unit(speakers + 0.5 * rng.standard_normal((40, 16)))
    got = criterion(first, second)
    targets = [float(first[i] @ second[i]) for i in range(40)]
    nontargets = [float(first[i] @ second[j]) for i in range(40) for j in range(40) if i != j]
    assert got["split_eer"] == pytest.approx(plain_eer(targets, nontargets), abs=1.5)
    alignment = np.mean([np.sum((first[i] - second[i]) ** 2) for i in range(40)])
    assert got["alignment"] == pytest.approx(alignment, rel=1e-6)
    both = np.concatenate([first, second])
    potentials = [
        np.exp(-2 * np.sum((both[i] - both[j]) ** 2))
        for i in range(80)
        for j in range(80)
        if i != j
    ]
    assert got["uniformity"] == pytest.approx(np.log(np.mean(potentials)), rel=1e-5)
    # Better embeddings, a lower criterion.
    sharper = criterion(
        unit(speakers + 0.1 * rng.standard_normal((40, 16))),
        unit(speakers + 0.1 * rng.standard_normal((40, 16))),
    )
    assert sharper["split_eer"] < got["split_eer"] and sharper["alignment"] < got["alignment"]


def test_split_crops_come_from_each_half():
    signal = np.arange(100, dtype=np.float32)
    crops = split_crops(signal, 20)
    assert crops[0].tolist() == list(range(15, 35)) and crops[1].tolist() == list(range(65, 85))
    short = split_crops(np.arange(10, dtype=np.float32), 8)  # halves of 5: looped
    assert short[0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2]


def unlabelled_copy(data, dest):
    """The data dir's audio only: no utt2spk, spk2utt or trials."""
    shutil.copytree(data, dest)
    for name in ("utt2spk", "spk2utt", "trials"):
        (dest / name).unlink(missing_ok=True)
    return dest


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny classifier trained with label-free validation on a copy of its data dir
    without utt2spk: train.log, best.pt chosen by the criterion."""
    root = tmp_path_factory.mktemp("selection")
    data = make_tone_data_dir(root)
    unlabelled = unlabelled_copy(data, root / "unlabelled")
    config = root / "c.yaml"
    config.write_text(TINY_CLASSIFIER.replace("SUBCENTERS", "1"))
    exp = root / "exp"
    argv = ["--config", str(config), "--data", str(data), "--exp-dir", str(exp), "--override",
            f"train.validation.data_dir={unlabelled}", "train.validation.label_free=true",
            "train.validation.select_best=true",
            "train.validation.split_crop_seconds=0.5"]  # fmt: skip
    assert train_cli.main(argv) == 0
    return exp, unlabelled


def test_validation_without_labels_picks_the_final_model(trained):
    exp, _ = trained
    lines = [x for x in (exp / "log" / "train.log").read_text().splitlines() if "validation" in x]
    assert len(lines) == 3 and all("split-utterance EER" in x for x in lines)
    values = [float(x.split("EER ")[1].split("%")[0]) for x in lines]
    best_epoch = 1 + int(np.argmin(values))
    best = torch.load(exp / "best.pt", weights_only=True)["model"]
    final = torch.load(exp / "final.pt", weights_only=True)["model"]
    assert all(torch.equal(best[k], final[k]) for k in best)
    epoch = torch.load(exp / "checkpoints" / "epoch-0003.pt", weights_only=True)
    assert epoch["best_validation"][1] == best_epoch


def test_select_chooses_the_lowest_criterion_without_labels(trained, tmp_path, capsys):
    exp, unlabelled = trained
    out = tmp_path / "SELECTION"
    argv = ["--data", str(unlabelled), "--output", str(out), "--crop-seconds", "0.5",
            f"init={exp / 'init.pt'}", f"final={exp / 'final.pt'}"]  # fmt: skip
    assert select_cli.main(argv) == 0
    lines = out.read_text().splitlines()
    values = {x.split()[0]: float(x.split()[3]) for x in lines[:2]}
    assert lines[-1] == f"selected {min(values, key=values.get)}"
    assert select_cli.main([*argv[:4], "nonsense"]) == 1
    assert "LABEL=MODEL" in capsys.readouterr().err
