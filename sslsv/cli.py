"""What every ``sslsv/bin`` command shares: its parser, its logging, its one error path.

Each command is ``main(argv) -> int``: it builds its parser with :func:`parser` (which adds
``--verbose``) and hands its body to :func:`run`. A :class:`sslsv.errors.UserError` (bad
data, bad config, failed jobs) ends the command with one ``PROG: error: MESSAGE`` line and
exit status 1; with ``--verbose`` the traceback is printed too. Any other exception is a bug
and keeps its traceback. Usage errors are argparse's: exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable

from sslsv.errors import UserError

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
    except UserError as e:
        if verbose:
            traceback.print_exc()
        prog = getattr(args, "_prog", None) or sys.argv[0]
        print(f"{prog}: error: {e}", file=sys.stderr, flush=True)
        return 1
