"""Batched waveform augmentation on any device: reverberation, then additive noise.

The augmenter works on a whole batch of raw crops ``[B, L]`` on the batch's device (CPU or
CUDA). Every random choice is drawn on the CPU from the caller's ``torch.Generator``
(:meth:`Augmenter.sample_params`) and then applied with tensor ops (:meth:`Augmenter.apply`),
so a seeded run is reproducible on any device and the two halves can be tested apart.

Noise and RIR sets are :class:`sslsv.augment.sets.AugmentationSet` (clips in memory).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sslsv.augment.sets import AugmentationSet
from sslsv.devices import upload
from sslsv.errors import DataError

# Power floor (amplitude 1e-5 RMS): keeps silent speech, noise or RIRs from dividing by zero.
POWER_EPS = 1e-10


#: Per-length layouts kept at once (one per device and crop length; small: the sets
#: themselves are kept once per device).
MAX_STATES = 4


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
    num_sources: tuple[int, int]
    weight: float

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
class _DeviceSets:
    """The sets on one device, one copy whatever the crop lengths (a RIR set can take GBs)."""

    rirs: torch.Tensor | None  # [N, rir samples], aligned, unit energy
    # Per noise category: the clips concatenated, each shorter than ``length`` followed by
    # its own start again (``length - 1`` samples, looped). Clip ``i`` read from ``start``
    # (a start drawn by ``sample_params``) for any crop of at most ``length`` samples is
    # ``flat[clip_first[i] + start:][:crop]``, wrapping around when the clip is short; the
    # layout is rebuilt only when a longer crop comes.
    length: int
    flat: list[torch.Tensor]
    clip_first: list[torch.Tensor]  # long [N]
    spectra_bytes: int = 0  # RIR spectra cached on this device, all lengths together


@dataclass
class _DeviceState:
    """What one crop length adds on a device (built once, reused every batch): small."""

    length: int
    n_fft: int
    rir_spectra: torch.Tensor | None  # rfft of the RIRs at ``n_fft`` when within the budget


# Keep RIR spectra on a device (all crop lengths together) when they need at most this much
# memory; otherwise each batch transforms the RIRs it draws.
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
        rirs: AugmentationSet | None,
        rir_prob: float,
        noise: Sequence[NoiseCategory],
        noise_prob: float,
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
        # Per device: the sets; per (device, crop length): training uses one length, or two
        # with multi-crop.
        self._devices: dict[torch.device, _DeviceSets] = {}
        self._states: dict[tuple[torch.device, int], _DeviceState] = {}

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

    def _sets(self, device: torch.device, length: int) -> _DeviceSets:
        """The sets on ``device``, the noise laid out for crops of ``length`` samples."""
        sets = self._devices.get(device)
        if sets is not None and sets.length >= length:
            return sets
        if sets is None:
            rirs = None if self.rirs is None else self.rirs.to(device)
            sets = _DeviceSets(rirs, 0, [], [])
        # The old noise layout goes before the new one is built: one copy at a time.
        sets.flat, sets.clip_first = [], []
        for cat, lengths in zip(self.categories, self._clip_lengths, strict=True):
            # Clips of at least ``length`` samples are only read from starts that fit;
            # shorter ones get their looped continuation appended. (A clip long enough for
            # a shorter crop but looped here is read the same: its starts fit the clip.)
            sizes = torch.where(lengths >= length, lengths, lengths + length - 1)
            looped = [
                clip if len(clip) >= length else clip[torch.arange(size) % len(clip)]
                for clip, size in zip(cat.clips.clips, sizes.tolist(), strict=True)
            ]
            sets.flat.append(torch.cat(looped).to(device))
            sets.clip_first.append((torch.cumsum(sizes, 0) - sizes).to(device))
        sets.length = length
        self._devices[device] = sets
        return sets

    def _state(self, device: torch.device, length: int) -> tuple[_DeviceSets, _DeviceState]:
        sets = self._sets(device, length)
        state = self._states.get((device, length))
        if state is not None:
            return sets, state
        if len(self._states) >= MAX_STATES:  # a caller of ever-changing lengths: no growth
            self._states.clear()
            for held in self._devices.values():
                held.spectra_bytes = 0
        spectra = None
        n_fft = 0
        if sets.rirs is not None:
            # Linear convolution without circular wrap-around into the kept [0, length).
            n_fft = _fast_fft_size(length + sets.rirs.shape[1] - 1)
            # Within the device's budget, first come first cached (the trainer prepares its
            # lengths in a fixed order); cached or not, the same convolution (to rounding).
            size = len(sets.rirs) * (n_fft // 2 + 1) * 8
            if sets.spectra_bytes + size <= RIR_SPECTRA_MAX_BYTES:
                spectra = torch.fft.rfft(sets.rirs, n_fft)
                sets.spectra_bytes += size
        state = _DeviceState(length, n_fft, spectra)
        self._states[(device, length)] = state
        return sets, state

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
        sets, state = self._state(device, length)
        out = wave.clone()
        if sets.rirs is not None and batch:
            rows_cpu = params.reverb.nonzero().squeeze(1)
            if rows_cpu.numel():
                rows = upload(rows_cpu, device)
                which = upload(params.rir_index[rows_cpu], device)
                if state.rir_spectra is not None:
                    spectra = state.rir_spectra[which]
                else:
                    spectra = torch.fft.rfft(sets.rirs[which], state.n_fft)
                out[rows] = _reverberate(out[rows], spectra, state.n_fft).to(dtype)
        for c, cat in enumerate(self.categories):
            rows_cpu = (params.category == c).nonzero().squeeze(1)
            if not rows_cpu.numel():
                continue
            rows = upload(rows_cpu, device)
            count = params.num_sources[rows_cpu]
            # Overlapping rows of ``length`` samples over the layout (a view, no copy).
            flat = sets.flat[c]
            windows = flat.as_strided((flat.numel() - length + 1, length), (1, 1))
            first = sets.clip_first[c][upload(params.source_index[rows_cpu], device)]
            first += upload(params.source_start[rows_cpu], device)
            noise = torch.zeros(len(rows), length, device=device, dtype=torch.float32)
            for k in range(cat.num_sources[1]):
                active_cpu = (count > k).nonzero().squeeze(1)
                if not active_cpu.numel():
                    break
                active = upload(active_cpu, device)
                source = windows[first[active, k]].float()
                if cat.num_sources[1] > 1:
                    # Unit power each, so that babble sources weigh alike. (A lone source
                    # needs no such step: the SNR scaling below sets its level.)
                    source *= torch.rsqrt(_power(source) + POWER_EPS)[:, None]
                if len(active_cpu) == len(rows_cpu):
                    noise += source
                else:
                    noise[active] += source  # rows are distinct: a plain indexed write
            speech = out[rows].float()
            snr = upload(params.snr_db[rows_cpu].float(), device)
            scale = torch.sqrt(_power(speech) / (10 ** (snr / 10) * (_power(noise) + POWER_EPS)))
            out[rows] = (speech + noise * scale[:, None]).to(dtype)
        return out

    def augment(self, wave: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a batch ``[B, L]`` on its own device; randomness from ``generator`` (CPU)."""
        if wave.dim() != 2 or wave.shape[1] == 0:
            raise ValueError(f"expected a [batch, samples] waveform, got shape {tuple(wave.shape)}")
        return self.apply(wave, self.sample_params(wave.shape[0], wave.shape[1], generator))

    __call__ = augment


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
