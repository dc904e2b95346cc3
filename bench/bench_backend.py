"""Benchmark the scoring back ends and metrics (run by hand; prints a Markdown table).

    .venv/bin/python bench/bench_backend.py            # all rows
    .venv/bin/python bench/bench_backend.py --rows cosine asnorm

Each row runs in a fresh subprocess so that its peak resident memory (``ru_maxrss``, which
includes the synthetic input data) is its own. Targets (issue 5, 2 CPU cores):
cosine 10M trials + EER + minDCF <= 20 s; LDA 200 + PLDA on 200k x 256 <= 60 s;
AS-norm (cohort 6,000, top-k 300) over 600k trials <= 60 s.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import describe as describe_machine  # bench/machine.py, beside this script

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DIM = 256


def _speaker_data(rng, n_utts, n_spk, dim=DIM):
    """Embeddings with speaker structure: anisotropic speaker means plus noise (float32)."""
    spk = rng.integers(0, n_spk, n_utts)
    scales = np.linspace(2.0, 0.2, dim).astype(np.float32)
    means = rng.standard_normal((n_spk, dim), dtype=np.float32) * scales
    noise = rng.standard_normal((n_utts, dim), dtype=np.float32) * (1.8 * scales[::-1])
    x = means[spk] + noise + 0.5
    return x, spk


def _trials(rng, spk, n_trials, target_fraction=0.1):
    """Random pairs, ``target_fraction`` of them drawn within a speaker."""
    n_utts = len(spk)
    enroll = rng.integers(0, n_utts, n_trials)
    test = rng.integers(0, n_utts, n_trials)
    # Targets: pair each chosen enroll with a random other utterance of its speaker.
    order = np.argsort(spk, kind="stable")
    starts = np.searchsorted(spk[order], np.arange(spk.max() + 2))
    n_tar = int(n_trials * target_fraction)
    s = spk[enroll[:n_tar]]
    pick = starts[s] + (rng.random(n_tar) * (starts[s + 1] - starts[s])).astype(np.int64)
    test[:n_tar] = order[pick]
    return enroll, test, spk[enroll] == spk[test]


def row_cosine() -> dict:
    from sslsv.backend import CosineBackend
    from sslsv.metrics import compute_metrics

    rng = np.random.default_rng(0)
    x, spk = _speaker_data(rng, 100_000, 5_000)
    enroll, test, labels = _trials(rng, spk, 10_000_000)
    t0 = time.perf_counter()
    backend = CosineBackend.fit(x)
    prepared = backend.prepare(x)
    t1 = time.perf_counter()
    scores = backend.score_pairs(prepared, prepared, enroll, test)
    t2 = time.perf_counter()
    result = compute_metrics(scores, labels, (0.01,))
    t3 = time.perf_counter()
    return {
        "time_s": t3 - t0,
        "detail": f"prepare {t1 - t0:.1f} s, score {t2 - t1:.1f} s, EER+minDCF+actDCF+Cllr "
        f"{t3 - t2:.1f} s (EER {100 * result['eer']:.2f}%)",
    }


def row_plda() -> dict:
    from sslsv.backend import PLDABackend

    rng = np.random.default_rng(1)
    x, spk = _speaker_data(rng, 200_000, 6_000)
    t0 = time.perf_counter()
    backend = PLDABackend.fit(x, spk, lda_dim=200, n_iter=10)
    t1 = time.perf_counter()
    backend.prepare(x)
    t2 = time.perf_counter()
    return {
        "time_s": t1 - t0,
        "detail": f"LDA 200 + 10 EM iterations; preparing the 200k embeddings after: "
        f"{t2 - t1:.1f} s",
    }


def _asnorm(kind: str) -> dict:
    from sslsv.backend import CosineBackend, PLDABackend, score_norm

    rng = np.random.default_rng(2)
    x, spk = _speaker_data(rng, 145_160 + 6_000, 7_000)
    eval_x, cohort_x = x[:145_160], x[145_160:]
    enroll, test, _ = _trials(rng, spk[:145_160], 600_000)
    t_train = 0.0
    if kind == "cosine":
        backend = CosineBackend.fit(cohort_x)
    else:
        t = time.perf_counter()
        backend = PLDABackend.fit(cohort_x, spk[145_160:], lda_dim=200, n_iter=10)
        t_train = time.perf_counter() - t
    t0 = time.perf_counter()
    prepared = backend.prepare(eval_x)
    cohort = backend.prepare(cohort_x)
    raw = backend.score_pairs(prepared, prepared, enroll, test)
    t1 = time.perf_counter()
    score_norm(backend, raw, prepared, prepared, enroll, test, cohort, "as", top_k=300)
    t2 = time.perf_counter()
    n_used = len(np.union1d(enroll, test))
    detail = (
        f"{n_used} distinct embeddings; prepare + raw scores {t1 - t0:.1f} s, "
        f"cohort stats + norm {t2 - t1:.1f} s"
    )
    if t_train:
        detail += f" (PLDA training on the cohort, not timed: {t_train:.1f} s)"
    return {"time_s": t2 - t0, "detail": detail}


def row_asnorm() -> dict:
    return _asnorm("cosine")


def row_asnorm_plda() -> dict:
    return _asnorm("plda")


def row_cli() -> dict:
    """Both CLIs end to end on files: 1M trials over 100k embeddings (ark/scp)."""
    import kaldiio

    from sslsv.datadir.io import write_trials

    rng = np.random.default_rng(3)
    x, spk = _speaker_data(rng, 100_000, 5_000)
    enroll, test, labels = _trials(rng, spk, 1_000_000)
    keep = np.unique(enroll * len(x) + test, return_index=True)[1]
    enroll, test, labels = enroll[keep], test[keep], labels[keep]
    ids = [f"spk{s:05d}-utt{i:06d}" for i, s in enumerate(spk)]
    with tempfile.TemporaryDirectory() as tmp:
        with kaldiio.WriteHelper(f"ark,scp:{tmp}/emb.ark,{tmp}/emb.scp") as writer:
            for utt, vec in zip(ids, x):
                writer(utt, vec)
        write_trials(
            f"{tmp}/trials",
            [(ids[e], ids[t], bool(y)) for e, t, y in zip(enroll, test, labels)],
        )
        t0 = time.perf_counter()
        common = [sys.executable, "-m"]
        scp = f"{tmp}/emb.scp"
        subprocess.run(
            common
            + ["sslsv.bin.score", "--backend", "cosine", "--trials", f"{tmp}/trials"]
            + ["--enroll", scp, "--test", scp, "--train", scp, "--output", f"{tmp}/s"],
            check=True,
            capture_output=True,
        )
        t1 = time.perf_counter()
        subprocess.run(
            common
            + ["sslsv.bin.compute_metrics", "--trials", f"{tmp}/trials"]
            + ["--scores", f"{tmp}/s"],
            check=True,
            capture_output=True,
        )
        t2 = time.perf_counter()
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "time_s": t2 - t0,
        "detail": f"{len(enroll)} trials; score CLI {t1 - t0:.1f} s (incl. reading 100k "
        f"embeddings twice), compute_metrics CLI {t2 - t1:.1f} s; CLI peak RSS "
        f"{child / 1024:.0f} MiB",
    }


ROWS = {
    "cosine": ("cosine: 10M trials, 100k x 256, score + metrics", 20, row_cosine),
    "plda": ("LDA 200 + PLDA: train on 200k x 256, 6k speakers", 60, row_plda),
    "asnorm": ("AS-norm (cosine): 600k trials, cohort 6k, top-300", 60, row_asnorm),
    "asnorm_plda": (
        "AS-norm (LDA200+PLDA): 600k trials, cohort 6k, top-300",
        None,
        row_asnorm_plda,
    ),
    "cli": ("CLIs end to end (files): 1M trials, 100k embeddings", None, row_cli),
}


def machine() -> str:
    import torch  # noqa: F401 -- its thread count, which the rows run with, is described

    return describe_machine(("numpy", "torch")).line()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    p.add_argument("--child", choices=list(ROWS), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        result = ROWS[args.child][2]()
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    print(f"Machine: {machine()}\n")
    print("| benchmark | time (s) | target (s) | peak RSS (MiB) | notes |")
    print("|---|---:|---:|---:|---|")
    for name in args.rows:
        title, target, _ = ROWS[name]
        proc = subprocess.run(
            [sys.executable, __file__, "--child", name], capture_output=True, text=True
        )
        if proc.returncode != 0:
            print(f"| {title} | failed | | | {proc.stderr.strip().splitlines()[-1]} |")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        verdict = "" if target is None else (" ok" if r["time_s"] <= target else " MISSED")
        target_text = "-" if target is None else f"{target}{verdict}"
        print(
            f"| {title} | {r['time_s']:.1f} | {target_text} | {r['peak_rss_mib']:.0f} | "
            f"{r['detail']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
