"""Benchmark the second stage's clustering (run by hand; prints Markdown tables).

    .venv/bin/python bench/bench_clustering.py          # 200,000 x 256 into K = 6,000, both
                                                        # back ends; AHC of 50,000 x 256
    .venv/bin/python bench/bench_clustering.py --quick  # 20,000 x 256 into K = 600 (a minute)

Synthetic embeddings: K true speakers with unit-length centres in random directions, each
utterance its speaker's centre plus isotropic Gaussian noise of norm about 1.6 (so that two
utterances of a speaker have cosine about 0.28, of two speakers about 0 +- 1/sqrt(D)),
utterances spread over speakers at random; then L2-normalised. Each k-means back end
(``--backends``: sslsv.kmeans's torch on the CPU, scikit-learn) runs in its own child
process on the same data, in turn, ``--repeats`` times (the cores are shared with other
people's jobs: the best run of each back end is compared), into ``--k`` clusters
(k-means++ start on a 2K subsample, then at most ``--iters`` Lloyd iterations); its peak
resident memory above the loaded data is its VmHWM after a reset
(``/proc/self/clear_refs``). The torch run also measures what TF32 would do: the labels
that change when the products' operands are rounded to TF32's 10-bit mantissa (emulated on
the CPU), and the share of utterances whose two best centroids are closer than TF32's error
bound. The merging (sslsv.ahc, float32 nearest-neighbour chain) runs in a child process
too: the torch centroids to ``--merge-to``, and ``--ahc-k`` synthetic centroids of
``--ahc-merge-to`` speakers (VoxCeleb2's 50,000 -> 7,500) at ``--ahc-dim``. Then a
FLOP-based projection to VoxCeleb2 (1.09 M x 512, K = 50,000, 20 iterations, AHC to 7,500)
on one H100 (the assumptions are printed with it), and on these cores from the measured
rates.
Targets: torch k-means not slower than scikit-learn here; AHC of 50,000 centroids within
6 GiB; k-means + AHC of VoxCeleb2 on one H100 within 5 minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import describe as describe_machine  # bench/machine.py, beside this script

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sslsv.ahc import FILL_ROWS  # noqa: E402

#: VoxCeleb2 dev and the voxceleb recipe's pseudo_label: settings, for the projection.
VOX_N, VOX_DIM, VOX_K, VOX_ITERS, VOX_MERGE_TO = 1_092_009, 512, 50_000, 20, 7_500
#: One H100 (SXM): float32 without tensor cores (about 67 TFLOP/s peak; 50 taken as what a
#: large SGEMM sustains), TF32 tensor cores (dense), HBM3 bandwidth, and the costs of the
#: small steps that k-means++ and the AHC chain are made of.
H100_FP32, H100_TF32, H100_HBM = 50e12, 400e12, 3.35e12
LAUNCH_S, HOST_READ_S = 6e-6, 15e-6
#: Kernels per step of the AHC chain (counted in sslsv.ahc: a nearest-neighbour query, a
#: merge) and per k-means++ step (sslsv.kmeans.kmeans_plusplus).
NEAREST_KERNELS, MERGE_KERNELS, PLUSPLUS_KERNELS = 15, 30, 14
AHC_LIMIT_BYTES = 6 * 2**30
TARGET_S = 300
#: TF32 rounds each operand to 10 explicit mantissa bits (relative error 2^-11), so a
#: product of unit-norm vectors moves by at most about 2 x 2^-11 |x||c|: two scores closer
#: than twice that can swap.
TF32_GAP = 4 * 2.0**-11


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


def speaker_centroids(
    k: int, dim: int, speakers: int, seed: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """k-means-like centroids for the AHC: ``speakers`` unit directions, each centroid one
    of them plus noise of norm 0.8 (cosine about 0.6 between two centroids of a speaker,
    0 +- 1/sqrt(D) between speakers), every speaker with at least one centroid; and each
    centroid's speaker."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((speakers, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    owner = np.concatenate([np.arange(speakers), rng.integers(0, speakers, k - speakers)])
    c = rng.standard_normal((k, dim), dtype=np.float32) * np.float32(0.8 / np.sqrt(dim))
    c += centres[owner]
    return c / np.linalg.norm(c, axis=1, keepdims=True), owner


def threads() -> str:
    import torch
    from threadpoolctl import threadpool_info

    pools = {f"{p['user_api']} ({p['internal_api']})": p["num_threads"] for p in threadpool_info()}
    pools["torch intra-op"] = torch.get_num_threads()
    return ", ".join(f"{name} {count}" for name, count in sorted(pools.items()))


def machine() -> str:
    pools = threads()  # imports torch first: its thread count is part of the description
    return (
        f"{describe_machine(('numpy', 'torch', 'scikit-learn', 'scipy')).line()}; threads: {pools}"
    )


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.2f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MiB"


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> int:
    """Reset VmHWM to the current resident size (Linux >= 4.0); returns that size."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_bytes("VmRSS")


def _tf32(t):
    """``t`` (a float32 tensor) rounded to TF32: 10 explicit mantissa bits, to nearest even
    (on the bits: the carry of the rounding runs into the exponent as it should)."""
    import torch

    bits = t.contiguous().view(torch.int32)
    bits = (bits + 0xFFF + ((bits >> 13) & 1)) & ~0x1FFF
    return bits.view(torch.float32)


def tf32_effect(x: np.ndarray, centroids: np.ndarray, rows: int = 512) -> dict:
    """One assignment from ``centroids`` in float32 and with TF32-rounded operands (the
    norms' term in float32, as a TF32 GEMM's epilogue adds it): the labels that differ, and
    the share of rows whose two best scores are within :data:`TF32_GAP`."""
    import torch

    data, c = torch.from_numpy(x), torch.from_numpy(centroids)
    half = c.square().sum(1).mul_(-0.5)
    c_tf32 = _tf32(c)
    changed = close = 0
    for begin in range(0, len(data), rows):
        chunk = data[begin : begin + rows]
        top, best = torch.addmm(half, chunk, c.T).topk(2, dim=1)
        best = best[:, 0]
        rounded = torch.addmm(half, _tf32(chunk), c_tf32.T).argmax(1)
        changed += int((best != rounded).sum())
        close += int((top[:, 0] - top[:, 1] < TF32_GAP).sum())
    return {"tf32_changed": changed, "tf32_close": close}


def kmeans_child(args: argparse.Namespace, backend: str, centroids_out: str) -> None:
    """One back end's k-means in this process: time, quality, peak memory above the data."""
    import torch  # noqa: F401  (imported before the peak is reset: not counted)

    from sslsv.cluster import kmeans, normalise, quality

    x, speaker = speaker_embeddings(args.n, args.dim, args.k)
    x = normalise(x, copy=False)
    before = _reset_peak()
    t, cpu = time.perf_counter(), time.process_time()
    km = kmeans(x, args.k, args.iters, seed=0, backend=backend, device="cpu")
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    peak = _status_bytes("VmHWM")
    out = {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "init_seconds": km.init_seconds,
        "iterations": km.iterations,
        "extra_bytes": peak - before,
        "process_peak_bytes": peak,
        "data_bytes": x.nbytes,
        **{k: v for k, v in quality(speaker, km.labels).items() if k in ("nmi", "purity", "ari")},
    }
    if backend == "torch":
        out.update(tf32_effect(x, km.centroids))
    np.save(centroids_out, km.centroids)
    print(json.dumps(out))


def ahc_child(path: str, merge_to: int, truth: str | None) -> None:
    """The merging alone, in its own process: its peak resident memory above the loaded
    centroids (VmHWM after a reset: torch's and numpy's C memory, which tracemalloc does not
    see), and the chain's steps (their count sets the time on a GPU)."""
    import torch  # noqa: F401  (imported before the peak is reset: not counted)

    from sslsv import ahc
    from sslsv.cluster import merge_clusters, quality

    calls = {"nearest": 0}
    nearest = ahc._Chain.nearest

    def counted(self, x):
        calls["nearest"] += 1
        return nearest(self, x)

    ahc._Chain.nearest = counted
    centroids = np.load(path)
    merge_clusters(centroids[:50], merge_to=5)  # torch's lazy set-up, not counted
    calls["nearest"] = 0
    before = _reset_peak()
    t = time.perf_counter()
    merged = merge_clusters(centroids, merge_to=merge_to, linkage="average")
    seconds = time.perf_counter() - t
    out = {
        "seconds": seconds,
        "extra_bytes": _status_bytes("VmHWM") - before,
        "nearest_calls": calls["nearest"],
        "clusters": len(set(merged.tolist())),
    }
    if truth:
        out["nmi"] = quality(np.load(truth), merged)["nmi"]
    print(json.dumps(out))


def run_child(*argv: str) -> dict:
    command = [sys.executable, __file__, *argv]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def plusplus_seconds_h100(n: int, k: int, dim: int) -> float:
    """k-means++ on a 2K subsample on an H100: K steps, each a (2 + ln K) x D by D x 2K
    product that reads the subsample (bandwidth-bound), plus the kernel launches."""
    m, trials = min(n, 2 * k), 2 + int(math.log(k))
    flops = 2.0 * (k - 1) * trials * m * dim
    reads = (k - 1) * m * dim * 4.0
    return max(flops / H100_FP32, reads / H100_HBM) + (k - 1) * PLUSPLUS_KERNELS * LAUNCH_S


def lloyd_seconds_h100(n: int, k: int, dim: int, iters: int, rate: float) -> float:
    """Lloyd on an H100: the products at ``rate``, plus the scores written and read back
    (4 bytes each way) for the argmax; the sums and the convergence test are small."""
    per_iteration = 2.0 * n * k * dim / rate + 2 * 4.0 * n * k / H100_HBM
    return iters * per_iteration


def ahc_seconds_h100(k: int, dim: int, nearest_calls: int) -> float:
    """AHC on an H100: the distance fill (K^2 D flops), then the chain's steps, each a few
    small kernels and one host read (the gathers, 50,000 floats, take microseconds)."""
    fill = 1.0 * k * k * dim / H100_FP32
    steps = nearest_calls * (NEAREST_KERNELS * LAUNCH_S + 2 * HOST_READ_S)
    return fill + steps + (k - 1) * MERGE_KERNELS * LAUNCH_S


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=200_000, help="utterances")
    p.add_argument("--dim", type=int, default=256, help="embedding dimension")
    p.add_argument("--k", type=int, default=6_000, help="true speakers = k-means clusters")
    p.add_argument("--iters", type=int, default=30, help="k-means iterations at most")
    p.add_argument("--merge-to", type=int, default=1_000, help="AHC of the centroids to this")
    p.add_argument("--backends", default="torch,sklearn", help="k-means back ends to run")
    p.add_argument("--repeats", type=int, default=3, help="runs of each back end, in turn")
    p.add_argument("--ahc-k", type=int, default=VOX_K, help="synthetic centroids for the AHC")
    p.add_argument("--ahc-dim", type=int, default=256, help="their dimension")
    p.add_argument("--ahc-merge-to", type=int, default=VOX_MERGE_TO, help="their speakers")
    p.add_argument("--quick", action="store_true", help="n 20,000, k 600, AHC 5,000 to 750")
    p.add_argument("--kmeans-child", help=argparse.SUPPRESS)
    p.add_argument("--ahc-child", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--truth", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.n, args.k, args.merge_to, args.ahc_k, args.ahc_merge_to = (
            20_000,
            600,
            100,
            5_000,
            750,
        )
    if args.kmeans_child:
        kmeans_child(args, args.kmeans_child, args.out)
        return
    if args.ahc_child:
        ahc_child(args.ahc_child, args.merge_to, args.truth)
        return

    print(f"Machine: {machine()}\n")
    sizes = ["--n", str(args.n), "--dim", str(args.dim), "--k", str(args.k)]
    sizes += ["--iters", str(args.iters)]
    backends = args.backends.split(",")
    runs: list[tuple[str, dict]] = []  # the back ends in turn, --repeats times: the same load
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for backend in backends:
                out = f"{tmp}/{backend}.npy"
                load = os.getloadavg()[0]
                r = run_child(*sizes, "--kmeans-child", backend, "--out", out)
                runs.append((backend, {**r, "load": load}))
                print(
                    f"({backend} k-means done, load average {os.getloadavg()[0]:.2f})", flush=True
                )
        first = backends[0]
        small = run_child("--ahc-child", f"{tmp}/{first}.npy", "--merge-to", str(args.merge_to))
        print(f"(AHC of {args.k:,} done, load average {os.getloadavg()[0]:.2f})", flush=True)
        centroids, owner = speaker_centroids(args.ahc_k, args.ahc_dim, args.ahc_merge_to)
        np.save(f"{tmp}/large.npy", centroids)
        np.save(f"{tmp}/owner.npy", owner)
        del centroids
        large = run_child(
            "--ahc-child",
            f"{tmp}/large.npy",
            "--merge-to",
            str(args.ahc_merge_to),
            "--truth",
            f"{tmp}/owner.npy",
        )
        print(f"(AHC of {args.ahc_k:,} done, load average {os.getloadavg()[0]:.2f})\n")

    print(
        "| k-means back end (CPU) | load average at start | k-means (s) | CPU time (s) | of "
        "which k-means++ start (s) | iterations | s / iteration | NMI | purity | peak RSS "
        "above the data | process peak RSS |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for backend, r in runs:
        per_iter = (r["seconds"] - r["init_seconds"]) / r["iterations"]
        r["rate"] = args.n * args.k * args.dim / per_iter  # multiply-adds per second
        print(
            f"| {backend} | {r['load']:.2f} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | "
            f"{r['init_seconds']:.1f} | {r['iterations']} | {per_iter:.2f} | {r['nmi']:.4f} | "
            f"{r['purity']:.4f} | {_gib(r['extra_bytes'])} | {_gib(r['process_peak_bytes'])} |"
        )
    runs_best = {
        b: min((r for n, r in runs if n == b), key=lambda r: r["seconds"]) for b in backends
    }
    print(
        f"\n{args.n:,} x {args.dim} of {args.k:,} speakers into K = {args.k:,}, at most "
        f"{args.iters} iterations; the data (float32) are {_gib(args.n * args.dim * 4)}. "
        "Best rates (N x K x D multiply-adds per second of Lloyd): "
        + ", ".join(f"{b} {r['rate'] / 1e9:.1f} G/s" for b, r in runs_best.items())
        + "."
    )
    if "torch" in runs_best:
        r = runs_best["torch"]
        print(
            f"TF32 (emulated: operands rounded to 10-bit mantissas), one assignment from the "
            f"final torch centroids: {r['tf32_changed']:,} of {args.n:,} labels change "
            f"({100 * r['tf32_changed'] / args.n:.2f}%); {100 * r['tf32_close'] / args.n:.1f}% "
            f"of the utterances have their two best centroids within TF32's error bound "
            f"({TF32_GAP:.1e})."
        )
    if "torch" in runs_best and "sklearn" in runs_best:
        ratio = runs_best["sklearn"]["seconds"] / runs_best["torch"]["seconds"]
        verdict = "met" if ratio >= 1 else "MISSED"
        print(
            f"torch not slower than scikit-learn (best of {args.repeats} each): {verdict} "
            f"(scikit-learn / torch = {ratio:.2f})."
        )

    def condensed(k: int) -> float:
        return 4.0 * k * (k - 1) / 2

    print(
        "\n| AHC (average linkage, float32 chain, CPU) | time (s) | chain queries | peak RSS "
        "above its input | float32 condensed matrix | scipy's float64 linkage (2 x 8 bytes "
        "a pair) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, k, m, r in (
        (f"{args.k:,} k-means centroids x {args.dim}", args.k, args.merge_to, small),
        (
            f"{args.ahc_k:,} synthetic centroids x {args.ahc_dim}",
            args.ahc_k,
            args.ahc_merge_to,
            large,
        ),
    ):
        nmi = f", NMI vs their speakers {r['nmi']:.4f}" if "nmi" in r else ""
        print(
            f"| {name} -> {m:,}{nmi} | {r['seconds']:.1f} | {r['nearest_calls']:,} | "
            f"{_gib(r['extra_bytes'])} | {_gib(condensed(k))} | {_gib(4 * condensed(k))} |"
        )
    limit = "met" if large["extra_bytes"] <= AHC_LIMIT_BYTES else "MISSED"
    print(f"\nAHC of {args.ahc_k:,} within {_gib(AHC_LIMIT_BYTES)}: {limit}.")

    # ---- projection to VoxCeleb2
    vox_nearest = large["nearest_calls"] * VOX_K / args.ahc_k
    lloyd_fp32 = lloyd_seconds_h100(VOX_N, VOX_K, VOX_DIM, VOX_ITERS, H100_FP32)
    lloyd_tf32 = lloyd_seconds_h100(VOX_N, VOX_K, VOX_DIM, VOX_ITERS, H100_TF32)
    plusplus = plusplus_seconds_h100(VOX_N, VOX_K, VOX_DIM)
    ahc_gpu = ahc_seconds_h100(VOX_K, VOX_DIM, int(vox_nearest))
    upload = VOX_N * VOX_DIM * 4 / 10e9
    total = lloyd_fp32 + plusplus + ahc_gpu + upload
    verdict = "met" if total <= TARGET_S else "MISSED"
    print(
        f"\nProjection to VoxCeleb2 ({VOX_N:,} x {VOX_DIM}, K = {VOX_K:,}, {VOX_ITERS} "
        f"iterations, AHC to {VOX_MERGE_TO:,}) on one H100, from FLOPs: float32 products at "
        f"{H100_FP32 / 1e12:.0f} TFLOP/s (no TF32), HBM {H100_HBM / 1e12:.2f} TB/s, "
        f"{LAUNCH_S * 1e6:.0f} us a kernel launch, {HOST_READ_S * 1e6:.0f} us a host read; "
        f"the AHC chain's queries scaled from the {args.ahc_k:,}-centroid run "
        f"({vox_nearest:,.0f}):\n"
    )
    print("| step | projected time (H100) | GPU memory |")
    print("|---|---:|---:|")
    data_bytes = VOX_N * VOX_DIM * 4
    print(f"| upload of the embeddings (10 GB/s) | {upload:.1f} s | {_gib(data_bytes)} |")
    print(
        f"| k-means++ start on {2 * VOX_K:,} (K steps, bandwidth + launches) | {plusplus:.0f} s "
        f"| {_gib(2 * 2 * VOX_K * VOX_DIM * 4)} (subsample and its transpose) |"
    )
    print(
        f"| Lloyd, {VOX_ITERS} x 2 N K D FLOPs + scores through HBM | {lloyd_fp32:.0f} s (TF32 "
        f"would be {lloyd_tf32:.0f} s) | scores {_gib(1 << 30)} a chunk, sums "
        f"{_gib(VOX_K * VOX_DIM * 8)} |"
    )
    print(f"| AHC of {VOX_K:,} (fill + chain steps) | {ahc_gpu:.0f} s | {_gib(condensed(VOX_K))} |")
    print(f"| total | {total:.0f} s (target {TARGET_S} s: {verdict}) | |")
    print(f"\nOn these cores, from the measured rates ({args.dim} -> {VOX_DIM} dims):\n")
    print("| back end | Lloyd (h) | k-means++ start (min) |")
    print("|---|---:|---:|")

    def init_cost(n: int, k: int, dim: int) -> float:  # m x K x D x (2 + ln K), m = 2K
        return min(n, 2 * k) * k * dim * (2 + np.log(k))

    scale = init_cost(VOX_N, VOX_K, VOX_DIM) / init_cost(args.n, args.k, args.dim)
    for backend, r in runs_best.items():
        lloyd_h = VOX_N * VOX_K * VOX_DIM * VOX_ITERS / r["rate"] / 3600
        print(f"| {backend} | {lloyd_h:.1f} | {r['init_seconds'] * scale / 60:.0f} |")
    ahc_cpu = large["seconds"] * (VOX_K / args.ahc_k) ** 2

    def fill(k: int) -> float:  # FILL_ROWS x K float32 similarities
        return 4.0 * FILL_ROWS * k

    vox_ahc_bytes = (large["extra_bytes"] - fill(args.ahc_k)) * condensed(VOX_K) / condensed(
        args.ahc_k
    ) + fill(VOX_K)
    print(
        f"\nAHC of {VOX_K:,} x {VOX_DIM} on these cores: about {ahc_cpu / 60:.0f} min "
        f"(O(K^2) from {large['seconds']:.0f} s at {args.ahc_k:,} x {args.ahc_dim}; the chain "
        f"does not depend on D, the fill little), peak about {_gib(vox_ahc_bytes)} (the "
        f"measured peak less a fill block, scaled as K^2, plus a fill block at {VOX_K:,})."
    )


if __name__ == "__main__":
    main()
