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
a ``.done`` marker holding its settings: a rerun with the same settings skips it, a rerun
with other settings is refused rather than silently mixing two builds.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from sslsv.data.datadir import read_wav_scp, write_spk2utt
from sslsv.fileio import DataError, atomic_write, kaldi_sort_key, write_table

log = logging.getLogger(__name__)

SPEED_OF_SOUND = 343.0
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
DONE = ".done"

# Bump when the output of a builder changes, so old sets are not taken for new ones.
BUILD_VERSION = 1


# -- measurements and signals ---------------------------------------------------------------


def measure_rt60(
    rir: np.ndarray, sample_rate: int, decay_db: tuple[float, float] = (-5.0, -25.0)
) -> float:
    """RT60 by Schroeder backward integration: line fit of the decay curve between
    ``decay_db`` (default T20, -5..-25 dB), extrapolated to 60 dB."""
    energy = np.cumsum(np.asarray(rir, dtype=np.float64)[::-1] ** 2)[::-1]
    if energy[0] <= 0:
        raise ValueError("RIR is all zeros")
    curve_db = 10 * np.log10(np.maximum(energy / energy[0], 1e-300))
    upper, lower = decay_db
    in_range = np.nonzero((curve_db <= upper) & (curve_db >= lower))[0]
    if len(in_range) < 2:
        raise ValueError(f"RIR does not decay from {upper} to {lower} dB")
    slope_db_per_s = np.polyfit(in_range / sample_rate, curve_db[in_range], 1)[0]
    return float(-60.0 / slope_db_per_s)


def colored_noise(num_samples: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    white = rng.standard_normal(num_samples)
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(num_samples)
    shape = np.zeros_like(freqs)
    shape[1:] = freqs[1:] ** (-exponent / 2)  # amplitude, hence half the power exponent
    noise = np.fft.irfft(spectrum * shape, num_samples)
    noise -= noise.mean()
    return (noise / np.sqrt(np.mean(noise**2))).astype(np.float32)


# -- room impulse responses -------------------------------------------------------------------


@dataclass(frozen=True)
class RoomSpec:
    """A shoebox room, its target RT60, source and microphone positions (metres)."""

    dims: tuple[float, float, float]
    rt60: float
    source: tuple[float, float, float]
    mic: tuple[float, float, float]
    scattering: float = 0.15


def sabine_min_rt60(dims: Sequence[float]) -> float:
    """Shortest RT60 Sabine's formula allows in a room (every surface fully absorbing)."""
    length, width, height = dims
    volume = length * width * height
    surface = 2 * (length * width + length * height + width * height)
    return 24 * math.log(10) * volume / (SPEED_OF_SOUND * surface)


def sample_room(
    rng: np.random.Generator,
    min_dims: tuple[float, float, float] = (3.0, 3.0, 2.5),
    max_dims: tuple[float, float, float] = (20.0, 15.0, 5.0),
    rt60_range: tuple[float, float] = (0.2, 0.9),
) -> RoomSpec:
    """A random room; RT60 drawn from the part of ``rt60_range`` the room can reach.

    Source and microphone are >= 0.5 m from the walls, 1-2 m high, >= 1 m apart.
    """
    dims = tuple(float(rng.uniform(lo, hi)) for lo, hi in zip(min_dims, max_dims, strict=True))
    # Big rooms cannot be very dry: keep a margin above the fully absorbing limit.
    rt60_lo = min(max(rt60_range[0], 1.1 * sabine_min_rt60(dims)), rt60_range[1])
    rt60 = float(rng.uniform(rt60_lo, rt60_range[1]))

    def position() -> tuple[float, float, float]:
        top = min(2.0, dims[2] - 0.5)
        return (
            float(rng.uniform(0.5, dims[0] - 0.5)),
            float(rng.uniform(0.5, dims[1] - 0.5)),
            float(rng.uniform(1.0, top)),
        )

    mic = position()
    for _ in range(100):
        source = position()
        if math.dist(source, mic) >= 1.0:
            break
    else:
        raise ValueError(f"cannot place source and microphone 1 m apart in a {dims} m room")
    scattering = float(rng.uniform(0.1, 0.2))
    return RoomSpec(dims, rt60, source, mic, scattering)  # type: ignore[arg-type]


def trim_rir(rir: np.ndarray, sample_rate: int, max_seconds: float = 1.0) -> np.ndarray:
    """From 2 ms before the direct-path peak to where the energy decay reaches -60 dB, or
    ``max_seconds`` after the peak, whichever comes first."""
    rir = np.asarray(rir, dtype=np.float64)
    peak = int(np.argmax(np.abs(rir)))
    start = max(0, peak - round(0.002 * sample_rate))
    rir = rir[start : peak + round(max_seconds * sample_rate)]
    energy = np.cumsum(rir[::-1] ** 2)[::-1]
    below = np.nonzero(energy < energy[0] * 1e-6)[0]
    if len(below):
        rir = rir[: below[0]]
    return rir


def exp_decay_rir(
    rt60: float, sample_rate: int, rng: np.random.Generator, max_seconds: float = 1.0
) -> np.ndarray:
    """Fallback RIR model: a direct-path impulse, then Gaussian noise whose amplitude decays
    by 60 dB in ``rt60`` seconds, starting 2-10 ms later, direct-to-reverberant ratio
    drawn in -5..10 dB. Used only when pyroomacoustics is unavailable."""
    length = round(min(max_seconds, 1.2 * rt60) * sample_rate)
    t = np.arange(length) / sample_rate
    tail = rng.standard_normal(length) * 10 ** (-3 * t / rt60)
    tail[: round(rng.uniform(0.002, 0.010) * sample_rate)] = 0
    drr_db = rng.uniform(-5.0, 10.0)
    tail *= 10 ** (-drr_db / 20) / np.sqrt(np.sum(tail**2))
    tail[0] = 1.0
    return tail


def simulate_rir(
    room: RoomSpec, sample_rate: int = 16000, seed: int = 0, max_seconds: float = 1.0
) -> np.ndarray:
    """Simulate one RIR with pyroomacoustics (hybrid image sources + ray tracing), trimmed.

    Absorption from Sabine's formula for ``room.rt60``; image sources up to order 3 give
    exact early reflections and the ray tracer (with some scattering, so the late field is
    diffuse as Sabine assumes) gives the tail: an order high enough for the tail alone
    would take seconds per room.
    """
    import pyroomacoustics as pra

    absorption, _ = pra.inverse_sabine(room.rt60, room.dims, c=SPEED_OF_SOUND)
    pra.random.seed(numpy=seed, libroom=seed)  # the ray tracer's rays are random
    shoebox = pra.ShoeBox(
        list(room.dims),
        fs=sample_rate,
        materials=pra.Material(absorption, room.scattering),
        max_order=3,
        ray_tracing=True,
        air_absorption=False,
    )
    shoebox.set_ray_tracing(
        n_rays=5000, receiver_radius=0.5, energy_thres=1e-6, time_thres=max_seconds + 0.1
    )
    shoebox.add_source(list(room.source))
    shoebox.add_microphone(list(room.mic))
    shoebox.compute_rir()
    return trim_rir(np.asarray(shoebox.rir[0][0]), sample_rate, max_seconds)


def rir_method_available(method: str) -> str:
    """Resolve ``auto`` to ``pyroomacoustics`` when importable, else ``exp-decay``."""
    if method not in ("auto", "pyroomacoustics", "exp-decay"):
        raise ValueError(f"unknown RIR method {method!r} (auto, pyroomacoustics, exp-decay)")
    if method == "exp-decay":
        return method
    try:
        import pyroomacoustics  # noqa: F401
    except ImportError:
        if method == "pyroomacoustics":
            raise
        log.warning("pyroomacoustics is not installed: using the exponential-decay RIR model")
        return "exp-decay"
    return "pyroomacoustics"


def _one_rir(
    index: int, seed: int, sample_rate: int, method: str, max_seconds: float
) -> tuple[RoomSpec, np.ndarray]:
    # Each RIR has its own seed, so results do not depend on order or worker count.
    seq = np.random.SeedSequence([seed, index])
    rng = np.random.default_rng(seq)
    room = sample_room(rng)
    if method == "pyroomacoustics":
        sim_seed = int(seq.generate_state(1, dtype=np.uint32)[0])
        rir = simulate_rir(room, sample_rate, sim_seed, max_seconds)
    else:
        rir = exp_decay_rir(room.rt60, sample_rate, rng, max_seconds)
    return room, rir


# -- writing sets ----------------------------------------------------------------------------


def _format_value(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(_format_value(v) for v in value)
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def _write_set(
    set_dir: Path,
    settings: dict,
    items: Callable[[], Iterable[tuple[str, np.ndarray]]],
    sample_rate: int,
    subtype: str,
    extra_tables: Callable[[], dict[str, dict[str, str]]] | None = None,
) -> bool:
    """Write ``items()`` (id, audio) as a data dir, atomically. False when already built."""
    settings = {"build_version": BUILD_VERSION, "sample_rate": sample_rate, **settings}
    done = set_dir / DONE
    if done.is_file():
        with open(done, encoding="utf-8") as f:
            previous = json.load(f)
        if previous != settings:
            changed = sorted(
                k for k in settings.keys() | previous.keys() if settings.get(k) != previous.get(k)
            )
            raise DataError(
                f"{set_dir} was built with other settings (differs in {', '.join(changed)}); "
                "remove it or choose another --out"
            )
        log.info("%s: already built, skipping", set_dir)
        return False
    if set_dir.exists():
        raise DataError(f"{set_dir} exists but has no {DONE} marker; remove it and rerun")
    set_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=set_dir.parent, prefix=f".{set_dir.name}.tmp."))
    try:
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
        with atomic_write(tmp / DONE) as f:
            json.dump(settings, f, indent=1, sort_keys=True)
        os.replace(tmp, set_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return True


def _read_mono(path: str | os.PathLike, sample_rate: int, what: str) -> np.ndarray:
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise DataError(f"{what}: cannot read {path}: {e}") from None
    audio = audio[:, 0]
    if rate != sample_rate:
        g = math.gcd(rate, sample_rate)
        audio = resample_poly(audio, sample_rate // g, rate // g).astype(np.float32)
    return audio


def _peak_normalise(audio: np.ndarray, peak: float = 0.9) -> np.ndarray:
    # Level is irrelevant (the augmenter rescales to an SNR); this only avoids 16-bit clipping.
    top = float(np.max(np.abs(audio))) if audio.size else 0.0
    return (audio * (peak / top)).astype(np.float32) if top > 0 else audio.astype(np.float32)


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
        stem = _safe_id(path.stem)
        name, n = stem, 1
        while name in used:  # same file name in two folders
            n += 1
            name = f"{stem}_{n}"
        used.add(name)
        audio = _read_mono(path, sample_rate, prefix)
        for i, piece in enumerate(_chunks(audio, round(chunk_seconds * sample_rate))):
            if np.sqrt(np.mean(piece.astype(np.float64) ** 2)) < 1e-5:
                log.info("%s: skipping silent chunk %d of %s", prefix, i, path)
                continue
            yield f"{prefix}-{name}-{i:03d}", _peak_normalise(piece)


def find_audio_files(folder: str | os.PathLike) -> list[Path]:
    """Audio files under ``folder`` (recursively), in ``LC_ALL=C`` path order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    files = [p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()]
    return sorted(files, key=lambda p: kaldi_sort_key(str(p)))


# -- the four sets ----------------------------------------------------------------------------


def build_rir_set(
    set_dir: str | os.PathLike,
    num_rirs: int = 200,
    seed: int = 0,
    sample_rate: int = 16000,
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
        raise ValueError(f"num_rirs must be >= 1, got {num_rirs}")
    info: dict[str, str] = {}

    def items() -> Iterator[tuple[str, np.ndarray]]:
        args = [(i, seed, sample_rate, method, max_seconds) for i in range(num_rirs)]
        if jobs > 1:
            with ProcessPoolExecutor(jobs) as pool:
                results = list(pool.map(_one_rir, *zip(*args, strict=True), chunksize=4))
        else:
            results = [_one_rir(*a) for a in args]
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
    sample_rate: int = 16000,
    num_colored: int = 30,
    chunk_seconds: float = 5.0,
) -> bool:
    """User noise files cut into chunks, plus ``num_colored`` coloured noises (white, pink,
    brown in turn, each exponent jittered by up to +-0.5 for a random spectral tilt)."""
    files = [Path(p).resolve() for p in noise_files]
    if not files and num_colored < 1:
        raise ValueError("the noise set needs noise files or num_colored >= 1")

    def items() -> Iterator[tuple[str, np.ndarray]]:
        yield from _file_chunks(files, sample_rate, chunk_seconds, "noise")
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
        kinds = (("white", 0.0), ("pink", 1.0), ("brown", 2.0))
        for i in range(num_colored):
            kind, exponent = kinds[i % 3]
            exponent += rng.uniform(-0.5, 0.5)
            noise = colored_noise(round(chunk_seconds * sample_rate), exponent, rng)
            yield f"colored-{i:03d}-{kind}", _peak_normalise(noise)

    settings = {
        "set": "noise",
        "files": [str(p) for p in files],
        "seed": seed,
        "num_colored": num_colored,
        "chunk_seconds": chunk_seconds,
    }
    return _write_set(Path(set_dir), settings, items, sample_rate, "PCM_16")


def build_music_set(
    set_dir: str | os.PathLike,
    music_files: Sequence[str | os.PathLike],
    sample_rate: int = 16000,
    chunk_seconds: float = 5.0,
) -> bool:
    """User music files cut into chunks."""
    files = [Path(p).resolve() for p in music_files]
    if not files:
        raise ValueError("the music set needs music files")
    settings = {"set": "music", "files": [str(p) for p in files], "chunk_seconds": chunk_seconds}
    return _write_set(
        Path(set_dir),
        settings,
        lambda: _file_chunks(files, sample_rate, chunk_seconds, "music"),
        sample_rate,
        "PCM_16",
    )


def build_speech_set(
    set_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    seed: int = 0,
    sample_rate: int = 16000,
    num_chunks: int = 200,
    chunk_seconds: float = 5.0,
) -> bool:
    """Babble sources: one chunk (random offset) from each of ``num_chunks`` utterances of
    ``data_dir`` drawn at random (all of them when there are fewer)."""
    data_dir = Path(data_dir).resolve()
    wavs = read_wav_scp(data_dir / "wav.scp")
    utts = sorted(wavs, key=kaldi_sort_key)

    def items() -> Iterator[tuple[str, np.ndarray]]:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
        chosen = sorted(rng.permutation(len(utts))[:num_chunks])
        chunk = round(chunk_seconds * sample_rate)
        for n, i in enumerate(chosen):
            utt = utts[i]
            audio = _read_mono(wavs[utt], sample_rate, f"{data_dir}: utterance {utt!r}")
            start = int(rng.integers(0, max(1, len(audio) - chunk + 1)))
            piece = audio[start : start + chunk]
            if piece.size == 0:
                raise DataError(f"{data_dir}: utterance {utt!r} ({wavs[utt]}) is empty")
            yield f"babble-{n:04d}-{_safe_id(utt)}", _peak_normalise(piece)

    settings = {
        "set": "speech",
        "data_dir": str(data_dir),
        "seed": seed,
        "num_chunks": num_chunks,
        "chunk_seconds": chunk_seconds,
    }
    return _write_set(Path(set_dir), settings, items, sample_rate, "PCM_16")


def build_aug_sets(
    out_dir: str | os.PathLike,
    seed: int = 0,
    sample_rate: int = 16000,
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
