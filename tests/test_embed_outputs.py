"""``python -m sslsv.bin.embed`` writes its output folder as one unit, under a lock, and
refuses bad outputs and ambiguous lists in one line (issue 22).

Consistency is checked by content: each id's row read back must be the embedding of the
audio that run paired with that id (computed directly with the API), so rows of one run
paired with the ids of another are caught however the files were written."""

import dataclasses
import errno
import os
from collections.abc import Callable
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch
from conftest import make_tone_data_dir

import sslsv
from sslsv.bin import embed as embed_cli
from sslsv.config.load import config_from_dict
from sslsv.models.embedding import EmbeddingModel
from sslsv.train.checkpoint import model_payload, save_atomic

SMALL = {"channels": [8, 8, 16, 16], "blocks": [1, 1, 1, 1], "embed_dim": 24}


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """A tiny model, three tones of three speakers, their embeddings, and two runs: run 1
    pairs ids a b c with files 1 2 3, run 2 pairs x y z with files 2 3 1 (ids of one length:
    the old ark offsets of one run point at rows of the other)."""
    root = tmp_path_factory.mktemp("embed_outputs")
    data = make_tone_data_dir(root, speakers=3, utts=1, seconds=1.0)
    wavs = [line.split(maxsplit=1)[1] for line in (data / "wav.scp").read_text().splitlines()]
    torch.manual_seed(0)
    cfg = config_from_dict({"encoder": {"name": "resnet", "args": SMALL}})
    ckpt = root / "final.pt"
    save_atomic(model_payload(dataclasses.asdict(cfg), EmbeddingModel(cfg).state_dict()), ckpt)
    direct = sslsv.load_model(ckpt).embed(wavs, raw=True)
    # Rows told apart well above the tolerance, or a swap of them would go unseen (an
    # untrained model embeds tones alike: 3e-4 apart; rerunning one input differs < 1e-6).
    apart = min(np.abs(direct[i] - direct[j]).max() for i, j in ((0, 1), (0, 2), (1, 2)))
    assert apart > 1e-5
    runs = {}
    for name, ids, order in (("run1", "abc", (0, 1, 2)), ("run2", "xyz", (1, 2, 0))):
        listing = root / f"{name}.list"
        listing.write_text("".join(f"{u} {wavs[i]}\n" for u, i in zip(ids, order)))
        runs[name] = (listing, {u: direct[i] for u, i in zip(ids, order)})
    return {"ckpt": ckpt, "runs": runs, "wavs": wavs, "atol": apart / 10}


def args(setup: dict, run: str, out: Path, fmt: str) -> list[str]:
    listing = setup["runs"][run][0]
    return ["--checkpoint", str(setup["ckpt"]), "--list", str(listing), "--output", str(out),
            "--format", fmt]  # fmt: skip


def read_back(out: Path, fmt: str) -> dict[str, np.ndarray] | None:
    """The output as a reader sees it: id -> row, or None where there is none."""
    names = ("embeddings.ark", "embeddings.scp") if fmt == "ark" else ("embeddings.npy", "ids.txt")
    present = [n for n in names if (out / n).is_file()]
    if not present:
        return None
    assert len(present) == 2, f"half an output: only {present} in {out}"
    if fmt == "ark":
        return {k: np.array(v) for k, v in kaldiio.load_scp(str(out / "embeddings.scp")).items()}
    ids = (out / "ids.txt").read_text().split()
    rows = np.load(out / "embeddings.npy")
    assert len(ids) == len(rows), f"{len(ids)} ids, {len(rows)} rows"
    return dict(zip(ids, rows))


def which_run(setup: dict, state: dict[str, np.ndarray] | None) -> str | None:
    """The run whose complete, correctly paired set ``state`` is (None: no output)."""
    if state is None:
        return None
    for run, (_, expected) in setup["runs"].items():
        if list(state) == list(expected) and all(
            np.allclose(state[u], expected[u], rtol=0, atol=setup["atol"]) for u in expected
        ):
            return run
    raise AssertionError(f"rows not paired with their ids: {sorted(state)}")


def replace_hook(monkeypatch, k: int, at_k: Callable[[], None]) -> list[bool]:
    """Make the k-th ``os.replace`` call run ``at_k`` first; returns [fired]."""
    real, count, fired = os.replace, [0], []

    def replace(src, dst, *a, **kw):
        count[0] += 1
        if count[0] == k:
            fired.append(True)
            at_k()
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)
    return fired


@pytest.mark.parametrize("fmt", ["ark", "npy"])
def test_a_kill_at_any_rename_leaves_the_old_output_or_none(setup, tmp_path, fmt, monkeypatch):
    """A kill at each rename in turn (the disk is read at that instant, then the run dies)
    over run 1's output: the reader sees run 1's set, or nothing; never run 2's rows with
    run 1's ids (before: the ark or npy replaced, its scp or ids.txt not)."""
    out = tmp_path / "out"
    for k in range(1, 10):
        assert embed_cli.main(args(setup, "run1", out, fmt)) == 0
        at_kill: list = []

        def kill(at_kill: list = at_kill) -> None:
            at_kill.append(which_run(setup, read_back(out, fmt)))
            raise OSError(errno.EINTR, "killed (test)", "the rename")

        fired = replace_hook(monkeypatch, k, kill)
        code = embed_cli.main(args(setup, "run2", out, fmt))
        monkeypatch.undo()
        if not fired:  # a run with fewer renames: each one was a kill point
            assert code == 0 and which_run(setup, read_back(out, fmt)) == "run2"
            break
        assert code == 1
        assert at_kill[0] in ("run1", None), f"kill at rename {k}"
        assert which_run(setup, read_back(out, fmt)) in ("run1", None), f"after kill {k}"
    else:
        raise AssertionError("more than 9 renames")


def test_a_second_run_while_one_embeds_refuses_at_once(setup, tmp_path, monkeypatch, capsys):
    """Run 2 started while run 1 embeds into the same folder: one line naming the other run,
    exit 1, nothing written; run 1 ends with its own set (before: both exit 0)."""
    out = tmp_path / "out"
    real_load = embed_cli.load_model
    second: list = []
    started: list = []

    def load_then_second_run(*a, **kw):
        if started:  # the second run's own load (where it was not refused)
            return real_load(*a, **kw)
        started.append(True)
        capsys.readouterr()
        second.append(embed_cli.main(args(setup, "run2", out, "npy")))
        second.append(capsys.readouterr().err.strip().splitlines())
        return real_load(*a, **kw)

    monkeypatch.setattr(embed_cli, "load_model", load_then_second_run)
    assert embed_cli.main(args(setup, "run1", out, "npy")) == 0
    code, err = second
    assert code == 1 and len(err) == 1 and "is being written by pid" in err[0], err
    assert which_run(setup, read_back(out, "npy")) == "run1"
    assert sorted(p.name for p in out.iterdir()) == ["embeddings.npy", "ids.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name != "out"]  # no temporaries left


@pytest.mark.parametrize("fmt", ["ark", "npy"])
def test_a_second_run_at_any_rename_of_the_first_leaves_one_runs_set(
    setup, tmp_path, fmt, monkeypatch, capsys
):
    """Run 2, started and finished at each rename of run 1 in turn: whichever exit 0, the
    output is the whole set of a run that exited 0, and a run that fails says so in one
    line (before: both exit 0 and run 2's rows sit beside run 1's ids)."""
    for k in range(1, 10):
        out = tmp_path / f"out{k}"
        second: list = []

        def second_run(second: list = second, out: Path = out) -> None:
            capsys.readouterr()
            second.append(embed_cli.main(args(setup, "run2", out, fmt)))
            second.append(capsys.readouterr().err.strip().splitlines())

        fired = replace_hook(monkeypatch, k, second_run)
        first = embed_cli.main(args(setup, "run1", out, fmt))
        err1 = capsys.readouterr().err.strip().splitlines()
        monkeypatch.undo()
        if not fired:
            break
        code2, err2 = second
        succeeded = {run for run, code in (("run1", first), ("run2", code2)) if code == 0}
        assert succeeded, f"rename {k}: neither run finished"
        assert which_run(setup, read_back(out, fmt)) in succeeded, f"rename {k}"
        for code, err in ((first, err1), (code2, err2)):
            if code:
                assert code == 1 and len([e for e in err if "error:" in e]) == 1, err
    else:
        raise AssertionError("more than 9 renames")


def test_outputs_that_would_destroy_or_mix_are_refused(setup, tmp_path, monkeypatch, capsys):
    """One line each, exit 1, nothing written: OUT is the model file, OUT holds the list or
    an audio file, OUT lies under a regular file, OUT holds files embed does not write
    (it is replaced whole), --device cuda without a GPU."""
    ckpt, listing = setup["ckpt"], setup["runs"]["run1"][0]
    audio_dir = str(Path(setup["wavs"][0]).parent)
    results = tmp_path / "results"
    results.mkdir()
    (results / "notes.txt").write_text("keep me\n")
    cases = [
        (str(ckpt), [], "is the input --checkpoint"),
        (str(listing.parent), [], "holds the input"),
        (audio_dir, [], "is the input audio folder of a"),
        (str(ckpt / "out"), [], "is not a folder"),
        (str(results), [], "holds files that embed does not write (notes.txt)"),
        (str(tmp_path / "new"), ["--device", "cuda"], "CUDA is not available"),
    ]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    before = {p: p.read_bytes() for p in (ckpt, listing, results / "notes.txt")}
    for out, extra, why in cases:
        code = embed_cli.main(
            ["--checkpoint", str(ckpt), "--list", str(listing), "--output", out, *extra]
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(err) == 1 and why in err[0], (out, err)
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in results.iterdir()) == ["notes.txt"]
    assert not (tmp_path / "new").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_one_line(setup, tmp_path, capsys):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code = embed_cli.main(args(setup, "run1", locked / "out", "npy"))
    finally:
        locked.chmod(0o755)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "permission denied" in err[0], err


def test_list_paths_with_spaces_need_an_id(setup, tmp_path, monkeypatch, capsys):
    """A list line is ``PATH`` or ``ID PATH``: a path holding spaces given alone, or a line
    whose first field is an audio file, is refused naming the list and line (before: split
    at the first space, so 'my file.wav' embedded file.wav under the id 'my', exit 0)."""
    monkeypatch.chdir(tmp_path)
    # 'my file.wav' and 'my' hold one tone, 'file.wav' another (the old split's pairing).
    for name, source in (("my", 0), ("my file.wav", 0), ("file.wav", 2)):
        (tmp_path / name).write_bytes(Path(setup["wavs"][source]).read_bytes())
    spaced = setup["wavs"][1]  # make_tone_data_dir's folder is "wav dir"
    assert " " in spaced
    out = tmp_path / "out"
    listing = tmp_path / "list"
    for lines, why in (
        (["file.wav", "my file.wav"], "'my file.wav' is one path holding spaces"),
        ([spaced], "is one path holding spaces: give it as 'ID PATH'"),
        (["my file.wav extra"], "the first field 'my' is a file, not an id"),
        (["u1 file.wav", "/no such/a.wav"], "'such/a.wav': no such file (read as 'ID PATH'"),
    ):
        listing.write_text("".join(f"{line}\n" for line in lines))
        code = embed_cli.main(["--checkpoint", str(setup["ckpt"]), "--list", str(listing),
                               "--output", str(out), "--format", "npy"])  # fmt: skip
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(err) == 1, err
        assert f"{listing}:{len(lines)}: " in err[0] and why in err[0], err
        assert not out.exists()
    # With an id first, the same paths are read whole.
    listing.write_text(f"u1 {tmp_path / 'my file.wav'}\nu2 {spaced}\n")
    code = embed_cli.main(["--checkpoint", str(setup["ckpt"]), "--list", str(listing),
                           "--output", str(out), "--format", "npy"])  # fmt: skip
    assert code == 0
    direct = sslsv.load_model(setup["ckpt"]).embed([setup["wavs"][0], spaced], raw=True)
    assert (out / "ids.txt").read_text().split() == ["u1", "u2"]
    np.testing.assert_allclose(np.load(out / "embeddings.npy"), direct, rtol=0, atol=setup["atol"])


def test_silent_audio_is_embedded_with_a_warning_or_refused(setup, tmp_path, capsys, caplog):
    """As stage 5: a digitally silent file is embedded and named in a warning; with
    --on-silence error it is refused in one line (the API refuses by default)."""
    import soundfile as sf

    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, np.zeros(16000, dtype=np.float32), 16000)
    base = ["--checkpoint", str(setup["ckpt"]), str(quiet), "--output"]
    assert embed_cli.main([*base, str(tmp_path / "out1")]) == 0
    assert "quiet.wav" in caplog.text and "silent" in caplog.text
    assert (tmp_path / "out1" / "embeddings.scp").is_file()
    capsys.readouterr()
    assert embed_cli.main([*base, str(tmp_path / "out2"), "--on-silence", "error"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "quiet.wav: digitally silent" in err[0]
    assert not (tmp_path / "out2").exists()
