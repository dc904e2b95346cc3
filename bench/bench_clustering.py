"""Benchmark the second stage's clustering (run by hand; prints a Markdown table).

    .venv/bin/python bench/bench_clustering.py              # 200,000 x 256 into K = 6,000
    .venv/bin/python bench/bench_clustering.py --quick      # 20,000 x 256 into K = 600

Synthetic embeddings: K true speakers with unit-length centres in random directions, each
utterance its speaker's centre plus isotropic Gaussian noise of norm about 1.6 (so that two
utterances of a speaker have cosine about 0.28, of two speakers about 0 +- 1/sqrt(D)),
utterances spread over speakers at random; then L2-normalised. Times sslsv.cluster's k-means
into ``--k`` clusters (k-means++ start on a 2K subsample, then at most ``--iters`` Lloyd
iterations) and its agglomerative merging of the centroids (average linkage, to
``--merge-to``, in a child process whose peak RSS above its input is the AHC's memory), and
projects both to VoxCeleb2 (1.1 M x 512, K = 50,000, 20 iterations, AHC to 7,500): Lloyd
from the measured rate of multiply-adds (N x K x D per iteration), the k-means++ start as
2K x K x D x (2 + ln K), AHC time as O(n^2) and its memory per condensed-matrix byte.
Target (2 CPU cores): k-means of 200,000 x 256 into K = 6,000 within 5 minutes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: VoxCeleb2 dev and the voxceleb recipe's pseudo_label: settings, for the projection.
VOX_N, VOX_DIM, VOX_K, VOX_ITERS, VOX_MERGE_TO = 1_092_009, 512, 50_000, 20, 7_500
TARGET_S = 300


def speaker_embeddings(n: int, dim: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(x, speaker)``: n float32 embeddings of k speakers (see the module docstring)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    speaker = rng.integers(0, k, n)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x *= np.float32(1.6 / np.sqrt(dim))
    x += centres[speaker]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, speaker


def threads() -> str:
    from threadpoolctl import threadpool_info

    pools = {f"{p['user_api']} ({p['internal_api']})": p["num_threads"] for p in threadpool_info()}
    return ", ".join(f"{name} {count}" for name, count in sorted(pools.items()))


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import scipy
    import sklearn

    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (
        f"{datetime.date.today()}, {platform.node() or 'host'}: {model}, "
        f"os.cpu_count()={os.cpu_count()}, threads: {threads()}; numpy {np.__version__}, "
        f"scikit-learn {sklearn.__version__}, scipy {scipy.__version__}; load average at "
        f"start {load}"
    )


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MiB"


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def ahc_child(path: str, merge_to: int) -> None:
    """The merging alone, in its own process: its peak resident memory above the loaded
    centroids is the AHC's. VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's
    resident size (fork), and scipy's copy of the distances is C memory that tracemalloc
    does not see."""
    import scipy.cluster.hierarchy  # noqa: F401  (imported before, not counted)

    from sslsv.cluster import merge_clusters

    centroids = np.load(path)
    before = _status_kib("VmRSS") * 1024
    t = time.perf_counter()
    merged = merge_clusters(centroids, merge_to=merge_to, linkage="average")
    seconds = time.perf_counter() - t
    after = _status_kib("VmHWM") * 1024
    assert len(set(merged)) == merge_to
    print(json.dumps({"seconds": seconds, "extra_bytes": after - before}))


def run_ahc(centroids: np.ndarray, merge_to: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/centroids.npy"
        np.save(path, centroids)
        command = [sys.executable, __file__, "--ahc-child", path, "--merge-to", str(merge_to)]
        proc = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=200_000, help="utterances")
    p.add_argument("--dim", type=int, default=256, help="embedding dimension")
    p.add_argument("--k", type=int, default=6_000, help="true speakers = k-means clusters")
    p.add_argument("--iters", type=int, default=30, help="k-means iterations at most")
    p.add_argument("--merge-to", type=int, default=1_000, help="AHC of the centroids to this")
    p.add_argument("--quick", action="store_true", help="n 20,000, k 600, merge to 100")
    p.add_argument("--ahc-child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.ahc_child:
        ahc_child(args.ahc_child, args.merge_to)
        return
    if args.quick:
        args.n, args.k, args.merge_to = 20_000, 600, 100

    from sslsv.cluster import kmeans, normalise, quality

    print(f"Machine: {machine()}\n")
    t = time.perf_counter()
    x, speaker = speaker_embeddings(args.n, args.dim, args.k)
    print(f"(synthetic data: {time.perf_counter() - t:.1f} s, not counted)\n")

    t = time.perf_counter()
    km = kmeans(normalise(x), args.k, args.iters, seed=0)
    t_kmeans = time.perf_counter() - t
    del x
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    q = quality(speaker, km.labels)
    ahc = run_ahc(km.centroids, args.merge_to)
    t_ahc, ahc_extra = ahc["seconds"], ahc["extra_bytes"]

    per_iter = (t_kmeans - km.init_seconds) / km.iterations
    rate = args.n * args.k * args.dim / per_iter  # multiply-adds per second
    vox_kmeans = VOX_N * VOX_K * VOX_DIM * VOX_ITERS / rate

    def init_cost(n: int, k: int, dim: int) -> float:  # m x K x D x (2 + ln K), m = 2K
        return min(n, 2 * k) * k * dim * (2 + np.log(k))

    vox_init = (
        km.init_seconds * init_cost(VOX_N, VOX_K, VOX_DIM) / init_cost(args.n, args.k, args.dim)
    )
    condensed = 8 * args.k * (args.k - 1) / 2
    vox_condensed = 8 * VOX_K * (VOX_K - 1) / 2
    # The peak less the block of similarities (up to 2,048 x K float32) scales with n^2.
    block = min(2048, args.k) * args.k * 4
    per_byte = max(ahc_extra - block, 0) / condensed
    ahc_memory = f"{_gib(ahc_extra)} ({per_byte:.2f} x the condensed matrix + a block)"
    if condensed < 100 * 2**20:  # too small to tell from the allocator's slack: assume
        per_byte = 2.0  # scipy's copy of the matrix, as measured at K = 6,000 and 15,000
        ahc_memory = "too small to measure"
    vox_ahc_bytes = per_byte * vox_condensed + 2048 * VOX_K * 4
    vox_ahc = t_ahc * (VOX_K / args.k) ** 2
    verdict = "ok" if t_kmeans <= TARGET_S else "MISSED"

    print(
        "| N | D | K | k-means (s) | of which k-means++ start (s) | iterations | s / iteration | "
        "NMI | purity | "
        "AHC K -> M (s) | AHC peak (RSS above its input) | k-means peak RSS (ru_maxrss) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {args.n:,} | {args.dim} | {args.k:,} | {t_kmeans:.1f} (target {TARGET_S}: "
        f"{verdict}) | {km.init_seconds:.1f} | {km.iterations} | {per_iter:.2f} | "
        f"{q['nmi']:.4f} | {q['purity']:.4f} | "
        f"{args.k:,} -> {args.merge_to:,}: {t_ahc:.1f} | {ahc_memory} | {_gib(rss)} |"
    )
    print(
        f"\nNMI and purity: of the k-means clusters against the true speakers (inverse purity "
        f"{q['inverse_purity']:.4f}, ARI {q['ari']:.4f}). Threads: {threads()}.\n"
        f"k-means rate: {rate / 1e9:.1f} G multiply-adds/s (N x K x D per iteration).\n"
    )
    print(
        f"Projection to VoxCeleb2 ({VOX_N:,} x {VOX_DIM}, K = {VOX_K:,}, {VOX_ITERS} "
        f"iterations, AHC to {VOX_MERGE_TO:,}), same machine and threads:\n"
    )
    print("| step | projected time | memory |")
    print("|---|---:|---:|")
    data_bytes = VOX_N * VOX_DIM * 4
    print(
        f"| k-means++ start (2K x K x D x (2 + ln K), from {km.init_seconds:.1f} s) | "
        f"{vox_init / 60:.0f} min | a {2 * VOX_K:,} x {VOX_DIM} float64 subsample |"
    )
    print(
        f"| Lloyd (N x K x D x iters at {rate / 1e9:.1f} G/s) | {vox_kmeans / 3600:.1f} h "
        f"| embeddings {_gib(data_bytes)} (sslsv.bin.cluster normalises them in place) |"
    )
    print(
        f"| AHC of {VOX_K:,} centroids (O(n^2) from {t_ahc:.1f} s at {args.k:,}) | "
        f"{vox_ahc / 60:.0f} min | condensed matrix {_gib(vox_condensed)}; peak about "
        f"{_gib(vox_ahc_bytes)} ({per_byte:.2f} x, as measured, + a block) |"
    )


if __name__ == "__main__":
    main()
