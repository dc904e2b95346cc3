"""What every ``sslsv/bin`` command shares: its parser, its logging, its one error path.

Each command is ``main(argv) -> int``: it builds its parser with :func:`parser` (which adds
``--verbose``) and hands its body to :func:`run`. A :class:`sslsv.errors.UserError` (bad
data, bad config, failed jobs) ends the command with one ``PROG: error: MESSAGE`` line and
exit status 1; so does an ``OSError`` about a path (a folder that cannot be written, a
missing file, a full disk), naming the path. With ``--verbose`` the traceback is printed
too. Any other exception is a bug and keeps its traceback. Usage errors are argparse's:
exit status 2.

Before it writes anything, a command names its inputs and outputs once, to
:func:`check_io`: an output that is one of its inputs (the same file, also through a link
or another spelling), or that lies where nothing can be written, is refused in one line.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from sslsv.errors import UserError

PathArg = str | os.PathLike | None


class OutputError(UserError, ValueError):
    """An output that would overwrite an input, or that cannot be written where it is."""


LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def parser(module_doc: str, prog: str) -> argparse.ArgumentParser:
    """An argument parser whose ``--help`` is the module docstring (what the command reads
    and writes), with ``--verbose``."""
    description, _, epilog = (module_doc or "").strip().partition("\n\n")
    p = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--verbose", action="store_true", help="debug messages, and tracebacks for bad input"
    )
    p.set_defaults(_prog=prog)
    return p


def at_least(kind: type, low: float) -> Callable[[str], float]:
    """An argparse type: ``kind`` (int or float) no smaller than ``low``."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{text}: must be at least {low}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its errors
    return parse


def fraction(low_open: bool = True) -> Callable[[str], float]:
    """An argparse type: a number in (0, 1) (a prior), or in [0, 1) with ``low_open`` False
    (a rate that may be 0)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (0 < value < 1 if low_open else 0 <= value < 1):
            raise argparse.ArgumentTypeError(f"{text} is not in {'(' if low_open else '['}0, 1)")
        return value

    parse.__name__ = "float"
    return parse


def run(body: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a command's body with logging set up; a UserError becomes one line and status 1."""
    verbose = getattr(args, "verbose", False)
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format=LOG_FORMAT)  # no-op where handlers exist (tests)
    logging.getLogger().setLevel(level)
    try:
        return body(args) or 0
    except (UserError, OSError) as e:
        if isinstance(e, OSError) and e.filename is None:
            raise  # not about a path the user named: a bug, with its traceback
        if verbose:
            traceback.print_exc()
        prog = getattr(args, "_prog", None) or sys.argv[0]
        print(f"{prog}: error: {_message(e)}", file=sys.stderr, flush=True)
        return 1


def _message(e: BaseException) -> str:
    if isinstance(e, OSError):
        return f"{e.filename}: {e.strerror or e}"
    return str(e)


def _same(a: Path, b: Path) -> bool:
    """Whether two paths name one file: one spelling once resolved (links followed), or
    one inode (hard links)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _check_writable(option: str, path: Path, kind: str) -> None:
    """``path`` (a file, or a folder for ``kind`` "folder") can be made or replaced: it is
    not the other kind, and the nearest folder that exists above it is a writable folder
    (outputs are written to a temporary sibling, then renamed)."""
    if path.exists() and kind == "file" and path.is_dir():
        raise OutputError(f"{option} {path}: is a folder; name a file")
    if path.exists() and kind == "folder" and not path.is_dir():
        raise OutputError(f"{option} {path}: is a file; name a folder")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{option} {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {path}: cannot write in {parent} (permission denied)")


def numbered(option: str, paths: Sequence[PathArg] | None) -> dict[str, PathArg]:
    """A repeated option's paths for :func:`check_io`: ``--utt2dur``, ``--utt2dur #2``..."""
    return {f"{option} #{i}" if i > 1 else option: p for i, p in enumerate(paths or (), 1)}


def check_io(
    inputs: Mapping[str, PathArg],
    files: Mapping[str, PathArg] = {},  # noqa: B006 (read only)
    folders: Mapping[str, PathArg] = {},  # noqa: B006
    into: Mapping[str, PathArg] = {},  # noqa: B006
) -> None:
    """Refuse, before anything is written, outputs that would destroy an input or cannot be
    written. ``inputs``, ``files`` (output files), ``folders`` (output folders a command
    makes whole: an embeddings dir, a data dir) and ``into`` (folders it adds files to: a
    plot dir) map an option name to its path (None: not given).

    An output file may not be an input; an output folder may not be an input nor hold one;
    a folder written into may not be an input file. Each output must be writable where it
    is. The message names the option, the path and why."""
    given = {k: Path(v) for k, v in inputs.items() if v is not None}
    for kind, outputs in (("file", files), ("folder", folders), ("into", into)):
        for option, value in outputs.items():
            if value is None:
                continue
            out = Path(value)
            for in_option, path in given.items():
                if _same(out, path) or (kind == "folder" and _inside(path, out)):
                    where = "is" if _same(out, path) else "holds"
                    raise OutputError(
                        f"{option} {out} {where} the input {in_option} {path}: writing it would "
                        "destroy that input; name another output"
                    )
            _check_writable(option, out, "file" if kind == "file" else "folder")
