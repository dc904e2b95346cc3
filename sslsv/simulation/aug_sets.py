"""Offline augmentation sets for users without MUSAN / RIRS_NOISES.

Builds Kaldi data dirs under one folder:

- ``rirs``: simulated room impulse responses (pyroomacoustics: image sources for the early
  reflections plus ray tracing for the late tail, shoebox rooms 3x3x2.5 m .. 20x15x5 m,
  RT60 0.2 .. 0.9 s). Without pyroomacoustics, an exponentially decaying noise model
  (:func:`exp_decay_rir`) stands in.
- ``noise``: chunks of user noise files plus generated coloured noise (white, pink, brown,
  with random spectral tilts), so the set exists even when nothing is given.
- ``speech``: babble sources, chunks of utterances of a given data dir (optional).
- ``music``: chunks of user music files (optional; none is available offline).

Each set is written to a hidden temporary folder and renamed into place once complete, with
a stamp beside it (``SET.stamp``, :mod:`sslsv.reuse`) of its settings and of the identity of
the files it was made from: a rerun with the same inputs reuses it, one with other inputs
rebuilds it whole and says what changed (never a mix of two builds).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile as sf

from sslsv.audio import read_audio
from sslsv.corpora.rate import DEFAULT_SAMPLE_RATE
from sslsv.datadir.io import read_audio_sources, sanitize_id, write_spk2utt
from sslsv.errors import DataError
from sslsv.fileio import atomic_dir, kaldi_sort_key, write_table
from sslsv.reuse import changes, files_identity, remove_stamp, stamp_path, text_digest, write_stamp
from sslsv.simulation.dsp import colored_noise, peak_normalise
from sslsv.simulation.rooms import measure_rt60, one_rir, rir_method_available

log = logging.getLogger(__name__)

# Bump when the output of a builder changes, so old sets are not taken for new ones.
BUILD_VERSION = 1


def _format_value(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(_format_value(v) for v in value)
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _write_set(
    set_dir: Path,
    settings: dict,
    items: Callable[[], Iterable[tuple[str, np.ndarray]]],
    sample_rate: int,
    subtype: str,
    extra_tables: Callable[[], dict[str, dict[str, str]]] | None = None,
    sources: Iterable[str] = (),
) -> bool:
    """Write ``items()`` (id, audio) as a data dir, atomically, stamped with what it was made
    from (``settings``, the identity of its ``sources`` files): a rerun with the same inputs
    reuses it; other inputs rebuild it, and the log says what changed. False when reused."""
    inputs = {
        "format": f"sslsv-augset-{BUILD_VERSION}",
        "settings": {"sample_rate": sample_rate, **settings},
        "sources": files_identity(str(p) for p in sources),
    }
    why = changes(set_dir, inputs)
    if not why:
        log.info("%s: already built from these inputs, reused", set_dir)
        return False
    if set_dir.exists():
        if not stamp_path(set_dir).exists():
            raise DataError(
                f"{set_dir} exists but was not made by make_aug_sets (no "
                f"{stamp_path(set_dir).name} beside it); remove it or choose another --out"
            )
        log.info("%s: rebuilt: %s", set_dir, "; ".join(why))
    remove_stamp(set_dir)
    with atomic_dir(set_dir) as tmp:
        wav_scp: dict[str, str] = {}
        durations: dict[str, str] = {}
        for utt, audio in items():
            if utt in wav_scp:
                raise DataError(f"{set_dir}: duplicate id {utt!r}")
            sf.write(tmp / f"{utt}.wav", audio, sample_rate, subtype=subtype)
            # wav.scp names the final location, which exists once the folder is renamed.
            wav_scp[utt] = str((set_dir / f"{utt}.wav").resolve())
            durations[utt] = f"{len(audio) / sample_rate:.4f}"
        if not wav_scp:
            raise DataError(f"{set_dir}: nothing to write")
        write_table(tmp / "wav.scp", wav_scp)
        write_table(tmp / "utt2spk", {utt: utt for utt in wav_scp})
        write_table(tmp / "utt2dur", durations)
        write_spk2utt(tmp)
        for name, table in (extra_tables() if extra_tables else {}).items():
            write_table(tmp / name, table)
    write_stamp(set_dir, inputs)
    return True


def _chunks(audio: np.ndarray, chunk: int) -> Iterator[np.ndarray]:
    """Consecutive chunks of ``chunk`` samples; a tail shorter than half a chunk is dropped
    unless it is the whole file."""
    if len(audio) <= chunk:
        yield audio
        return
    for start in range(0, len(audio), chunk):
        piece = audio[start : start + chunk]
        if len(piece) >= chunk // 2:
            yield piece


def _file_chunks(
    files: Sequence[Path], sample_rate: int, chunk_seconds: float, prefix: str
) -> Iterator[tuple[str, np.ndarray]]:
    used: set[str] = set()
    for path in files:
        stem = sanitize_id(path.stem)
        name, n = stem, 1
        while name in used:  # same file name in two folders
            n += 1
            name = f"{stem}_{n}"
        used.add(name)
        audio = read_audio(path, sample_rate=sample_rate)
        for i, piece in enumerate(_chunks(audio, round(chunk_seconds * sample_rate))):
            if np.sqrt(np.mean(piece.astype(np.float64) ** 2)) < 1e-5:
                log.info("%s: skipping silent chunk %d of %s", prefix, i, path)
                continue
            yield f"{prefix}-{name}-{i:03d}", peak_normalise(piece)


# -- the four sets ----------------------------------------------------------------------------


def build_rir_set(
    set_dir: str | os.PathLike,
    num_rirs: int = 200,
    seed: int = 0,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    method: str = "auto",
    max_seconds: float = 1.0,
    jobs: int = 1,
) -> bool:
    """Simulated RIRs as a data dir, with ``room_info`` (room, target and measured RT60 per
    RIR). False when already built.

    24-bit PCM rather than float WAV: libsndfile stamps float WAV headers with the time,
    which would make reruns differ byte-wise."""
    method = rir_method_available(method)
    if num_rirs < 1:
        raise DataError(f"num_rirs must be >= 1, got {num_rirs}")
    info: dict[str, str] = {}

    def items() -> Iterator[tuple[str, np.ndarray]]:
        args = [(i, seed, sample_rate, method, max_seconds) for i in range(num_rirs)]
        if jobs > 1:
            with ProcessPoolExecutor(jobs) as pool:
                results = list(pool.map(one_rir, *zip(*args, strict=True), chunksize=4))
        else:
            results = [one_rir(*a) for a in args]
        for i, (room, rir) in enumerate(results):
            utt = f"rir-{i:04d}"
            try:
                measured = f"{measure_rt60(rir, sample_rate):.3f}"
            except ValueError:
                measured = "nan"
            fields = {**asdict(room), "measured_rt60": measured, "method": method}
            info[utt] = " ".join(f"{k}={_format_value(v)}" for k, v in fields.items())
            yield utt, (0.99 * rir / np.max(np.abs(rir))).astype(np.float32)

    settings = {
        "set": "rirs",
        "num_rirs": num_rirs,
        "seed": seed,
        "method": method,
        "max_seconds": max_seconds,
    }
    return _write_set(
        Path(set_dir), settings, items, sample_rate, "PCM_24", lambda: {"room_info": info}
    )


def build_noise_set(
    set_dir: str | os.PathLike,
    noise_files: Sequence[str | os.PathLike] = (),
    seed: int = 0,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    num_colored: int = 30,
    chunk_seconds: float = 5.0,
) -> bool:
    """User noise files cut into chunks, plus ``num_colored`` coloured noises (white, pink,
    brown in turn, each exponent jittered by up to +-0.5 for a random spectral tilt)."""
    files = [Path(p).resolve() for p in noise_files]
    if not files and num_colored < 1:
        raise DataError("the noise set needs noise files or num_colored >= 1")

    def items() -> Iterator[tuple[str, np.ndarray]]:
        yield from _file_chunks(files, sample_rate, chunk_seconds, "noise")
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
        kinds = (("white", 0.0), ("pink", 1.0), ("brown", 2.0))
        for i in range(num_colored):
            kind, exponent = kinds[i % 3]
            exponent += rng.uniform(-0.5, 0.5)
            noise = colored_noise(round(chunk_seconds * sample_rate), exponent, rng)
            # float32 before scaling: the values the set has always had.
            yield f"colored-{i:03d}-{kind}", peak_normalise(noise.astype(np.float32))

    settings = {
        "set": "noise",
        "files": [str(p) for p in files],
        "seed": seed,
        "num_colored": num_colored,
        "chunk_seconds": chunk_seconds,
    }
    return _write_set(
        Path(set_dir), settings, items, sample_rate, "PCM_16", sources=map(str, files)
    )


def build_music_set(
    set_dir: str | os.PathLike,
    music_files: Sequence[str | os.PathLike],
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    chunk_seconds: float = 5.0,
) -> bool:
    """User music files cut into chunks."""
    files = [Path(p).resolve() for p in music_files]
    if not files:
        raise DataError("the music set needs music files")
    settings = {"set": "music", "files": [str(p) for p in files], "chunk_seconds": chunk_seconds}
    return _write_set(
        Path(set_dir),
        settings,
        lambda: _file_chunks(files, sample_rate, chunk_seconds, "music"),
        sample_rate,
        "PCM_16",
        sources=map(str, files),
    )


def build_speech_set(
    set_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    seed: int = 0,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    num_chunks: int = 200,
    chunk_seconds: float = 5.0,
) -> bool:
    """Babble sources: one chunk (random offset) from each of ``num_chunks`` utterances of
    ``data_dir`` drawn at random (all of them when there are fewer)."""
    data_dir = Path(data_dir).resolve()
    sources = read_audio_sources(data_dir)
    utts = sorted(sources, key=kaldi_sort_key)

    def items() -> Iterator[tuple[str, np.ndarray]]:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
        chosen = sorted(rng.permutation(len(utts))[:num_chunks])
        chunk = round(chunk_seconds * sample_rate)
        for n, i in enumerate(chosen):
            utt = utts[i]
            audio = read_audio(sources[utt], sample_rate=sample_rate, utt=utt)
            start = int(rng.integers(0, max(1, len(audio) - chunk + 1)))
            piece = audio[start : start + chunk]
            if piece.size == 0:
                raise DataError(f"{data_dir}: utterance {utt!r} ({sources[utt].path}) is empty")
            yield f"babble-{n:04d}-{sanitize_id(utt)}", peak_normalise(piece)

    settings = {
        "set": "speech",
        "data_dir": str(data_dir),
        "utterances": text_digest(data_dir / "wav.scp", data_dir / "segments"),
        "seed": seed,
        "num_chunks": num_chunks,
        "chunk_seconds": chunk_seconds,
    }
    audio_files = (sources[u].path for u in utts)
    return _write_set(Path(set_dir), settings, items, sample_rate, "PCM_16", sources=audio_files)


def build_aug_sets(
    out_dir: str | os.PathLike,
    seed: int = 0,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    num_rirs: int = 200,
    rir_method: str = "auto",
    noise_files: Sequence[str | os.PathLike] = (),
    num_colored: int = 30,
    babble_from: str | os.PathLike | None = None,
    num_babble: int = 200,
    music_files: Sequence[str | os.PathLike] = (),
    chunk_seconds: float = 5.0,
    jobs: int = 1,
) -> dict[str, Path]:
    """Build (or reuse) every set that has sources; returns ``{name: data dir}``."""
    out = Path(out_dir)
    sets = {"rirs": out / "rirs", "noise": out / "noise"}
    build_rir_set(sets["rirs"], num_rirs, seed, sample_rate, rir_method, jobs=jobs)
    build_noise_set(sets["noise"], noise_files, seed, sample_rate, num_colored, chunk_seconds)
    if babble_from is not None:
        sets["speech"] = out / "speech"
        build_speech_set(sets["speech"], babble_from, seed, sample_rate, num_babble, chunk_seconds)
    if music_files:
        sets["music"] = out / "music"
        build_music_set(sets["music"], music_files, sample_rate, chunk_seconds)

    def count(name: str) -> int:
        with open(sets[name] / "wav.scp", encoding="utf-8") as f:
            return sum(1 for _ in f)

    described = ", ".join(f"{name} ({count(name)} clips)" for name in sets)
    missing = [
        f"{name} (no {flag})"
        for name, flag in (("speech", "--babble-from"), ("music", "--music-dir/--music-files"))
        if name not in sets
    ]
    log.info(
        "augmentation sets in %s: %s%s",
        out,
        described,
        f"; not built: {', '.join(missing)}" if missing else "",
    )
    return sets
