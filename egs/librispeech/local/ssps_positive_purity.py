"""How often an SSPS positive is of the anchor's speaker: a diagnostic, from the true
speakers the training never sees.

For each experiment, reads the SSPS memory of its newest epoch checkpoint (epoch-*.pt:
utterance indices and their k-means clusters at the last refresh) and DATA/utt2spk, and
prints, over the memory's slots: the share of the other-utterance slots of the anchor's
cluster that are of the anchor's speaker (what a positive drawn from the cluster is, on
average, as sslsv.methods.ssps draws them; the anchor's cluster is taken as its slot's),
beside the same share over the whole memory (a positive drawn at random); both also over the
anchors whose speaker has another utterance in the memory (for the others, no positive can
be right).

  python local/ssps_positive_purity.py --data data/train exp/<row>_epochs30_seed1 ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from sslsv.datadir.io import read_audio_sources
from sslsv.fileio import read_dict
from sslsv.train.checkpoint import load_safe


def same_speaker_shares(
    index: np.ndarray, assign: np.ndarray, speaker: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per filled slot that has at least one other-utterance slot in its cluster: the share
    of those of its speaker, the share of all other-utterance slots of its speaker, and
    whether its speaker has any other utterance in the memory."""
    in_cluster, anywhere = [], []
    for i in np.flatnonzero(index >= 0):
        other = (index >= 0) & (index != index[i])
        same_cluster = other & (assign == assign[i])
        if not same_cluster.any():
            continue  # sslsv.methods.ssps keeps the anchor's own positive then
        in_cluster.append(np.mean(speaker[same_cluster] == speaker[i]))
        anywhere.append(np.mean(speaker[other] == speaker[i]))
    in_cluster, anywhere = np.array(in_cluster), np.array(anywhere)
    return in_cluster, anywhere, anywhere > 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True, help="the training data dir (utt2spk)")
    p.add_argument("exp_dirs", nargs="+")
    args = p.parse_args()
    data = Path(args.data)
    utts = list(read_audio_sources(data))  # the training set's utterance indices
    utt2spk = read_dict(data / "utt2spk")
    print(
        "| experiment | epoch | slots | clusters | same speaker: in cluster | anywhere | "
        "anchors with another utterance | their in cluster | their anywhere |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for exp in map(Path, args.exp_dirs):
        if (exp / "bad_audio.txt").exists():
            print(f"{exp}: bad_audio.txt left utterances out; indices differ", file=sys.stderr)
            return 1
        newest = sorted((exp / "checkpoints").glob("epoch-*.pt"))[-1]
        state = load_safe(newest)
        method = state["method"]
        index = method["ssps.index"].numpy()
        assign = method["ssps.assign"].numpy()
        speaker = np.array([utt2spk[utts[i]] if i >= 0 else "" for i in index])
        in_cluster, anywhere, possible = same_speaker_shares(index, assign, speaker)
        print(
            f"| {exp.name} | {state['epoch']} | {int((index >= 0).sum())} | "
            f"{len(method['ssps.centroids'])} | {in_cluster.mean():.1%} | {anywhere.mean():.1%} | "
            f"{possible.mean():.0%} | {in_cluster[possible].mean():.1%} | "
            f"{anywhere[possible].mean():.1%} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
