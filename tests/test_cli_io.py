"""The check every command makes of its paths before writing (sslsv.cli.check_io), and the
one-line error for an OSError about a path."""

from __future__ import annotations

import argparse
import os

import pytest

from sslsv import cli


def test_an_output_that_is_an_input_is_refused_through_links_and_spellings(tmp_path):
    scores = tmp_path / "scores"
    scores.write_text("a b 1\n")
    (tmp_path / "link").symlink_to(scores)
    os.link(scores, tmp_path / "hard")
    for output in (scores, tmp_path / "link", tmp_path / "hard", tmp_path / "x" / ".." / "scores"):
        with pytest.raises(cli.OutputError, match="--output .* is the input --scores"):
            cli.check_io({"--scores": scores}, files={"--output": output})
    cli.check_io({"--scores": scores}, files={"--output": tmp_path / "other"})


def test_an_output_folder_may_not_hold_an_input_but_a_plot_folder_may(tmp_path):
    data = tmp_path / "exp" / "data"
    data.mkdir(parents=True)
    with pytest.raises(cli.OutputError, match="--output .* holds the input --data"):
        cli.check_io({"--data": data}, folders={"--output": tmp_path / "exp"})
    cli.check_io({"--data": data}, into={"--plot-dir": tmp_path / "exp"})


def test_an_output_where_nothing_can_be_written_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(cli.OutputError, match=f"--output {blocker}/out: {blocker} is not a folder"):
        cli.check_io({}, files={"--output": blocker / "out"})
    with pytest.raises(cli.OutputError, match="is a folder; name a file"):
        cli.check_io({}, files={"--output": tmp_path})
    with pytest.raises(cli.OutputError, match="is a file; name a folder"):
        cli.check_io({}, folders={"--output": blocker})
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        with pytest.raises(cli.OutputError, match="permission denied"):
            cli.check_io({}, files={"--output": locked / "out"})


def test_run_turns_an_oserror_about_a_path_into_one_line(tmp_path, capsys):
    def body(args):
        open(tmp_path / "missing" / "file")

    args = argparse.Namespace(_prog="prog", verbose=False)
    assert cli.run(body, args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"prog: error: {tmp_path / 'missing' / 'file'}: No such file")

    def bug(args):
        raise OSError("not about a path")

    with pytest.raises(OSError):
        cli.run(bug, args)
