"""Room impulse responses: random shoebox rooms, simulated with pyroomacoustics (image sources
for the early reflections plus ray tracing for the late tail), or an exponential-decay model
when pyroomacoustics is not installed; RT60 measured by Schroeder integration."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sslsv.errors import DataError

log = logging.getLogger(__name__)

SPEED_OF_SOUND = 343.0


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
    room: RoomSpec, sample_rate: int, seed: int = 0, max_seconds: float = 1.0
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
        raise DataError(f"unknown RIR method {method!r} (auto, pyroomacoustics, exp-decay)")
    if method == "exp-decay":
        return method
    try:
        import pyroomacoustics  # noqa: F401
    except ImportError as e:
        if method == "pyroomacoustics":
            raise DataError(f"RIR method pyroomacoustics: cannot import it ({e})") from None
        log.warning("pyroomacoustics is not installed: using the exponential-decay RIR model")
        return "exp-decay"
    return "pyroomacoustics"


def one_rir(
    index: int, seed: int, sample_rate: int, method: str, max_seconds: float
) -> tuple[RoomSpec, np.ndarray]:
    """RIR ``index`` of a set: its room and response (from its own seed, so results do not
    depend on order or worker count)."""
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
