"""Kaldi ark/scp of features and embeddings: reading them safely, writing them atomically.

Reading: kaldiio's own loaders run ``cmd |`` entries as shell commands and unpickle ``PKL``
entries; this module opens only plain files and parses only Kaldi float matrices and
vectors (binary or text), using kaldiio's parsers for those. ``load_embeddings`` reads an
scp or ark of embeddings (each ark once, front to back), ``read_matrix`` one entry of an
scp (a feature matrix of ``feats.scp``), ``arks_of`` the ark files an scp or ark reads.

Writing: :class:`ArkWriter` writes an ark and its scp, the scp last and atomically
(:func:`sslsv.fileio.atomic_write`), once the ark is complete and on disk: an scp that
exists always points into a whole ark. Feature computation, extraction and
``sslsv.bin.embed`` all write through it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
from kaldiio.matio import read_ascii_mat, read_matrix_or_vector, read_token, write_array

from sslsv.errors import DataError
from sslsv.fileio import atomic_write, read_dict

__all__ = [
    "ArkWriter",
    "arks_of",
    "load_embeddings",
    "load_labelled_embeddings",
    "parse_location",
    "read_matrix",
]


def _strip_rspecifier(path: str | os.PathLike) -> tuple[Path, bool]:
    """``(file, is_ark)`` from ``x.scp``, ``x.ark``, ``scp:x`` or ``ark:x``."""
    text = os.fspath(path)
    for prefix, is_ark in (("scp:", False), ("ark:", True)):
        if text.startswith(prefix):
            return Path(text[len(prefix) :]), is_ark
    return Path(text), text.endswith(".ark")


_FAST_TYPES = {b"FV ": "<f4", b"DV ": "<f8", b"FM ": "<f4", b"DM ": "<f8"}


def _read_object(fd: BinaryIO, where: str) -> np.ndarray:
    """One Kaldi float matrix or vector at the current position of ``fd``; leaves ``fd``
    just after it."""
    start = fd.tell()
    head = fd.read(15)
    dtype = _FAST_TYPES.get(head[2:5]) if head[:2] == b"\0B" else None
    if dtype is not None and head[5:6] == b"\4":
        # Uncompressed binary vector or matrix (what extractors write): parse directly,
        # much faster than kaldiio's byte-by-byte token reader.
        n_rows = int.from_bytes(head[6:10], "little", signed=True)
        shape: tuple[int, ...] = (n_rows,)
        data_start = start + 10
        if head[3:4] == b"M":
            if head[10:11] != b"\4":
                raise DataError(f"{where}: corrupt Kaldi matrix header")
            shape = (n_rows, int.from_bytes(head[11:15], "little", signed=True))
            data_start = start + 15
        if min(shape) < 0:
            raise DataError(f"{where}: corrupt Kaldi header (shape {shape})")
        fd.seek(data_start)
        count = int(np.prod(shape))
        data = fd.read(count * np.dtype(dtype).itemsize)
        if len(data) != count * np.dtype(dtype).itemsize:
            raise DataError(f"{where}: truncated Kaldi object (file ends early)")
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    fd.seek(start)
    if head[:2] == b"\0B" and head[2:3] != b"\4":
        try:
            array = read_matrix_or_vector(fd)  # compressed matrices
        except (AssertionError, ValueError, TypeError, struct.error) as e:
            raise DataError(f"{where}: not a Kaldi float matrix or vector ({e})") from None
    elif head.lstrip()[:1] == b"[":
        array = read_ascii_mat(fd)
    else:
        raise DataError(
            f"{where}: unsupported object (only Kaldi float matrices/vectors are read; "
            f"starts with {head[:5]!r})"
        )
    return np.asarray(array)


def _as_vector(array: np.ndarray, where: str) -> np.ndarray:
    # A 1 x D matrix is what some extractors write for one embedding.
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 1 or array.size == 0:
        raise DataError(f"{where}: expected an embedding vector, got shape {array.shape}")
    return array


def _missing_error(path: Path, missing: Sequence[str]) -> DataError:
    shown = " ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
    return DataError(f"{path}: no embedding for {len(missing)} utterance(s): {shown}")


def _stack(path: Path, ids: Sequence[str], vectors: dict[str, np.ndarray]) -> np.ndarray:
    if not ids:
        raise DataError(f"{path}: no embeddings to load")
    dim = len(vectors[ids[0]])
    out = np.empty((len(ids), dim), dtype=np.float32)
    for row, utt in enumerate(ids):
        vec = vectors[utt]
        if len(vec) != dim:
            raise DataError(
                f"{path}: embedding of {utt!r} has dimension {len(vec)}, {ids[0]!r} has {dim}"
            )
        out[row] = vec
    bad = np.flatnonzero(~np.isfinite(out).all(1))
    if len(bad):
        names = " ".join(ids[i] for i in bad[:5])
        raise DataError(f"{path}: {len(bad)} embedding(s) with non-finite values: {names}")
    return out


def parse_location(value: str, scp: Path, utt: str) -> tuple[str, int]:
    """``(ark path, offset)`` of an scp entry ``ark_path:offset``; command pipes and slices
    are refused (nothing read is ever executed)."""
    if value.endswith("|") or value.startswith("|") or "[" in value:
        raise DataError(
            f"{scp}: {utt!r} -> {value!r}: pipes and slices are not read; "
            "expected 'ark_path:offset'"
        )
    ark, sep, offset = value.rpartition(":")
    if not sep or not offset.isdigit():
        ark, offset = value, "0"
    ark_path = Path(ark)
    if not ark_path.is_absolute() and not ark_path.exists():
        # Paths in an scp are relative to the working directory in Kaldi; also accept
        # paths relative to the scp itself so a moved experiment dir still reads.
        beside = scp.parent / ark_path
        ark_path = beside if beside.exists() else ark_path
    return str(ark_path), int(offset)


def read_matrix(value: str, scp: Path, utt: str) -> np.ndarray:
    """The Kaldi float matrix or vector at scp entry ``value`` (of utterance ``utt``)."""
    ark, offset = parse_location(value, scp, utt)
    where = f"{scp}: {utt!r} ({ark}:{offset})"
    try:
        with open(ark, "rb") as fd:
            fd.seek(offset)
            return _read_object(fd, where)
    except OSError as e:
        raise DataError(f"{where}: cannot read: {e}") from None


def _load_from_scp(scp: Path, wanted: Sequence[str]) -> dict[str, np.ndarray]:
    entries = read_dict(scp)
    missing = [u for u in wanted if u not in entries]
    if missing:
        raise _missing_error(scp, missing)
    locations = [(*parse_location(entries[utt], scp, utt), utt) for utt in wanted]
    # Read each ark once, front to back.
    locations.sort()
    vectors: dict[str, np.ndarray] = {}
    fd, current = None, None
    try:
        for ark, offset, utt in locations:
            if ark != current:
                if fd is not None:
                    fd.close()
                try:
                    fd = open(ark, "rb")
                except OSError as e:
                    raise DataError(f"{scp}: {utt!r}: cannot open {ark}: {e}") from None
                current = ark
            fd.seek(offset)
            where = f"{scp}: {utt!r} ({ark}:{offset})"
            vectors[utt] = _as_vector(_read_object(fd, where), where)
    finally:
        if fd is not None:
            fd.close()
    return vectors


def _load_from_ark(ark: Path, wanted: set[str] | None) -> tuple[list[str], dict]:
    if not ark.is_file():
        raise DataError(f"{ark}: file not found")
    order: list[str] = []
    seen: set[str] = set()
    vectors: dict[str, np.ndarray] = {}
    with open(ark, "rb") as fd:
        while True:
            utt = read_token(fd)
            if utt is None:
                break
            where = f"{ark}: {utt!r}"
            array = _read_object(fd, where)
            if utt in seen:
                raise DataError(f"{ark}: duplicate utterance {utt!r}")
            seen.add(utt)
            order.append(utt)
            if wanted is None or utt in wanted:
                vectors[utt] = _as_vector(array, where)
    return order, vectors


def load_embeddings(
    path: str | os.PathLike, ids: Iterable[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """``(ids, matrix)``: embeddings from a Kaldi scp or ark as float32 rows.

    ``path`` is ``x.scp``, ``x.ark``, ``scp:x`` or ``ark:x``. With ``ids``, only those are
    read, once each, in the order given (first occurrence); an id without an embedding is an
    error naming it. Without ``ids``, all are read in file order.
    """
    file, is_ark = _strip_rspecifier(path)
    wanted = None if ids is None else list(dict.fromkeys(ids))
    if is_ark:
        order, vectors = _load_from_ark(file, None if wanted is None else set(wanted))
        if wanted is None:
            wanted = order
        missing = [u for u in wanted if u not in vectors]
        if missing:
            raise _missing_error(file, missing)
    else:
        if wanted is None:
            wanted = list(read_dict(file))
        vectors = _load_from_scp(file, wanted)
    return wanted, _stack(file, wanted, vectors)


def load_labelled_embeddings(
    path: str | os.PathLike, utt2spk: str | os.PathLike
) -> tuple[list[str], np.ndarray, list[str]]:
    """``(ids, matrix, speakers)`` for the utterances of ``utt2spk``, in its order.

    Every utterance of ``utt2spk`` must have an embedding (an error names those without).
    """
    labels = read_dict(utt2spk)
    ids, matrix = load_embeddings(path, labels)
    return ids, matrix, [labels[u] for u in ids]


def arks_of(path: str | os.PathLike) -> list[str]:
    """The ark files that an scp or ark (``x.scp``, ``x.ark``, ``scp:x``, ``ark:x``) reads,
    each once, in first-seen order (what a stamp records the identity of)."""
    file, is_ark = _strip_rspecifier(path)
    if is_ark:
        return [str(file)]
    located = (parse_location(v, file, u)[0] for u, v in read_dict(file).items())
    return list(dict.fromkeys(located))


class ArkWriter:
    """Writes ``(utterance, array)`` pairs to a Kaldi ark and its scp (kaldiio's binary
    layout, as ``kaldiio.WriteHelper("ark,scp:...")`` writes them), the scp last::

        with ArkWriter(ark, scp) as write:
            for utt, x in ...:
                write(utt, x)

    An existing ``scp`` is removed first (it would point into the ark being rewritten). On
    success the ark is flushed to disk, then the scp appears atomically; on failure the
    partial ark is removed and no scp is left. So an scp that exists names a whole ark.
    Whatever else the writer's output needs (a list of silent utterances, frame counts) is
    best written inside the ``with`` block, so that the scp appears after it too.

    The scp names the ark as ``ark_in_scp`` (default: ``ark`` as given), for an ark written
    in a temporary folder that then takes its final place (``sslsv.bin.embed``). Paths are
    taken as they are: no specifier string, so commas and colons in them are safe.
    """

    def __init__(
        self,
        ark: str | os.PathLike,
        scp: str | os.PathLike,
        ark_in_scp: str | os.PathLike | None = None,
    ) -> None:
        self.ark, self.scp = Path(ark), Path(scp)
        self._name = os.fspath(ark if ark_in_scp is None else ark_in_scp)
        self._lines: list[str] = []
        self._fd: BinaryIO | None = None

    def __enter__(self) -> ArkWriter:
        self.scp.unlink(missing_ok=True)
        self._fd = open(self.ark, "wb")
        return self

    def __call__(self, utt: str, array: np.ndarray) -> None:
        assert self._fd is not None, "use ArkWriter in a with block"
        self._fd.write(f"{utt} ".encode())
        offset = self._fd.tell()
        write_array(self._fd, array)
        self._lines.append(f"{utt} {self._name}:{offset}\n")

    def __len__(self) -> int:
        """The number of entries written so far."""
        return len(self._lines)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if exc_type is not None:
            fd.close()
            self.ark.unlink(missing_ok=True)
            return
        try:
            fd.flush()
            os.fsync(fd.fileno())
        finally:
            fd.close()
        with atomic_write(self.scp, "wb") as f:
            f.write("".join(self._lines).encode())  # UTF-8, as kaldiio writes it
