"""The one answer to "is this output up to date?": a stamp of everything it was made from.

Beside each output it finishes (a job's ark/scp, a trained back end), a stage writes a stamp:
a JSON file naming every input that shaped it, as digests (the lines of the data-dir files it
read; the identity, path + size + modification time, of every audio, feature or model file),
the settings themselves, and the format version of the code that wrote it. A rerun computes
the same from the inputs as they are now: equal, the output is reused; different, it is
redone and the log says which inputs changed (for settings, which keys). An output without a
stamp (interrupted, or written by a version without stamps) is redone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sslsv.fileio import atomic_write

log = logging.getLogger(__name__)

#: A part of a stamp: a digest (str) or settings (a mapping, compared key by key).
Inputs = dict[str, Any]


def stamp_path(output: str | os.PathLike) -> Path:
    """Where the stamp of ``output`` lives: ``OUTPUT.stamp``."""
    output = Path(output)
    return output.with_name(output.name + ".stamp")


def text_digest(*paths: str | os.PathLike) -> str:
    """Digest of the content of text files (a missing one counts as empty, by name)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"\0{Path(path).name}\0".encode())
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        except FileNotFoundError:
            digest.update(b"\0missing")
    return digest.hexdigest()


def _identity(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}\0missing"
    return f"{path}\0{st.st_size}\0{st.st_mtime_ns}"


def model_file(path: str | os.PathLike) -> dict:
    """A model file's identity as a stamp records it, ``{"path" (absolute), "size",
    "mtime_ns"}``: what sslsv.bin.extract stamps beside embeddings, and what the checks of
    :mod:`sslsv.calibration` compare (an OSError when missing)."""
    absolute = Path(path).absolute()
    st = absolute.stat()
    return {"path": str(absolute), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def files_identity(paths: Iterable[str]) -> str:
    """Digest of the identity (path, size, mtime) of each distinct file, in first-seen order.

    A changed, replaced, touched or missing file changes it; the content is not read, so a
    million audio files cost a million ``stat`` calls (run in threads: network file systems
    answer them slowly one by one).
    """
    unique = list(dict.fromkeys(paths))
    with ThreadPoolExecutor(max_workers=16) as pool:
        identities = pool.map(_identity, unique, chunksize=1024)
        digest = hashlib.sha256()
        for identity in identities:
            digest.update(identity.encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()


def _read(path: Path) -> Inputs | None:
    try:
        with open(path, encoding="utf-8") as f:
            stamp = json.load(f)
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def _setting_changes(old: Mapping, new: Mapping) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def changes(output: str | os.PathLike, inputs: Inputs) -> list[str]:
    """What differs between ``inputs`` and the stamp of ``output``, in words; empty when the
    output exists and was made from exactly these inputs."""
    if not Path(output).exists():
        return ["not made yet"]
    stamp = _read(stamp_path(output))
    if stamp is None:
        return ["no stamp (interrupted, or made by an older version)"]
    out = []
    for name in sorted(set(stamp) | set(inputs)):
        old, new = stamp.get(name), inputs.get(name)
        if old == new:
            continue
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            out.append(f"{name} ({', '.join(_setting_changes(old, new))})")
        else:
            out.append(f"{name} changed")
    return out


def write_stamp(output: str | os.PathLike, inputs: Inputs) -> None:
    """Record that ``output`` (already written) was made from ``inputs``."""
    with atomic_write(stamp_path(output)) as f:
        json.dump(inputs, f, sort_keys=True, indent=1)


def remove_stamp(output: str | os.PathLike) -> None:
    """Forget ``output``'s inputs before it is redone, so that a failure leaves it unstamped."""
    stamp_path(output).unlink(missing_ok=True)


def outdated_jobs(
    outputs: Mapping[int, Path], inputs: Mapping[int, Inputs], where: str
) -> list[int]:
    """The jobs (of a stage's ``--nj``) whose output is missing or was made from other
    inputs, each logged with what changed. Their outputs and stamps are removed now, so
    that a job that then fails is redone by the next run, never trusted."""
    todo = []
    for job, output in outputs.items():
        why = changes(output, inputs[job])
        if why:
            todo.append(job)
            log.info("%s: job %d of %d to do: %s", where, job, len(outputs), "; ".join(why))
            remove_stamp(output)
            Path(output).unlink(missing_ok=True)
    return todo


@contextlib.contextmanager
def stamping(
    outputs: Mapping[int, Path], inputs: Mapping[int, Inputs], jobs: Iterable[int]
) -> Iterator[None]:
    """Around running ``jobs``: then stamp each whose output exists, also when others failed
    (a job that finished is kept)."""
    try:
        yield
    finally:
        for job in jobs:
            if Path(outputs[job]).exists():
                write_stamp(outputs[job], inputs[job])
