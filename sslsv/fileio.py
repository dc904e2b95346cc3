"""Atomic writing of files and folders, and Kaldi-style text tables (``key value`` per line)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from sslsv.errors import DataError


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file next to ``path``; rename it over ``path`` only on success.

    A crash (or kill -9) while writing leaves the old file, or no file, never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _mkstemp_beside(path)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _mkstemp_beside(path: Path) -> tuple[int, str]:
    """A new hidden file next to ``path``, unique (two writers never share one), open, with
    the permissions a plain ``open()`` would give (mkstemp makes it private)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_umask())
    return fd, tmp


def temporary_beside(path: str | os.PathLike) -> Path:
    """A new empty hidden file next to ``path`` (see :func:`_mkstemp_beside`), for a writer
    that opens it by name; rename it over ``path`` once written and checked."""
    fd, tmp = _mkstemp_beside(Path(path))
    os.close(fd)
    return Path(tmp)


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file to disk before the rename that publishes it: a power cut after
    the rename must not leave it empty."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder next to ``path`` to fill; it replaces ``path`` (and whatever was
    there) only on success, so a failure or kill leaves the old folder, or none."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; follow the umask
    try:
        yield tmp
        if path.exists() and exchange(tmp, path):
            shutil.rmtree(tmp)  # it holds the old folder now
        elif path.exists():
            # Two renames: a kill between them leaves no ``path`` (the old folder is in the
            # hidden .old- sibling). Only where the exchange is not available.
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def exchange(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``), so that a
    folder is replaced with no moment at which its path is missing; False where the system
    or the file system cannot (then nothing has changed)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]  # fmt: skip
    renameat2.restype = ctypes.c_int
    return renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def kaldi_sort_key(key: str) -> bytes:
    """Sort key matching ``LC_ALL=C sort`` (byte order of the UTF-8 encoding)."""
    return key.encode("utf-8", "surrogateescape")  # file names may hold raw bytes


def _first_bad_byte(path: str | os.PathLike) -> str:
    """Where the first byte of ``path`` that is not UTF-8 is, in words (file:line)."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return (
                    f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
                    f"{e.start + 1}); tables are UTF-8: convert it (iconv -f latin1 -t utf-8)"
                )
    return f"{path}: not UTF-8 text"


@contextlib.contextmanager
def utf8_text(path: str | os.PathLike, newline: str | None = None) -> Iterator[IO[str]]:
    """Open a text file to read; a byte that is not UTF-8 ends the read with a DataError
    naming the file and line (found by a second pass only then: no cost when it is UTF-8)."""
    try:
        with open(path, encoding="utf-8", newline=newline) as f:
            yield f
    except UnicodeDecodeError:
        raise DataError(_first_bad_byte(path)) from None


def read_table(path: str | os.PathLike, min_fields: int = 2) -> list[tuple[str, str]]:
    """Read ``key rest-of-line`` lines, in file order.

    The value is the rest of the line after the first run of whitespace, so values may
    contain spaces (paths with spaces in ``wav.scp``). Errors name file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    rows = []
    with utf8_text(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                raise DataError(f"{path}:{lineno}: empty line")
            parts = line.split(maxsplit=1)
            if len(parts) < 2 and min_fields >= 2:
                raise DataError(f"{path}:{lineno}: expected 'key value', got {line!r}")
            rows.append((parts[0], parts[1].strip() if len(parts) > 1 else ""))
    return rows


def read_dict(path: str | os.PathLike) -> dict[str, str]:
    """Read a Kaldi table into a dict; a duplicate key is an error naming it."""
    out: dict[str, str] = {}
    for key, value in read_table(path):
        if key in out:
            raise DataError(f"{path}: duplicate key {key!r}")
        out[key] = value
    return out


def write_table(
    path: str | os.PathLike, rows: Iterable[tuple[str, str]] | dict[str, str], sort: bool = True
) -> None:
    """Write ``key value`` lines atomically, ``LC_ALL=C`` sorted by key unless ``sort=False``."""
    items = list(rows.items()) if isinstance(rows, dict) else list(rows)
    if sort:
        items.sort(key=lambda kv: kaldi_sort_key(kv[0]))
    with atomic_write(path) as f:
        for key, value in items:
            f.write(f"{key} {value}\n")
