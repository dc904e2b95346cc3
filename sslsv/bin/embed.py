"""Embed your own audio with a trained model: files, a list, or a Kaldi data dir.

  python -m sslsv.bin.embed --checkpoint exp/x/model.pt (FILE... | --list LIST | --data DIR) \
      --output OUT [--format ark|npy] [--normalize] [--device cpu|cuda] \
      [--crop-seconds S] [--num-crops N] [--batch-size B]

Reads the model file (final.pt, a packaged model.pt, a checkpoint; safely) and the audio:
FILE arguments (their ids are the paths as given), LIST (one ``path`` or ``id path`` per
line, like wav.scp without pipes; the path is the rest of the line) or DIR/wav.scp (and
DIR/segments when present). The protocol is the model's ``extract:`` section unless
overridden, as in stage 5.
Writes, in id order as given: ``--format ark`` (default) OUT/embeddings.ark and
OUT/embeddings.scp (kaldiio); ``--format npy`` OUT/embeddings.npy (N x D float32) and
OUT/ids.txt. The embeddings are stage 5's (``python -m sslsv.bin.extract``) for the same
audio and protocol, unless ``--normalize``: then they are what the cosine back end scores
(the packaged training mean subtracted, if any, and unit length), as ``sslsv.load_model``'s
``embed`` returns them. Unreadable or empty audio is an error naming the file.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import kaldiio
import numpy as np

from sslsv import cli
from sslsv.api import load_model
from sslsv.datadir.io import read_audio_sources
from sslsv.errors import DataError
from sslsv.fileio import atomic_write

log = logging.getLogger("embed")

#: Inputs read and embedded together: bounds memory on long lists.
CHUNK = 256


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, "python -m sslsv.bin.embed")
    p.add_argument("--checkpoint", required=True, help="final.pt, model.pt or a checkpoint")
    p.add_argument("files", nargs="*", help="audio files")
    p.add_argument("--list", help="file of 'path' or 'id path' lines")
    p.add_argument("--data", help="Kaldi data dir (wav.scp, optional segments)")
    p.add_argument("--output", required=True, help="output dir")
    p.add_argument("--format", choices=("ark", "npy"), default="ark")
    p.add_argument("--normalize", action="store_true", help="write scoring-ready embeddings")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    g = p.add_argument_group("extract: keys (override the model's)")
    g.add_argument("--crop-seconds", type=cli.at_least(float, 0), help="0: whole utterances")
    g.add_argument("--num-crops", type=cli.at_least(int, 1), help="crops per utterance")
    g.add_argument("--batch-size", type=cli.at_least(int, 1), help="inputs/crops per pass")
    return p


def read_list(path: str) -> list[tuple[str, str]]:
    """(id, path) per line of a list: ``path`` (its id is the path), or ``id path`` (the
    rest of the line is the path, as in wav.scp, so paths may hold spaces)."""
    items = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read list {path}: {e}") from None
    for n, line in enumerate(lines, 1):
        fields = line.strip().split(maxsplit=1)
        if not fields:
            continue
        if fields[-1].startswith("|") or fields[-1].endswith("|"):
            raise DataError(f"{path}:{n}: pipes are not run; give an audio file: {line!r}")
        items.append((fields[0], fields[-1]))
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
                f"id {utt!r} contains whitespace; give --list with 'id path' lines instead"
            )
        seen.add(utt)
    if not items:
        raise DataError("no audio to embed")
    return items


def embed(args: argparse.Namespace) -> None:
    start = time.time()
    items = inputs(args)
    model = load_model(args.checkpoint, args.device)
    protocol = {
        k: getattr(args, k)
        for k in ("crop_seconds", "num_crops", "batch_size")
        if getattr(args, k) is not None
    }
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    chunks = []
    for first in range(0, len(items), CHUNK):
        sources = [source for _, source in items[first : first + CHUNK]]
        chunks.append(model.embed(sources, raw=not args.normalize, **protocol))
    x = np.concatenate(chunks).astype(np.float32)
    ids = [utt for utt, _ in items]
    if args.format == "npy":
        with atomic_write(out / "embeddings.npy", "wb") as f:
            np.save(f, x)
        with atomic_write(out / "ids.txt") as f:
            f.writelines(f"{utt}\n" for utt in ids)
    else:
        ark, scp = out / "embeddings.ark", out / "embeddings.scp"
        tmp_ark, tmp_scp = ark.with_name("embeddings.tmp.ark"), scp.with_name("embeddings.tmp.scp")
        with kaldiio.WriteHelper(f"ark,scp:{tmp_ark},{tmp_scp}") as writer:
            for utt, row in zip(ids, x):
                writer(utt, row)
        os.replace(tmp_ark, ark)  # the scp's offsets hold; only its file name changes
        scp_text = tmp_scp.read_text(encoding="utf-8").replace(str(tmp_ark), str(ark))
        with atomic_write(scp) as f:
            f.write(scp_text)
        tmp_scp.unlink()
    log.info(
        "%s: %d embeddings (%s, %d-d) in %.1f s", out, len(ids), args.format, x.shape[1],
        time.time() - start,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(embed, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
