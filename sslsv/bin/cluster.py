"""The second stage: cluster the training set's embeddings into pseudo-speakers.

  python -m sslsv.bin.cluster --config conf/x.yaml \
      --embeddings exp/x/embeddings_final/train/embeddings.scp \
      --data data/train --output data/train_pl1 [--device cpu|cuda]

Reads the pseudo_label: section of --config (default: its defaults), DATA (a data dir) and
an embedding (scp or ark) for every utterance of DATA. Clusters them (sslsv.cluster: k-means
of the L2-normalised embeddings, by pseudo_label.kmeans_backend torch (on --device) or
sklearn (CPU), optional agglomerative merging of the centroids (on --device), clusters
smaller than pseudo_label.min_cluster_size left out) and writes OUTPUT atomically: a data
dir of the kept utterances, keyed like DATA (its per-utterance and per-recording files
restricted to them, unchanged) whose utt2spk and spk2utt name pseudo-speakers pl0001, pl0002,
... (largest cluster first); DATA's speaker labels, spk2gender and trial lists are not
copied. Also OUTPUT/clustering.txt (for people) and OUTPUT/clustering.json (for RESULTS):
utterances kept and left out, clusters before and after merging, a cluster-size histogram
and, when DATA/utt2spk has real speakers, NMI, ARI, purity and inverse purity against them
(statistics only: the true labels are not used for training).
A rerun with the same embeddings, DATA files, pseudo_label: settings and device type (cpu or
cuda: their float rounding differs; OUTPUT.stamp says) does nothing; otherwise the log says
what changed and OUTPUT is redone. --device cuda where no GPU is visible: a one-line error.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from sslsv import cli
from sslsv.arkio import load_embeddings, parse_location
from sslsv.cluster import Clustering, cluster_embeddings, quality, size_histogram
from sslsv.config.load import load_config
from sslsv.config.schema import PseudoLabelConfig
from sslsv.datadir.io import (
    SPK_FILES,
    present_files,
    recording_files,
    utterance_files,
    write_spk2utt,
)
from sslsv.datadir.tools import check_replaceable, write_filtered
from sslsv.datadir.validate import validate_data_dir
from sslsv.devices import check_device
from sslsv.errors import DataError
from sslsv.fileio import atomic_dir, atomic_write, kaldi_sort_key, read_dict, write_table
from sslsv.reuse import changes, files_identity, remove_stamp, text_digest, write_stamp

log = logging.getLogger("cluster")

#: Bump when the same inputs would give another OUTPUT: existing ones are then redone.
CLUSTER_FORMAT = "sslsv-cluster-1"
NOTE = "statistics only: true labels are not used for training"


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, "python -m sslsv.bin.cluster")
    p.add_argument("--config", help="experiment config whose pseudo_label: section to use")
    p.add_argument("--embeddings", required=True, help="embeddings (scp or ark) of DATA")
    p.add_argument("--data", required=True, help="the training data dir to cluster")
    p.add_argument("--output", required=True, help="the pseudo-labelled data dir to write")
    p.add_argument(
        "--device",
        default="cpu",
        help="where k-means (kmeans_backend torch) and the merging run: cpu, cuda, cuda:N",
    )
    return p


def _is_ark(path: str) -> bool:
    return path.startswith("ark:") or (not path.startswith("scp:") and path.endswith(".ark"))


def _embeddings_digest(path: str) -> str:
    """The embeddings' part of the stamp: an scp's lines and its arks' identity, or an
    ark's identity (not its content: a million embeddings are not read to compare)."""
    if _is_ark(path):
        return files_identity([path.removeprefix("ark:")])
    scp = Path(path.removeprefix("scp:"))
    if not scp.is_file():
        raise DataError(f"{scp}: file not found")
    arks = (parse_location(v, scp, u)[0] for u, v in read_dict(scp).items())
    return f"{text_digest(scp)} {files_identity(arks)}"


def _settings(pl: PseudoLabelConfig) -> dict:
    """The pseudo_label: keys that shape the clustering (init_from_seed is the trainer's)."""
    settings = dataclasses.asdict(pl)
    del settings["init_from_seed"]
    return settings


def device_type(pl: PseudoLabelConfig, device: torch.device) -> str:
    """The stamp's device: its type where torch code runs on it (k-means with the torch back
    end, or the merging), else "cpu": only the type, as cuda:0 and cuda:1 round alike."""
    on_device = pl.kmeans_backend == "torch" or pl.merge_to or pl.merge_threshold
    return device.type if on_device else "cpu"


def cluster_inputs(args: argparse.Namespace, pl: PseudoLabelConfig, device: torch.device) -> dict:
    """What OUTPUT is made from (see :mod:`sslsv.reuse`)."""
    data = Path(args.data)
    names = sorted({*utterance_files(data), *recording_files(data), *SPK_FILES, "utt2spk"})
    return {
        "format": CLUSTER_FORMAT,
        "settings": _settings(pl),
        "device": device_type(pl, device),
        "data": text_digest(*(data / n for n in names)),
        "embeddings": _embeddings_digest(args.embeddings),
    }


def _true_labels(utts: list[str], utt2spk: dict[str, str]) -> list[str] | None:
    """DATA's speakers when they are real: more than one, and not one per utterance (what a
    data dir without labels has)."""
    speakers = [utt2spk[u] for u in utts]
    n = len(set(speakers))
    return speakers if 1 < n < len(utts) else None


def statistics(
    result: Clustering, pl: PseudoLabelConfig, true: list[str] | None, device: str = "cpu"
) -> dict:
    """Everything clustering.json holds; the true labels only give the quality figures."""
    n = len(result.labels)
    stats: dict = {
        "device": device,
        "utterances": n,
        "kept": result.kept,
        "dropped": n - result.kept,
        "clusters": result.clusters,
        "kmeans_clusters": result.kmeans_clusters,
        "merged_clusters": result.merged_clusters,
        "kmeans_iterations": result.iterations,
        "kmeans_seconds": round(result.kmeans_seconds, 2),
        "kmeans_init_seconds": round(result.init_seconds, 2),
        "merge_seconds": round(result.merge_seconds, 2),
        "settings": _settings(pl),
        "histogram": size_histogram(result.merged_labels),
        "true_labels": None,
    }
    if true is None:
        return stats
    kept = np.flatnonzero(result.labels >= 0)
    final = quality([true[i] for i in kept], result.labels[kept]) if len(kept) else {}
    stats.update({k: final[k] for k in ("nmi", "ari", "purity", "inverse_purity") if final})
    stats["true_labels"] = {
        "note": NOTE,
        "speakers": len(set(true)),
        "kept": final,
        "kmeans": quality(true, result.kmeans_labels),
        "merged": quality(true, result.merged_labels),
    }
    return stats


def _line(name: str, q: dict) -> str:
    return (
        f"  {name:<28} NMI {q['nmi']:.4f}  ARI {q['ari']:.4f}  purity {q['purity']:.4f}  "
        f"inverse purity {q['inverse_purity']:.4f}  ({q['clusters']} clusters, "
        f"{q['utterances']} utterances)"
    )


def report(stats: dict, args: argparse.Namespace) -> str:
    """clustering.txt: the statistics in words."""
    s = stats["settings"]
    torch_on = f" on {stats['device']}"
    backend = s["kmeans_backend"] + (torch_on if s["kmeans_backend"] == "torch" else "")
    if s["merge_to"]:
        merging = f"{s['linkage']} linkage to {s['merge_to']} clusters"
    elif s["merge_threshold"]:
        merging = f"{s['linkage']} linkage up to cosine distance {s['merge_threshold']}"
    else:
        merging = "none"
    lines = [
        f"# {args.output}: pseudo-speakers of {args.data}",
        f"# embeddings {args.embeddings}; {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}",
        f"utterances: {stats['utterances']}",
        f"kept: {stats['kept']}, dropped: {stats['dropped']} (clusters of fewer than "
        f"{s['min_cluster_size']} utterances)",
        f"k-means ({backend}): {s['kmeans_clusters']} clusters asked, "
        f"{stats['kmeans_clusters']} non-empty, "
        f"{stats['kmeans_iterations']} iterations (of at most {s['kmeans_iters']}), seed "
        f"{s['seed']}, {stats['kmeans_seconds']:.1f} s (k-means++ start on a subsample: "
        f"{stats['kmeans_init_seconds']:.1f} s)",
        f"merging: {merging}: {stats['merged_clusters']} clusters, {stats['merge_seconds']:.1f} s"
        + (torch_on if merging != "none" else ""),
        f"pseudo-speakers (clusters kept): {stats['clusters']}",
        "cluster sizes after merging (clusters, utterances):",
    ]
    lines += [
        f"  {h['sizes']:>8}: {h['clusters']:8d} {h['utterances']:10d}" for h in stats["histogram"]
    ]
    true = stats["true_labels"]
    if true is None:
        lines.append("against true speakers: none in DATA/utt2spk (one speaker, or one per utt)")
    else:
        lines.append(f"against the {true['speakers']} true speakers of DATA/utt2spk ({NOTE}):")
        if true["kept"]:
            lines.append(_line("kept utterances (output)", true["kept"]))
        lines.append(_line("after merging, all utts", true["merged"]))
        lines.append(_line("k-means, all utts", true["kmeans"]))
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _quiet_validator() -> Iterator[None]:
    """The validator warns that utterance ids do not start with their speaker id, true of
    every pseudo-labelled data dir: not worth a warning per run."""
    logger = logging.getLogger("sslsv.datadir.validate")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def write_output(
    data: Path, output: Path, utts: list[str], labels: np.ndarray, stats: dict, text: str
) -> None:
    """OUTPUT, whole or not at all: DATA's files for the kept utterances, the pseudo-speakers
    and the statistics."""
    keep = [u for u, c in zip(utts, labels) if c >= 0]
    width = max(4, len(str(stats["clusters"])))  # fixed width: C sort order = numeric order
    utt2spk = {u: f"pl{c + 1:0{width}d}" for u, c in zip(utts, labels) if c >= 0}
    with atomic_dir(output) as tmp:
        # DATA's files restricted to the kept utterances; its speaker-level files (utt2spk,
        # spk2utt, spk2gender) are replaced or removed here, before the folder is visible.
        write_filtered(data, tmp, set(keep), with_trials=False)
        for name in present_files(tmp, SPK_FILES):
            (tmp / name).unlink()
        write_table(tmp / "utt2spk", utt2spk)
        write_spk2utt(tmp)
        with atomic_write(tmp / "clustering.json") as f:
            json.dump(stats, f, indent=1)
            f.write("\n")
        with atomic_write(tmp / "clustering.txt") as f:
            f.write(text)
        with _quiet_validator():
            validate_data_dir(tmp, check_wav_exists=False)


def cluster(args: argparse.Namespace) -> None:
    pl = load_config(args.config).pseudo_label if args.config else PseudoLabelConfig()
    data, output = Path(args.data), Path(args.output)
    device = check_device(args.device)  # one line where --device cuda finds no GPU
    validate_data_dir(data, check_wav_exists=False)
    inputs = cluster_inputs(args, pl, device)
    why = changes(output, inputs)
    if not why:
        log.info("%s is up to date (same embeddings, data dir, pseudo_label: and device)", output)
        return
    # OUTPUT is replaced whole: not DATA, the embeddings or the config, nor a folder holding
    # one, and somewhere it can be written; refused before the clustering, not after it
    # (after the up-to-date check: an up-to-date OUTPUT in a read-only folder is fine).
    embeddings = args.embeddings.removeprefix("ark:").removeprefix("scp:")
    cli.check_io(
        {"--data": data, "--embeddings": embeddings, "--config": args.config},
        folders={"--output": output},
    )
    log.info("clustering %s into %s: %s", data, output, "; ".join(why))
    check_replaceable(output)
    remove_stamp(output)
    start = time.time()
    utt2spk = read_dict(data / "utt2spk")
    utts = sorted(utt2spk, key=kaldi_sort_key)
    if pl.kmeans_clusters > len(utts):
        raise DataError(
            f"pseudo_label.kmeans_clusters {pl.kmeans_clusters} exceeds the {len(utts)} "
            f"utterances of {data}"
        )
    # Normalised in place: one copy of the embeddings (VoxCeleb2: 2.1 GiB), not two.
    x = load_embeddings(args.embeddings, utts)[1]
    result = cluster_embeddings(x, pl, copy=False, device=device)
    del x  # 2.1 GiB at VoxCeleb2 size, not kept while OUTPUT is written
    stats = statistics(result, pl, _true_labels(utts, utt2spk), str(device))
    if not result.kept:
        raise DataError(
            f"{data}: no cluster has pseudo_label.min_cluster_size {pl.min_cluster_size} "
            f"utterances: nothing to write"
        )
    text = report(stats, args)
    write_output(data, output, utts, result.labels, stats, text)
    write_stamp(output, inputs)
    sys.stdout.write(text)
    log.info(
        "wrote %s: %d of %d utterances in %d pseudo-speakers, %.1f s",
        output,
        result.kept,
        len(utts),
        result.clusters,
        time.time() - start,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(cluster, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
