"""Batched waveform augmentation on any device: reverberation, then additive noise.

The augmenter works on a whole batch of raw crops ``[B, L]`` on the batch's device (CPU or
CUDA). Every random choice is drawn on the CPU from the caller's ``torch.Generator``
(:meth:`Augmenter.sample_params`) and then applied with tensor ops (:meth:`Augmenter.apply`),
so a seeded run is reproducible on any device and the two halves can be tested apart.

Noise and RIR sets are Kaldi data dirs (``wav.scp``, optional ``segments``), for example
MUSAN / RIRS_NOISES or the sets built by ``python -m sslsv.bin.make_aug_sets``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from sslsv.data.datadir import read_wav_scp
from sslsv.fileio import DataError, kaldi_sort_key, read_table

log = logging.getLogger(__name__)

# Power floor (amplitude 1e-5 RMS): keeps silent speech, noise or RIRs from dividing by zero.
POWER_EPS = 1e-10

# MUSAN-style defaults per category name: (snr_db range, num_sources range).
MUSAN_DEFAULTS: dict[str, tuple[tuple[float, float], tuple[int, int]]] = {
    "noise": ((0.0, 15.0), (1, 1)),
    "speech": ((13.0, 20.0), (3, 7)),
    "music": ((5.0, 15.0), (1, 1)),
}


# -- audio sets ----------------------------------------------------------------------------


def _read_segments(
    path: Path, recordings: Mapping[str, str]
) -> list[tuple[str, str, float, float]]:
    """Kaldi ``segments``: ``seg_id rec_id start_s end_s`` (``end_s`` -1 means end of file)."""
    segments = []
    for lineno, (seg, rest) in enumerate(read_table(path), 1):
        fields = rest.split()
        where = f"{path}:{lineno}: segment {seg!r}"
        if len(fields) != 3:
            raise DataError(f"{where}: expected 'seg_id rec_id start end', got {rest!r}")
        rec, start_s, end_s = fields
        if rec not in recordings:
            raise DataError(f"{where}: recording {rec!r} is not in wav.scp")
        try:
            start, end = float(start_s), float(end_s)
        except ValueError:
            raise DataError(f"{where}: start/end must be numbers, got {rest!r}") from None
        if start < 0 or (end != -1 and end <= start):
            raise DataError(f"{where}: bad time range {start_s}..{end_s}")
        segments.append((seg, rec, start, end))
    return segments


class AugmentationSet:
    """All audio of a Kaldi data dir in memory, as float32 1-D tensors in ``LC_ALL=C`` order.

    With a ``segments`` file the clips are the segments. ``max_seconds`` keeps a subset whose
    total stays within the cap: clips in a fixed pseudo-random order (``seed``), so the subset
    is the same on every run and spread over the whole set rather than its first files.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        sample_rate: int = 16000,
        max_seconds: float | None = None,
        seed: int = 0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.sample_rate = sample_rate
        wav_scp = self.data_dir / "wav.scp"
        if not wav_scp.is_file():
            raise DataError(f"{self.data_dir}: not a data dir (no wav.scp)")
        recordings = read_wav_scp(wav_scp)
        segments_path = self.data_dir / "segments"
        if segments_path.is_file():
            # (id, recording, start sample, end sample or -1)
            items = [
                (
                    seg,
                    rec,
                    round(start * sample_rate),
                    -1 if end == -1 else round(end * sample_rate),
                )
                for seg, rec, start, end in _read_segments(segments_path, recordings)
            ]
        else:
            items = [(utt, utt, 0, -1) for utt in recordings]
        items.sort(key=lambda item: kaldi_sort_key(item[0]))
        if max_seconds is not None:
            items = self._subset(items, recordings, max_seconds, seed)

        self.ids: list[str] = []
        self.clips: list[torch.Tensor] = []
        # Segment ids start with their recording's id, so in sorted order a recording's
        # segments are neighbours: keeping only the last recording read loads each once.
        last: tuple[str, np.ndarray] | None = None
        for clip_id, rec, start, end in items:
            if last is None or last[0] != rec:
                last = (rec, self._read(recordings[rec], rec))
            audio = last[1][start : None if end == -1 else end]
            if audio.size == 0:
                raise DataError(f"{self.data_dir}: clip {clip_id!r} ({recordings[rec]}) is empty")
            self.ids.append(clip_id)
            # A copy, so that a short segment does not pin its whole recording in memory.
            self.clips.append(torch.from_numpy(audio.copy()))
        if not self.clips:
            raise DataError(f"{self.data_dir}: no audio (wav.scp or segments is empty)")

    def _read(self, path: str, rec: str) -> np.ndarray:
        try:
            audio, rate = sf.read(path, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise DataError(
                f"{self.data_dir}: recording {rec!r}: cannot read {path}: {e}"
            ) from None
        if rate != self.sample_rate:
            raise DataError(
                f"{self.data_dir}: recording {rec!r} ({path}) is {rate} Hz, expected "
                f"{self.sample_rate} Hz; resample the set first"
            )
        return audio[:, 0]

    def _subset(
        self, items: list, recordings: Mapping[str, str], max_seconds: float, seed: int
    ) -> list:
        frames: dict[str, int] = {}
        kept, total = [], 0
        for i in np.random.default_rng(seed).permutation(len(items)):
            clip_id, rec, start, end = items[i]
            if end == -1:
                if rec not in frames:
                    try:
                        frames[rec] = sf.info(recordings[rec]).frames
                    except (sf.LibsndfileError, RuntimeError) as e:
                        raise DataError(
                            f"{self.data_dir}: recording {rec!r}: cannot read "
                            f"{recordings[rec]}: {e}"
                        ) from None
                end = frames[rec]
            if total + (end - start) > max_seconds * self.sample_rate:
                continue
            kept.append(items[i])
            total += end - start
        if not kept:
            raise DataError(f"{self.data_dir}: every clip is longer than max_seconds={max_seconds}")
        return sorted(kept, key=lambda item: kaldi_sort_key(item[0]))

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def total_seconds(self) -> float:
        return sum(len(c) for c in self.clips) / self.sample_rate


@functools.lru_cache(maxsize=16)
def _load_set_cached(
    data_dir: str, sample_rate: int, max_seconds: float | None, mtime_ns: int
) -> AugmentationSet:
    return AugmentationSet(data_dir, sample_rate, max_seconds)


def load_augmentation_set(
    data_dir: str | os.PathLike, sample_rate: int = 16000, max_seconds: float | None = None
) -> AugmentationSet:
    """:class:`AugmentationSet`, loaded once per process (re-read if ``wav.scp`` changes)."""
    data_dir = Path(data_dir).resolve()
    wav_scp = data_dir / "wav.scp"
    if not wav_scp.is_file():
        raise DataError(f"{data_dir}: not a data dir (no wav.scp)")
    return _load_set_cached(str(data_dir), sample_rate, max_seconds, wav_scp.stat().st_mtime_ns)


# -- the augmenter -------------------------------------------------------------------------


def prepare_rir(rir: torch.Tensor, max_samples: int) -> torch.Tensor:
    """Align an RIR on its direct-path peak (largest magnitude), cut, normalise to unit energy.

    Starting at the peak means convolving does not delay the speech, so crops stay aligned
    with their unreverberated content.
    """
    rir = rir.to(torch.float32)
    peak = int(torch.argmax(rir.abs()))
    rir = rir[peak : peak + max_samples]
    energy = float(rir.double().pow(2).sum())
    if energy <= 0:
        raise ValueError("RIR is all zeros")
    return rir / energy**0.5


@dataclass(frozen=True)
class NoiseCategory:
    """One kind of additive noise: its clips, SNR range (dB), sources summed, and weight."""

    name: str
    clips: AugmentationSet
    snr_db: tuple[float, float]
    num_sources: tuple[int, int] = (1, 1)
    weight: float = 1.0

    def __post_init__(self) -> None:
        lo, hi = self.snr_db
        if not lo <= hi:
            raise ValueError(f"noise category {self.name!r}: snr_db {self.snr_db} has lo > hi")
        lo, hi = self.num_sources
        if not 1 <= lo <= hi:
            raise ValueError(
                f"noise category {self.name!r}: num_sources {self.num_sources} must be "
                "1 <= lo <= hi"
            )
        if not self.weight > 0:
            raise ValueError(f"noise category {self.name!r}: weight must be > 0")


@dataclass
class AugmentParams:
    """Every random choice for one batch (CPU tensors); ``category`` -1 means no noise."""

    reverb: torch.Tensor  # bool [B]
    rir_index: torch.Tensor  # long [B]
    category: torch.Tensor  # long [B]
    snr_db: torch.Tensor  # float64 [B]
    num_sources: torch.Tensor  # long [B]
    source_index: torch.Tensor  # long [B, K]: clip within the category
    source_start: torch.Tensor  # long [B, K]: first sample in that clip (then looped)

    def rows(self, start: int, stop: int) -> AugmentParams:
        """The choices for rows ``start:stop``: one process's share of a global batch."""
        return AugmentParams(
            **{f.name: getattr(self, f.name)[start:stop] for f in dataclasses.fields(self)}
        )


@dataclass
class _DeviceState:
    """Sets laid out for one device and crop length (built once, reused every batch)."""

    length: int
    n_fft: int
    rirs: torch.Tensor | None  # [N, rir samples], aligned, unit energy
    rir_spectra: torch.Tensor | None  # rfft of ``rirs`` at ``n_fft`` when small enough
    # Per noise category: the clips concatenated (each shorter than ``length`` followed by
    # its own start again, looped), seen as overlapping rows of ``length`` samples: row
    # ``clip_first[i] + start`` is clip ``i`` read from ``start`` (a start drawn by
    # ``sample_params``), wrapping around when the clip is short.
    windows: list[torch.Tensor]
    clip_first: list[torch.Tensor]  # long [N]


# Keep the RIR spectra on the device when they need at most this much memory.
RIR_SPECTRA_MAX_BYTES = 256 * 2**20


def _fast_fft_size(n: int) -> int:
    """Smallest 2,3,5-smooth integer >= n (FFT libraries are fast on those sizes)."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            size = p35
            while size < n:
                size *= 2
            best = min(best, size)
            p35 *= 3
        p5 *= 5
    return best


class Augmenter:
    """Reverberation (probability ``rir_prob``) then additive noise (``noise_prob``).

    Noise: a category is picked with probability proportional to its ``weight``; its
    ``num_sources`` clips (random clip, random offset, looped when short) are each scaled to
    unit power and summed (babble), and the sum is scaled to the sampled SNR against the
    power of the (reverberated) crop.
    """

    def __init__(
        self,
        rirs: AugmentationSet | None = None,
        rir_prob: float = 0.5,
        noise: Sequence[NoiseCategory] = (),
        noise_prob: float = 0.8,
        rir_max_seconds: float = 1.0,
    ) -> None:
        for name, p in (("rir_prob", rir_prob), ("noise_prob", noise_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        self.rir_set = rirs
        self.rir_prob = rir_prob if rirs is not None else 0.0
        self.categories = list(noise)
        self.noise_prob = noise_prob if self.categories else 0.0
        self.max_sources = max((c.num_sources[1] for c in self.categories), default=1)
        self._clip_lengths = [
            torch.tensor([len(x) for x in c.clips.clips], dtype=torch.long) for c in self.categories
        ]
        self.rirs: torch.Tensor | None = None
        if rirs is not None:
            max_samples = max(1, round(rir_max_seconds * rirs.sample_rate))
            prepared = []
            for rir_id, clip in zip(rirs.ids, rirs.clips, strict=True):
                try:
                    prepared.append(prepare_rir(clip, max_samples))
                except ValueError as e:
                    raise DataError(f"{rirs.data_dir}: RIR {rir_id!r}: {e}") from None
            self.rirs = torch.nn.utils.rnn.pad_sequence(prepared, batch_first=True)
        self._states: dict[torch.device, _DeviceState] = {}

    def describe(self) -> str:
        """One line saying which sets are in use."""
        parts = []
        if self.rir_set is not None:
            parts.append(f"reverb p={self.rir_prob:g} ({len(self.rir_set)} RIRs)")
        else:
            parts.append("reverb off")
        if self.categories:
            cats = ", ".join(
                f"{c.name} w={c.weight:g} {len(c.clips)} clips {c.clips.total_seconds:.0f}s "
                f"snr {c.snr_db[0]:g}..{c.snr_db[1]:g} dB"
                + (
                    f" {c.num_sources[0]}-{c.num_sources[1]} sources"
                    if c.num_sources[1] > 1
                    else ""
                )
                for c in self.categories
            )
            parts.append(f"noise p={self.noise_prob:g} [{cats}]")
        else:
            parts.append("noise off")
        return "augmentation: " + "; ".join(parts)

    def prepare(self, device: torch.device | str, num_samples: int) -> None:
        """Lay the sets out on ``device`` for crops of ``num_samples`` now (otherwise done at
        the first batch): the first step is then not slow, and out-of-memory shows early."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())  # as tensors report it
        self._state(device, num_samples)

    def _state(self, device: torch.device, length: int) -> _DeviceState:
        state = self._states.get(device)
        if state is not None and state.length == length:
            return state
        rirs = spectra = None
        n_fft = 0
        if self.rirs is not None:
            # Linear convolution without circular wrap-around into the kept [0, length).
            n_fft = _fast_fft_size(length + self.rirs.shape[1] - 1)
            rirs = self.rirs.to(device)
            if len(rirs) * (n_fft // 2 + 1) * 8 <= RIR_SPECTRA_MAX_BYTES:
                spectra = torch.fft.rfft(rirs, n_fft)
        windows, clip_first = [], []
        for cat, lengths in zip(self.categories, self._clip_lengths, strict=True):
            # Clips of at least ``length`` samples are only read from starts that fit;
            # shorter ones get their looped continuation appended.
            sizes = torch.where(lengths >= length, lengths, lengths + length - 1)
            looped = [
                clip if len(clip) >= length else clip[torch.arange(size) % len(clip)]
                for clip, size in zip(cat.clips.clips, sizes.tolist(), strict=True)
            ]
            flat = torch.cat(looped).to(device)
            windows.append(flat.as_strided((flat.numel() - length + 1, length), (1, 1)))
            clip_first.append((torch.cumsum(sizes, 0) - sizes).to(device))
        state = _DeviceState(length, n_fft, rirs, spectra, windows, clip_first)
        self._states[device] = state  # one crop length per device: training uses one
        return state

    # -- sampling (CPU, from the caller's generator) ----------------------------------------
    def sample_params(
        self, batch_size: int, num_samples: int, generator: torch.Generator | None = None
    ) -> AugmentParams:
        """Draw every random choice for a batch, in a fixed order, on the CPU."""
        if generator is not None and generator.device.type != "cpu":
            raise ValueError("the augmentation generator must be a CPU torch.Generator")
        g = {"generator": generator}
        B, K = batch_size, self.max_sources
        reverb = torch.rand(B, **g) < self.rir_prob
        num_rirs = 1 if self.rirs is None else len(self.rirs)
        rir_index = torch.randint(num_rirs, (B,), **g)
        noisy = torch.rand(B, **g) < self.noise_prob
        category = torch.full((B,), -1, dtype=torch.long)
        snr_db = torch.zeros(B, dtype=torch.float64)
        num_sources = torch.zeros(B, dtype=torch.long)
        source_index = torch.zeros(B, K, dtype=torch.long)
        source_start = torch.zeros(B, K, dtype=torch.long)
        if self.categories:
            weights = torch.tensor([c.weight for c in self.categories], dtype=torch.float64)
            picked = torch.multinomial(weights, B, replacement=True, **g) if B else category
            category = torch.where(noisy, picked, -1)
            for c, cat in enumerate(self.categories):
                lo, hi = cat.snr_db
                snr = lo + (hi - lo) * torch.rand(B, dtype=torch.float64, **g)
                count = torch.randint(cat.num_sources[0], cat.num_sources[1] + 1, (B,), **g)
                index = torch.randint(len(cat.clips), (B, K), **g)
                u = torch.rand(B, K, dtype=torch.float64, **g)
                lengths = self._clip_lengths[c][index]
                # Long clips: a window that fits; short clips: any offset, then looped.
                choices = torch.where(lengths >= num_samples, lengths - num_samples + 1, lengths)
                start = torch.minimum((u * choices).long(), choices - 1)
                mine = category == c
                snr_db = torch.where(mine, snr, snr_db)
                num_sources = torch.where(mine, count, num_sources)
                source_index = torch.where(mine[:, None], index, source_index)
                source_start = torch.where(mine[:, None], start, source_start)
        return AugmentParams(
            reverb, rir_index, category, snr_db, num_sources, source_index, source_start
        )

    # -- applying (any device) --------------------------------------------------------------
    def apply(self, wave: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """Augment ``wave`` [B, L] with the given choices; returns a new tensor."""
        if wave.dim() != 2 or wave.shape[1] == 0:
            raise ValueError(f"expected a [batch, samples] waveform, got shape {tuple(wave.shape)}")
        device, dtype = wave.device, wave.dtype
        batch, length = wave.shape
        state = self._state(device, length)
        out = wave.clone()
        if state.rirs is not None and batch:
            rows_cpu = params.reverb.nonzero().squeeze(1)
            if rows_cpu.numel():
                rows = _upload(rows_cpu, device)
                which = _upload(params.rir_index[rows_cpu], device)
                if state.rir_spectra is not None:
                    spectra = state.rir_spectra[which]
                else:
                    spectra = torch.fft.rfft(state.rirs[which], state.n_fft)
                out[rows] = _reverberate(out[rows], spectra, state.n_fft).to(dtype)
        for c, cat in enumerate(self.categories):
            rows_cpu = (params.category == c).nonzero().squeeze(1)
            if not rows_cpu.numel():
                continue
            rows = _upload(rows_cpu, device)
            count = params.num_sources[rows_cpu]
            first = state.clip_first[c][_upload(params.source_index[rows_cpu], device)]
            first += _upload(params.source_start[rows_cpu], device)
            noise = torch.zeros(len(rows), length, device=device, dtype=torch.float32)
            for k in range(cat.num_sources[1]):
                active_cpu = (count > k).nonzero().squeeze(1)
                if not active_cpu.numel():
                    break
                active = _upload(active_cpu, device)
                source = state.windows[c][first[active, k]].float()
                if cat.num_sources[1] > 1:
                    # Unit power each, so that babble sources weigh alike. (A lone source
                    # needs no such step: the SNR scaling below sets its level.)
                    source *= torch.rsqrt(_power(source) + POWER_EPS)[:, None]
                if len(active_cpu) == len(rows_cpu):
                    noise += source
                else:
                    noise[active] += source  # rows are distinct: a plain indexed write
            speech = out[rows].float()
            snr = _upload(params.snr_db[rows_cpu].float(), device)
            scale = torch.sqrt(_power(speech) / (10 ** (snr / 10) * (_power(noise) + POWER_EPS)))
            out[rows] = (speech + noise * scale[:, None]).to(dtype)
        return out

    def augment(self, wave: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a batch ``[B, L]`` on its own device; randomness from ``generator`` (CPU)."""
        if wave.dim() != 2 or wave.shape[1] == 0:
            raise ValueError(f"expected a [batch, samples] waveform, got shape {tuple(wave.shape)}")
        return self.apply(wave, self.sample_params(wave.shape[0], wave.shape[1], generator))

    __call__ = augment


def _upload(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on ``device`` without making the host wait: a copy from pageable memory
    synchronises with the GPU, one from pinned memory is queued like a kernel (the caching
    pinned allocator keeps the buffer until the copy has run)."""
    if device.type != "cuda":
        return x.to(device)
    return x.pin_memory().to(device, non_blocking=True)


def _power(x: torch.Tensor) -> torch.Tensor:
    """Mean square of each row (a norm kernel: one pass, no squared temporary)."""
    return torch.linalg.vector_norm(x, dim=1).square() / x.shape[1]


def _reverberate(x: torch.Tensor, rir_spectra: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Row-wise convolution with RIRs given as ``rfft(rir, n_fft)``, cut to ``x``'s length,
    at ``x``'s power (``n_fft`` >= length + RIR length - 1: no wrap-around)."""
    length = x.shape[1]
    x32 = x.float()
    y = torch.fft.irfft(torch.fft.rfft(x32, n_fft) * rir_spectra, n_fft)[:, :length]
    return y * torch.sqrt(_power(x32) / (_power(y) + POWER_EPS))[:, None]


# -- construction from configuration ---------------------------------------------------------


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    """``cfg[key]`` (mapping) or ``cfg.key`` (dataclass); missing or None gives ``default``."""
    value = cfg.get(key) if isinstance(cfg, Mapping) else getattr(cfg, key, None)
    return default if value is None else value


def _pair(value: Any, where: str, kind: type) -> tuple:
    if not (isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2):
        raise DataError(f"config key '{where}' must be a [lo, hi] pair, got {value!r}")
    try:
        return kind(value[0]), kind(value[1])
    except (TypeError, ValueError):
        raise DataError(f"config key '{where}' must hold numbers, got {value!r}") from None


def build_augmenter_from_config(
    cfg: Any,
    sample_rate: int = 16000,
    device: torch.device | str | None = None,
    num_samples: int | None = None,
) -> Augmenter:
    """Build from ``augment`` config (``sslsv.config.AugmentConfig`` or a plain mapping).

    Keys: ``rir_dir`` ("" or absent: no reverb), ``rir_prob``, ``noise_prob``,
    ``max_noise_seconds`` (cap per category; 0 or absent: none) and ``noise``: a mapping
    ``name -> {data_dir, snr_db: [lo, hi], num_sources: [lo, hi], weight}``; missing
    ``snr_db`` / ``num_sources`` take the MUSAN-style defaults of the name (noise, speech,
    music). Errors name the offending key. With ``device`` and ``num_samples`` (the crop
    length) the sets are laid out on the device now (:meth:`Augmenter.prepare`).
    """
    rir_dir = _get(cfg, "rir_dir") or None
    rirs = load_augmentation_set(rir_dir, sample_rate) if rir_dir else None
    max_seconds = _get(cfg, "max_noise_seconds") or None
    categories = []
    for name, sub in (_get(cfg, "noise") or {}).items():
        where = f"augment.noise.{name}"
        data_dir = _get(sub, "data_dir")
        if not data_dir:
            raise DataError(f"config key '{where}.data_dir' is missing or empty")
        default_snr, default_sources = MUSAN_DEFAULTS.get(name, (None, (1, 1)))
        snr = _get(sub, "snr_db", default_snr)
        if snr is None:
            raise DataError(f"config key '{where}.snr_db' is required for category {name!r}")
        try:
            categories.append(
                NoiseCategory(
                    name=name,
                    clips=load_augmentation_set(data_dir, sample_rate, max_seconds),
                    snr_db=_pair(snr, f"{where}.snr_db", float),
                    num_sources=_pair(
                        _get(sub, "num_sources", default_sources), f"{where}.num_sources", int
                    ),
                    weight=float(_get(sub, "weight", 1.0)),
                )
            )
        except ValueError as e:
            if isinstance(e, DataError):
                raise
            raise DataError(f"config key '{where}': {e}") from None
    augmenter = Augmenter(
        rirs=rirs,
        rir_prob=float(_get(cfg, "rir_prob", 0.5)),
        noise=categories,
        noise_prob=float(_get(cfg, "noise_prob", 0.8)),
    )
    if device is not None and num_samples is not None:
        augmenter.prepare(device, num_samples)
    log.info(augmenter.describe())
    return augmenter
