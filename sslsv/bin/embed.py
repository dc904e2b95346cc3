"""Embed your own audio with a trained model: files, a list, or a Kaldi data dir.

  python -m sslsv.bin.embed --checkpoint exp/x/model.pt (FILE... | --list LIST | --data DIR) \
      --output OUT [--format ark|npy] [--normalize] [--device cpu|cuda] \
      [--crop-seconds S] [--num-crops N] [--batch-size B]

Reads the model file (final.pt, a packaged model.pt, a checkpoint; safely) and the audio:
FILE arguments (their ids are the paths as given), LIST or DIR/wav.scp (and DIR/segments
when present). LIST holds one ``PATH`` or ``ID PATH`` per line, like wav.scp without pipes:
the ID has no spaces and the PATH is the rest of the line, so a path holding spaces needs
an ID before it (a line that is one such path, or whose first field is itself a file, is
refused, naming the line, as is a path that does not exist). The protocol is the model's
``extract:`` section unless overridden, as in extraction.
Writes OUT whole, in id order as given: ``--format ark`` (default) OUT/embeddings.ark and
OUT/embeddings.scp (sslsv.arkio; the scp names the ark by its absolute path); ``--format npy``
OUT/embeddings.npy (N x D float32) and OUT/ids.txt. The embeddings are extraction's
(``python -m sslsv.bin.extract``) for the same audio and protocol, unless ``--normalize``:
then they are what the cosine back end scores (the packaged training mean subtracted, if
any, and unit length), as ``sslsv.load_model``'s ``embed`` returns them. Unreadable or
empty audio is an error naming the file; digitally silent audio is embedded with a warning
naming it (``--on-silence error``: refused), as in extraction.
OUT is written as one unit: the files go to a temporary sibling folder that then takes
OUT's place, so a failed or killed run leaves the previous OUT or none, never the rows
of one run beside the ids of another; a rerun replaces every file of OUT (an ark/scp pair
does not survive a later --format npy run). A second run on the same OUT while one is
writing it refuses at once (OUT/.lock, as in the recipe's commands). OUT may not be or
hold an input (the model file, the list, the data dir, an audio folder), and a non-empty
OUT that holds files other than these outputs is not replaced: each a one-line error, as
is --device cuda where no GPU is visible.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sslsv import cli
from sslsv.api import load_model
from sslsv.arkio import ArkWriter
from sslsv.datadir.io import read_audio_sources
from sslsv.devices import check_device
from sslsv.errors import DataError
from sslsv.fileio import atomic_dir, fsync_file
from sslsv.locks import LOCK_NAME, output_lock

log = logging.getLogger("embed")

#: Inputs read and embedded together: bounds memory on long lists.
CHUNK = 256

#: What OUT holds after a run of either format.
OUTPUT_FILES = ("embeddings.ark", "embeddings.scp", "embeddings.npy", "ids.txt")


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, "python -m sslsv.bin.embed")
    p.add_argument("--checkpoint", required=True, help="final.pt, model.pt or a checkpoint")
    p.add_argument("files", nargs="*", help="audio files")
    p.add_argument("--list", help="file of 'PATH' or 'ID PATH' lines")
    p.add_argument("--data", help="Kaldi data dir (wav.scp, optional segments)")
    p.add_argument("--output", required=True, help="output dir (replaced whole)")
    p.add_argument("--format", choices=("ark", "npy"), default="ark")
    p.add_argument("--normalize", action="store_true", help="write scoring-ready embeddings")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument(
        "--on-silence",
        choices=("warn", "error"),
        default="warn",
        help="digitally silent audio: embedded with a warning naming it (as extraction), or an "
        "error (default: %(default)s)",
    )
    g = p.add_argument_group("extract: keys (override the model's)")
    g.add_argument("--crop-seconds", type=cli.at_least(float, 0), help="0: whole utterances")
    g.add_argument("--num-crops", type=cli.at_least(int, 1), help="crops per utterance")
    g.add_argument("--batch-size", type=cli.at_least(int, 1), help="inputs/crops per pass")
    return p


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def read_list(path: str) -> list[tuple[str, str]]:
    """(id, path) per line of a list: ``PATH`` (its id is the path), or ``ID PATH`` (the
    rest of the line is the path, as in wav.scp, so paths may hold spaces).

    Splitting at the first space is only right when the first field is an id: a line that
    is itself an existing file's name (a path holding spaces, no id), or whose first field
    is a file other than the rest, would pair one file's embedding with another name; both
    are refused, naming the line, as is a path that does not exist."""
    items: list[tuple[str, str]] = []
    lines_of: list[tuple[str, int]] = []  # (file:line, fields) of each item
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read list {path}: {e}") from None
    for n, line in enumerate(lines, 1):
        text = line.strip()
        fields = text.split(maxsplit=1)
        if not fields:
            continue
        where = f"{path}:{n}"
        if fields[-1].startswith("|") or fields[-1].endswith("|"):
            raise DataError(f"{where}: pipes are not run; give an audio file: {line!r}")
        if len(fields) == 2:
            if os.path.isfile(text):
                raise DataError(
                    f"{where}: {text!r} is one path holding spaces: give it as 'ID PATH' (an "
                    "id without spaces, then the path)"
                )
            if os.path.isfile(fields[0]) and not _same_file(fields[0], fields[1]):
                raise DataError(
                    f"{where}: the first field {fields[0]!r} is a file, not an id: give one "
                    "'PATH' or 'ID PATH' per line (an ID that names no file)"
                )
        items.append((fields[0], fields[-1]))
        lines_of.append((where, len(fields)))
    # Then the files, once every line is well formed (a pipe on line 9 is said first).
    for (_, audio), (where, n_fields) in zip(items, lines_of):
        if not os.path.exists(audio):
            hint = " (read as 'ID PATH': a path holding spaces needs an ID before it)"
            raise DataError(f"{where}: {audio!r}: no such file{hint if n_fields == 2 else ''}")
    return items


def inputs(args: argparse.Namespace) -> list[tuple[str, object]]:
    """(id, audio source) pairs from exactly one of FILE..., --list, --data."""
    given = [bool(args.files), args.list is not None, args.data is not None]
    if sum(given) != 1:
        raise DataError("give audio FILEs, --list LIST or --data DIR (exactly one)")
    if args.files:
        items = [(f, f) for f in args.files]
    elif args.list:
        items = read_list(args.list)
    else:
        items = list(read_audio_sources(Path(args.data)).items())
    seen: set[str] = set()
    for utt, _ in items:
        if utt in seen:
            raise DataError(f"id {utt!r} given twice")
        if any(c.isspace() for c in utt):
            raise DataError(
                f"id {utt!r} contains whitespace; give --list with 'ID PATH' lines instead"
            )
        seen.add(utt)
    if not items:
        raise DataError("no audio to embed")
    return items


def audio_folders(items: list[tuple[str, object]]) -> dict[str, str]:
    """The folders of the audio, each named by its first utterance, for :func:`cli.check_io`:
    OUT is replaced whole, so it may not be nor hold one. One check per folder, not per
    file: a list of a million files has far fewer folders."""
    folders: dict[str, str] = {}
    for utt, source in items:
        audio = getattr(source, "path", source)  # an AudioSource, or a path
        folders.setdefault(os.path.dirname(os.path.abspath(os.fspath(audio))), utt)
    return {f"audio folder of {utt}": folder for folder, utt in folders.items()}


def _ours(name: str) -> bool:
    """A file a run of this command (or an older one, killed) leaves in OUT."""
    return (
        name in (*OUTPUT_FILES, LOCK_NAME)
        or name.startswith("embeddings.tmp.")
        or (name.startswith(".") and name.endswith(".tmp") and name[1:].startswith(OUTPUT_FILES))
    )


def check_replaceable(out: Path, option: str = "--output") -> None:
    """OUT is replaced whole: refuse a folder holding anything but this command's outputs
    (a results folder given by mistake would be deleted)."""
    if not out.is_dir():
        return
    foreign = sorted(p.name for p in out.iterdir() if not _ours(p.name))
    if foreign:
        raise DataError(
            f"{option} {out}: holds files that embed does not write ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); it would be replaced whole: name a new "
            "folder"
        )


def write_ark(folder: Path, out: Path, ids: list[str], x: np.ndarray) -> None:
    """``folder``/embeddings.{ark,scp} (both flushed to disk), the scp naming the ark where
    it will be: ``out``."""
    ark = folder / "embeddings.ark"
    with ArkWriter(ark, folder / "embeddings.scp", ark_in_scp=out / "embeddings.ark") as write:
        for utt, row in zip(ids, x):
            write(utt, row)


def write_output(out: Path, ids: list[str], x: np.ndarray, fmt: str) -> None:
    """OUT, whole or not at all (the caller holds OUT's lock)."""
    try:
        _write_output(out, ids, x, fmt)
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        # The swap moves the old OUT aside, then the new one in: a run started between the
        # two renames found no OUT (so no lock), made its own, and finished first. Its
        # output is whole and stays; this one's is dropped.
        raise DataError(
            f"{out}: replaced by another run while this one was writing it; that run's "
            "output stands, this one's was discarded"
        ) from None


def _write_output(out: Path, ids: list[str], x: np.ndarray, fmt: str) -> None:
    with atomic_dir(out) as tmp:
        if fmt == "npy":
            np.save(tmp / "embeddings.npy", x)
            (tmp / "ids.txt").write_text("".join(f"{utt}\n" for utt in ids), encoding="utf-8")
            for name in ("embeddings.npy", "ids.txt"):
                fsync_file(tmp / name)
        else:
            write_ark(tmp, out, ids, x)
        # The lock file goes into the new OUT too (a second link to the locked file): after
        # the swap OUT/.lock is still the file this run holds, so a run starting then still
        # refuses, and this run's release removes its own file, not a newcomer's.
        with contextlib.suppress(OSError):  # no hard links here: the window is the swap's
            os.link(out / LOCK_NAME, tmp / LOCK_NAME)


def embed(args: argparse.Namespace) -> None:
    start = time.time()
    check_device(args.device)  # one line, before the audio is read
    out = Path(args.output).absolute()
    items = inputs(args)
    cli.check_io(
        inputs={
            "--checkpoint": args.checkpoint,
            "--list": args.list,
            "--data": args.data,
            **audio_folders(items),
        },
        folders={"--output": args.output},
    )
    check_replaceable(Path(args.output))
    created = not out.exists()
    try:
        with output_lock(out, "sslsv.bin.embed"):
            model = load_model(args.checkpoint, args.device)
            protocol = {
                k: getattr(args, k)
                for k in ("crop_seconds", "num_crops", "batch_size")
                if getattr(args, k) is not None
            }
            chunks = []
            for first in range(0, len(items), CHUNK):
                sources = [source for _, source in items[first : first + CHUNK]]
                chunks.append(
                    model.embed(
                        sources, raw=not args.normalize, on_silence=args.on_silence, **protocol
                    )
                )
            x = np.concatenate(chunks).astype(np.float32)
            ids = [utt for utt, _ in items]
            write_output(out, ids, x, args.format)
    finally:
        if created:  # a failed first run leaves no empty OUT behind (a full one stays)
            with contextlib.suppress(OSError):
                out.rmdir()
    log.info(
        "%s: %d embeddings (%s, %d-d) in %.1f s", out, len(ids), args.format, x.shape[1],
        time.time() - start,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(embed, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
