"""Benchmark stage 0 on a VoxCeleb2-sized listing (run by hand; prints a Markdown table).

    .venv/bin/python bench/bench_stage0.py                      # 1,000,000 entries, all rows
    .venv/bin/python bench/bench_stage0.py --entries 100000 --rows no_durations

Synthetic VoxCeleb2-like entries (``idXXXXX/VIDEO/NNNNN``, 5,994 speakers, paths that do not
exist) go through the importer with audio checks off, as ``prepare_data ... --no-audio-check``
does: sorting, id checks, ``wav.scp``, ``utt2spk``, ``spk2utt``, ``utt2session``, ``utt2dur``
(from a duration table read from disk, or left out), validation of the written data dir, and
optionally the conversion of an official-format trial list. Each row runs in a fresh
subprocess, so its peak resident memory (``ru_maxrss``, synthetic input included) is its own.
Target (issue 4): 1,000,000 entries in under 60 s on 2 CPU cores.
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

from sslsv.corpora.importer import audio_path, import_recordings
from sslsv.corpora.voxceleb import read_voxceleb_trial_list, voxceleb_utt_id
from sslsv.datadir.io import read_durations, sanitize_id

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SPEAKERS = 5994  # VoxCeleb2 dev
ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))


def synthetic_listing(entries: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """(speaker, video, stem) triples shaped like VoxCeleb2 dev: ~6k speakers, several
    utterances per YouTube video, 11-character video ids."""
    rng = np.random.default_rng(seed)
    videos = max(1, entries // 8)
    video_ids = ["".join(row) for row in ALPHABET[rng.integers(0, 64, (videos, 11))]]
    video_speaker = rng.integers(0, SPEAKERS, videos)
    per_video = np.full(videos, entries // videos)
    per_video[: entries - per_video.sum()] += 1
    out = []
    for v, (video, count) in enumerate(zip(video_ids, per_video)):
        spk = f"id{video_speaker[v]:05d}"
        out += [(spk, video, f"{n:05d}") for n in range(1, count + 1)]
    return out


def run_row(name: str, entries: int, trials: int, work: Path) -> dict:
    from sslsv.corpora.importer import ImportOptions, Recording

    listing = synthetic_listing(entries)
    durations_file = work / "utt2dur.in"
    if name == "with_durations":
        rng = np.random.default_rng(1)
        seconds = rng.uniform(4.0, 20.0, len(listing)).round(2)
        with open(durations_file, "w", encoding="utf-8") as f:
            for (spk, video, stem), s in zip(listing, seconds):
                f.write(f"{voxceleb_utt_id(spk, video, stem)} {s}\n")
    trial_file = work / "list_test_all2.txt"
    if trials:
        rng = np.random.default_rng(2)
        pairs = rng.integers(0, len(listing), (trials, 2))
        with open(trial_file, "w", encoding="utf-8") as f:
            for a, b in pairs:
                label = int(listing[a][0] == listing[b][0])
                f.write(f"{label} {'/'.join(listing[a])}.wav {'/'.join(listing[b])}.wav\n")

    timings = {}
    start = time.perf_counter()
    cache = "/nonexistent/vox2_wav"
    items = [
        Recording(
            voxceleb_utt_id(spk, video, stem),
            sanitize_id(spk),
            audio_path(f"{cache}/{spk}/{video}/{stem}.wav"),
            sanitize_id(video),
        )
        for spk, video, stem in listing
    ]
    timings["list"] = time.perf_counter() - start

    start = time.perf_counter()
    durations = read_durations(durations_file) if name == "with_durations" else None
    lists = {}
    if trials:
        lists["trials_E"] = (trial_file, read_voxceleb_trial_list(trial_file))
    options = ImportOptions(check_audio=False, durations=durations, nj=1)
    report = import_recordings(items, work / "vox2_dev", options, trial_lists=lists)
    timings["import"] = time.perf_counter() - start
    written = sorted(p.name for p in (work / "vox2_dev").iterdir())
    return {
        "row": name,
        "entries": entries,
        "trials": trials,
        "utterances": report.utterances,
        "speakers": report.speakers,
        "files": written,
        "list_s": timings["list"],
        "import_s": timings["import"],
        "total_s": timings["list"] + timings["import"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def machine() -> str:
    return describe_machine(("numpy",)).line()


ROWS = {
    "with_durations": "utt2dur from a duration table",
    "no_durations": "no utt2dur, logged",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument(
        "--trials",
        type=int,
        default=580_000,
        help="lines of a synthetic official list converted in the with_durations row (0: none)",
    )
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--row", help=argparse.SUPPRESS)  # child process: run one row
    args = parser.parse_args()

    if args.row:
        with tempfile.TemporaryDirectory(prefix="bench_stage0.") as work:
            trials = args.trials if args.row == "with_durations" else 0
            print(json.dumps(run_row(args.row, args.entries, trials, Path(work))))
        return 0

    results = []
    for row in args.rows:
        done = subprocess.run(
            [sys.executable, __file__, "--row", row, "--entries", str(args.entries),
             "--trials", str(args.trials)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            return done.returncode
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))

    print(f"machine: {machine()}\n")
    print("| row | entries | trials converted | listing (s) | import (s) | total (s) | peak RSS |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r['row']} ({ROWS[r['row']]}) | {r['entries']:,} | {r['trials']:,} | "
            f"{r['list_s']:.1f} | {r['import_s']:.1f} | {r['total_s']:.1f} | "
            f"{r['peak_rss_mb']:.0f} MiB |"
        )
    print()
    for r in results:
        print(f"{r['row']}: {r['utterances']:,} utterances of {r['speakers']:,} speakers; "
              f"files: {' '.join(r['files'])}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
