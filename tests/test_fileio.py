"""A folder written with sslsv.fileio.atomic_dir replaces the old one in one step: there is
no moment at which its path is missing (renameat2's exchange, where the system has it)."""

from __future__ import annotations

import os

import pytest

from sslsv import fileio


def test_exchange_swaps_two_folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    if not fileio.exchange(a, b):
        pytest.skip("no renameat2 exchange on this system or file system")
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"


def test_a_kill_during_the_swap_never_leaves_the_folder_missing(tmp_path, monkeypatch):
    """The old way renamed the old folder aside, then the new one in: a kill between the two
    left no folder. The swap does not use os.replace at all now; a kill at any os.replace
    call (simulated) still leaves a complete folder."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "rows").write_text("old")
    probe = tmp_path / "probe"
    probe.mkdir()
    if not fileio.exchange(probe, out) or not fileio.exchange(probe, out):
        pytest.skip("no renameat2 exchange on this system or file system")
    calls = []
    real_replace = os.replace

    def replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed between two renames
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    try:
        with fileio.atomic_dir(out) as tmp:
            (tmp / "rows").write_text("new")
    except KeyboardInterrupt:
        pass
    assert out.is_dir() and (out / "rows").read_text() in ("old", "new")
    assert (out / "rows").read_text() == "new"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
