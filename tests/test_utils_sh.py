"""utils/*.sh: option parsing and the data-dir wrappers, run through bash."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sslsv.fileio import read_dict

REPO = Path(__file__).resolve().parents[1]
UTILS = REPO / "utils"


def run(args: list[str], cwd: Path | None = None, stdin: str | None = None):
    env = dict(os.environ, SSLSV_PYTHON=sys.executable)
    return subprocess.run(
        ["bash", *map(str, args)],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def script(tmp_path: Path) -> Path:
    """A recipe-like script that sources parse_options.sh and prints what it got."""
    path = tmp_path / "run.sh"
    path.write_text(
        "#!/usr/bin/env bash\n"
        "set -euo pipefail\n"
        "stage=0\n"
        "stop_stage=5\n"
        "nj=4\n"
        'corpus_dir="/data/my corpus"\n'
        "config=conf/a.yaml\n"
        'help_message="Usage: run.sh [options] [args]"\n'
        f'. "{UTILS}/parse_options.sh"\n'
        'printf "stage=%s\\nstop_stage=%s\\nnj=%s\\ncorpus_dir=%s\\nconfig=%s\\n" '
        '"$stage" "$stop_stage" "$nj" "$corpus_dir" "$config"\n'
        'printf "arg=%s\\n" "$@"\n'
    )
    return path


def parsed(result) -> dict[str, str]:
    assert result.returncode == 0, result.stderr
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def test_parse_options_accepts_known_options(script: Path, tmp_path: Path) -> None:
    out = parsed(
        run(
            [
                script,
                "--stage",
                "2",
                "--stop-stage=3",
                "--nj",
                "8",
                "--corpus-dir",
                "/a b/c d",
                "--config=conf/x y.yaml",
                "pos one",
                "two",
            ]
        )  # fmt: skip
    )
    assert out["stage"] == "2" and out["stop_stage"] == "3" and out["nj"] == "8"
    assert out["corpus_dir"] == "/a b/c d" and out["config"] == "conf/x y.yaml"
    args = [line[4:] for line in run([script, "--nj", "1", "pos one", "--x"]).stdout.splitlines()
            if line.startswith("arg=")]  # fmt: skip
    assert args == ["pos one", "--x"]  # parsing stops at the first positional argument


def test_parse_options_never_evaluates_values(script: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    out = parsed(run([script, "--corpus-dir", f"$(touch {marker})", "--nj=`touch {marker}`"]))
    assert out["corpus_dir"] == f"$(touch {marker})"
    assert not marker.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus-opt", "1"], "unknown option --bogus-opt"),
        (["--path", "/tmp"], "unknown option --path"),
        (["--PATH", "/tmp"], "invalid option --PATH"),
        (["--stage", "two"], "option --stage needs an integer, got 'two'"),
        (["--nj"], "option --nj needs a value"),
    ],
)
def test_parse_options_rejects(script: Path, args: list[str], message: str) -> None:
    result = run([script, *args])
    assert result.returncode == 1
    assert message in result.stderr
    assert "stage=" not in result.stdout


def test_parse_options_help(script: Path) -> None:
    result = run([script, "--nj", "3", "--help"])
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "Usage: run.sh [options] [args]"
    table = {line.split()[0]: line.split(None, 1)[1:] for line in lines[2:]}
    assert table["--nj"] == ["3"] and table["--stage"] == ["0"]
    assert table["--corpus-dir"] == ["/data/my corpus"] and "--help-message" not in table


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """data dir 'my data' with real audio: speakers a (3 utts), b (2), c (1)."""
    d = tmp_path / "my data"
    d.mkdir()
    wav, utt2spk = [], []
    for spk, n in (("a", 3), ("b", 2), ("c", 1)):
        for i in range(n):
            utt = f"{spk}-{i}"
            path = tmp_path / "audio dir" / f"{utt}.wav"
            path.parent.mkdir(exist_ok=True)
            sf.write(path, np.zeros(8000 + 1000 * i, dtype=np.int16), 16000)
            wav.append(f"{utt} {path}\n")
            utt2spk.append(f"{utt} {spk}\n")
    (d / "wav.scp").write_text("".join(wav))
    (d / "utt2spk").write_text("".join(utt2spk))
    (d / "spk2utt").write_text("a a-0 a-1 a-2\nb b-0 b-1\nc c-0\n")
    return d


def test_wrappers_on_a_tiny_data_dir(tiny: Path, tmp_path: Path) -> None:
    result = run([UTILS / "utt2spk_to_spk2utt.sh", tiny / "utt2spk"])
    assert result.returncode == 0 and result.stdout == (tiny / "spk2utt").read_text()
    result = run([UTILS / "utt2spk_to_spk2utt.sh"], stdin=(tiny / "utt2spk").read_text())
    assert result.stdout == (tiny / "spk2utt").read_text()

    assert run([UTILS / "data" / "get_utt2dur.sh", "--nj", "2", tiny]).returncode == 0
    assert read_dict(tiny / "utt2dur")["a-2"] == repr(10000 / 16000)
    result = run([UTILS / "validate_data_dir.sh", tiny])
    assert result.returncode == 0, result.stderr

    result = run([UTILS / "split_data.sh", tiny, "2"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == [str(tiny / "split2" / "1"), str(tiny / "split2" / "2")]
    assert [len(read_dict(tiny / "split2" / i / "utt2spk")) for i in "12"] == [3, 3]
    assert run([UTILS / "split_data.sh", "--per-spk", tiny, "3"]).returncode == 0
    assert read_dict(tiny / "split3spk" / "1" / "utt2spk") == {"a-0": "a", "a-1": "a", "a-2": "a"}

    (tmp_path / "spks").write_text("b\nc\n")
    result = run(
        [UTILS / "subset_data_dir.sh", "--spk-list", tmp_path / "spks", tiny, tmp_path / "bc"]
    )
    assert result.returncode == 0, result.stderr
    assert list(read_dict(tmp_path / "bc" / "utt2spk")) == ["b-0", "b-1", "c-0"]
    assert (
        run([UTILS / "subset_data_dir.sh", "--first", "2", tiny, tmp_path / "f2"]).returncode == 0
    )
    assert list(read_dict(tmp_path / "f2" / "utt2spk")) == ["a-0", "a-1"]
    (tmp_path / "utts").write_text("c-0\n")
    assert run([UTILS / "subset_data_dir.sh", "--utt-list", tmp_path / "utts", tiny,
                tmp_path / "u"]).returncode == 0  # fmt: skip
    assert list(read_dict(tmp_path / "u" / "utt2spk")) == ["c-0"]

    result = run([UTILS / "combine_data.sh", tmp_path / "all", tmp_path / "f2", tmp_path / "bc"])
    assert result.returncode == 0, result.stderr
    assert list(read_dict(tmp_path / "all" / "utt2spk")) == ["a-0", "a-1", "b-0", "b-1", "c-0"]
    result = run([UTILS / "combine_data.sh", tmp_path / "dup", tmp_path / "f2", tiny])
    assert result.returncode == 1 and "'a-0' is in both" in result.stderr

    # Break the dir: validate names the problem, fix repairs it and reports.
    lines = (tiny / "wav.scp").read_text().splitlines(keepends=True)
    (tiny / "wav.scp").write_text("".join(lines[:-1]))
    result = run([UTILS / "validate_data_dir.sh", "--no-wav-check", tiny])
    assert (
        result.returncode == 1 and "wav.scp: 1 utterances are missing, e.g. 'c-0'" in result.stderr
    )
    result = run([UTILS / "fix_data_dir.sh", tiny])
    assert result.returncode == 0, result.stderr
    assert "dropped 1" in result.stderr
    assert (tiny / ".backup" / "dropped").read_text() == "c-0 not in wav.scp\n"
    assert (tiny / "spk2utt").read_text() == "a a-0 a-1 a-2\nb b-0 b-1\n"


@pytest.mark.parametrize(
    "args",
    [
        ["validate_data_dir.sh"],
        ["validate_data_dir.sh", "a", "b"],
        ["validate_data_dir.sh", "--bad", "a"],
        ["fix_data_dir.sh"],
        ["combine_data.sh", "only-dest"],
        ["subset_data_dir.sh", "src", "dest"],
        ["subset_data_dir.sh", "--first", "2", "--spk-list", "f", "src", "dest"],
        ["split_data.sh", "dir"],
        ["split_data.sh", "dir", "two"],
        ["utt2spk_to_spk2utt.sh", "a", "b"],
        ["data/get_utt2dur.sh", "--nj"],
        ["data/get_utt2dur.sh", "a", "b"],
    ],
)
def test_wrappers_print_usage_on_bad_args(args: list[str]) -> None:
    result = run([UTILS / args[0], *args[1:]])
    assert result.returncode == 1
    assert "Usage:" in result.stderr


def test_voxceleb_local_prepare_data_requires_a_corpus() -> None:
    script = REPO / "egs" / "voxceleb" / "local" / "prepare_data.sh"
    result = run([script])
    assert result.returncode == 1 and "give at least one of --voxceleb1-root" in result.stderr
    result = run([script, "--help"])
    assert result.returncode == 0 and "--voxceleb2-root" in result.stdout


STEPS = REPO / "steps"


@pytest.mark.parametrize(
    "step,options",
    [
        ("make_fbank.sh", ["--config", "--nj", "--cmd"]),
        (
            "train.sh",
            ["--device", "--ngpu", "--nnodes", "--rdzv-endpoint", "--overrides", "--init-model"],
        ),  # fmt: skip
        ("pseudo_label_round.sh", ["--nj", "--cmd", "--device", "--ngpu", "--train-opts"]),
        ("fit_stats.sh", []),
        ("extract_embeddings.sh", ["--config", "--nj", "--cmd", "--device"]),
        ("score_trials.sh", ["--config", "--train-embeddings", "--train-data"]),
        ("make_results.sh", ["--config", "--models", "--rows", "--clustering", "--note"]),
    ],
)
def test_steps_print_usage_and_their_options(step: str, options: list[str], tmp_path) -> None:
    """Kaldi steps/ style: a usage message on bad arguments, --help lists every option with its
    default, and a missing input is named before anything runs."""
    result = run([STEPS / step])
    assert result.returncode == 1 and result.stderr.startswith(f"Usage: {STEPS / step}")
    assert "Reads" in result.stderr and "Writes" in result.stderr
    result = run([STEPS / step, "--help"])
    assert result.returncode == 0
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("  --")}
    assert set(options) <= listed
    result = run([STEPS / step, "--no-such-option", "1"])
    assert result.returncode == 1 and "unknown option --no-such-option" in result.stderr


def test_steps_name_a_missing_input(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("experiment: x\n")
    empty = tmp_path / "empty data"
    empty.mkdir()
    result = run([STEPS / "make_fbank.sh", "--config", config, empty, tmp_path / "feats"])
    assert result.returncode == 1 and f"no such file {empty}/wav.scp" in result.stderr
    result = run([STEPS / "train.sh", config, empty, tmp_path / "exp"])
    assert result.returncode == 1 and f"no such file {empty}/wav.scp" in result.stderr
    result = run([STEPS / "score_trials.sh", "--config", config, tmp_path, empty, tmp_path / "s"])
    assert result.returncode == 1 and f"no such file {tmp_path}/embeddings.scp" in result.stderr


TEMPLATE = REPO / "egs" / "TEMPLATE" / "sv.sh"
#: The steps the pipeline's stages call (embeddings, scores, calibration and RESULTS through
#: evaluate_models.sh).
PIPELINE_STEPS = ("make_fbank", "train", "fit_stats", "pseudo_label_round", "evaluate_models")


def shell_files(folder: Path) -> list[Path]:
    """The .sh files under ``folder`` that are files of their own (links not followed)."""
    found = []
    for root, _, files in os.walk(folder):
        found += [Path(root) / f for f in files if f.endswith(".sh")]
    return [f for f in found if not f.is_symlink()]


def test_one_pipeline_for_every_recipe() -> None:
    """egs/TEMPLATE/sv.sh holds the stages, 0 to 9, each a call of a step (or of the recipe's
    local/data.sh) with explicit arguments; each recipe links it, and its run.sh only calls
    it with the corpus's data dirs and defaults: no stage, no step call and no config query
    anywhere else under egs/. No recipe reaches into another recipe's files (utils/, steps/
    and the template are shared, by link)."""
    text = TEMPLATE.read_text()
    for step in PIPELINE_STEPS:
        assert f"steps/{step}.sh" in text, step
    assert 'local/data.sh "${data_opts[@]}"' in text and "check_stages 9" in text
    stages = re.findall(r'^if \[ "\$stage" -le (\d) \] && \[ "\$stop_stage" -ge \1 \]', text, re.M)
    assert stages == [str(n) for n in range(10)]
    for script in shell_files(REPO / "egs"):
        if script == TEMPLATE:
            continue
        body = script.read_text()
        assert "stop_stage" not in body and "check_stages" not in body, script
        assert not [s for s in PIPELINE_STEPS if f"steps/{s}.sh" in body], script
        assert "--get scoring" not in body and "--get extract" not in body, script
    recipes = sorted(p for p in (REPO / "egs").iterdir() if p != TEMPLATE.parent)
    assert [p.name for p in recipes] == ["librispeech", "mini", "voxceleb"]
    for recipe in recipes:
        run_sh = (recipe / "run.sh").read_text()
        assert re.search(r"^\./sv\.sh .*\"\$@\"\n\Z", run_sh, re.M | re.S), recipe.name
        assert (recipe / "local" / "data.sh").is_file()
        assert os.readlink(recipe / "sv.sh") == "../TEMPLATE/sv.sh"
        for root, dirs, files in os.walk(recipe):
            for name in dirs + files:
                path = Path(root) / name
                if path.is_symlink():
                    target = (path.parent / os.readlink(path)).resolve()
                    assert target in (REPO / "utils", REPO / "steps", TEMPLATE), path
        for own in ("path.sh", "cmd.sh"):
            assert (recipe / own).is_file() and not (recipe / own).is_symlink()


@pytest.mark.parametrize("recipe", ["librispeech", "mini", "voxceleb"])
def test_every_recipe_has_every_pipeline_option(recipe: str) -> None:
    """The options of the pipeline are the same in every recipe (they once drifted), listed
    by run.sh --help; an option of neither the pipeline nor stage 0 is an error, named,
    before anything runs."""
    run_sh = REPO / "egs" / recipe / "run.sh"
    result = run([run_sh, "--help"])
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("  --")}
    assert {
        "--stage", "--stop-stage", "--nj", "--extract-nj", "--device", "--ngpu", "--train-opts",
        "--train-seed", "--train-epochs", "--config", "--stats-config", "--pl-config",
        "--supervised-config", "--rounds", "--pl-seed", "--supervised", "--train-set",
        "--test-set", "--dev-set",
    } <= listed  # fmt: skip
    result = run([run_sh, "--stage", "10"])
    assert result.returncode == 1 and "--stage 10: stages are 0 to 9" in result.stderr
    result = run([run_sh, "--no-such-option", "1", "--stage", "9"])
    assert result.returncode == 1 and "unknown option --no-such-option" in result.stderr
    assert "nor stage 0 (local/data.sh --help)" in result.stderr
    result = run(["local/data.sh", "--help"], cwd=REPO / "egs" / recipe)  # from the recipe
    assert result.returncode == 0 and "  --config " in result.stdout


def test_parse_options_passes_unknown_options_on(tmp_path: Path) -> None:
    """A script that declares _unknown_options gets the options it does not have, with
    their values as given, and still parses its own around them."""
    script = tmp_path / "sv.sh"
    script.write_text(
        "set -euo pipefail\n"
        "nj=4\n"
        "_unknown_options=()\n"
        f'. "{UTILS}/parse_options.sh"\n'
        'printf "nj=%s\\n" "$nj"\n'
        'printf "other=%s\\n" ${_unknown_options[@]+"${_unknown_options[@]}"}\n'
        'printf "arg=%s\\n" "$@"\n'
    )
    result = run([script, "--corpus", "/a b", "--nj", "2", "--x=y z", "--stage", "3", "pos"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "nj=2" in lines and "arg=pos" in lines
    assert [ln[6:] for ln in lines if ln.startswith("other=")] == ["--corpus", "/a b", "--x=y z"]
    result = run([script, "--nj", "2", "--corpus"])
    assert result.returncode == 1 and "option --corpus needs a value" in result.stderr
