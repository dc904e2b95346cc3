"""Waveform augmentation (sslsv.augment) and the offline augmentation sets (sslsv.simulation)."""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

from sslsv.audio import find_audio_files
from sslsv.augment.augmenter import POWER_EPS, Augmenter, NoiseCategory, _fast_fft_size, prepare_rir
from sslsv.augment.build import build_augmenter
from sslsv.augment.sets import AugmentationSet, load_augmentation_set
from sslsv.config.load import config_from_dict
from sslsv.config.schema import AugmentConfig
from sslsv.errors import ConfigError, DataError
from sslsv.fileio import read_dict
from sslsv.simulation.aug_sets import build_aug_sets, build_noise_set, build_rir_set
from sslsv.simulation.dsp import colored_noise
from sslsv.simulation.rooms import (
    RoomSpec,
    exp_decay_rir,
    measure_rt60,
    rir_method_available,
    sample_room,
    simulate_rir,
)

SR = 16000
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_NOISE = SHARED / "noise" / "speech_commands_background"


def write_data_dir(folder: Path, clips: dict[str, np.ndarray], rate: int = SR) -> Path:
    """A data dir of float WAVs (exact values), paths with a space in them."""
    audio_dir = folder / "audio files"
    audio_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for utt, audio in sorted(clips.items()):
        path = audio_dir / f"{utt}.wav"
        sf.write(path, audio, rate, subtype="FLOAT")
        lines.append(f"{utt} {path}\n")
    (folder / "wav.scp").write_text("".join(lines))
    return folder


def decaying_rir(rng: np.random.Generator, length: int, lead: int, rt60: float) -> np.ndarray:
    t = np.arange(length) / SR
    rir = 0.3 * rng.standard_normal(length) * 10 ** (-3 * t / rt60)
    rir[0] = 1.0
    return np.concatenate([0.01 * rng.standard_normal(lead), rir]).astype(np.float32)


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("augsets")
    rng = np.random.default_rng(123)
    rirs = {f"r{i}": decaying_rir(rng, 600 + 200 * i, lead=5 * i, rt60=0.05) for i in range(4)}
    # Noise: clips both shorter and longer than the crops, to exercise looping and windows.
    noise = {
        f"n{i}": (0.1 * rng.standard_normal(n)).astype(np.float32)
        for i, n in enumerate([700, 1500, 5000, 9000])
    }
    speech = {
        f"s{i}": (0.2 * np.sin(np.arange(n) * (0.01 + 0.003 * i)) * rng.uniform(0.5, 1, n)).astype(
            np.float32
        )
        for i, n in enumerate([3000, 4500, 2500, 6000, 8000, 2100])
    }
    return {
        "rirs": write_data_dir(root / "rirs", rirs),
        "noise": write_data_dir(root / "noise", noise),
        "speech": write_data_dir(root / "speech", speech),
    }


def make_augmenter(sets, rir_prob=0.5, noise_prob=0.8, rirs=True, noise=True) -> Augmenter:
    categories = []
    if noise:
        categories = [
            NoiseCategory(
                "noise", load_augmentation_set(sets["noise"], SR), (0.0, 15.0), (1, 1), 1.0
            ),
            NoiseCategory(
                "speech", load_augmentation_set(sets["speech"], SR), (13.0, 20.0), (3, 7), 1.0
            ),
        ]
    return Augmenter(
        rirs=load_augmentation_set(sets["rirs"], SR) if rirs else None,
        rir_prob=rir_prob,
        noise=categories,
        noise_prob=noise_prob,
    )


# -- plain single-sample reference (numpy, loops, the definitions) ---------------------------


def read_clips(data_dir: Path) -> list[np.ndarray]:
    """Clips in LC_ALL=C id order, read independently of the code under test."""
    wavs = read_dict(data_dir / "wav.scp")
    return [sf.read(wavs[k], dtype="float64")[0] for k in sorted(wavs, key=str.encode)]


def reference_augment_one(x, reverb, rir, category_clips, snr_db, sources) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    length = len(x)
    if reverb:
        peak = int(np.argmax(np.abs(rir)))
        h = rir[peak : peak + SR]  # 1 s cap
        h = h / math.sqrt(np.sum(h**2))
        y = np.convolve(x, h)[:length]
        x = y * math.sqrt(np.mean(x**2) / (np.mean(y**2) + POWER_EPS))
    if category_clips is not None:
        noise = np.zeros(length)
        for clip_index, start in sources:
            clip = category_clips[clip_index]
            segment = np.array([clip[(start + t) % len(clip)] for t in range(length)])
            noise += segment / math.sqrt(np.mean(segment**2) + POWER_EPS)
        speech_power = np.mean(x**2)
        noise_power = np.mean(noise**2)
        snr_linear = 10 ** (snr_db / 10)
        x = x + noise * math.sqrt(speech_power / (snr_linear * (noise_power + POWER_EPS)))
    return x


def test_batched_matches_single_sample_reference(sets):
    aug = make_augmenter(sets, rir_prob=0.5, noise_prob=0.8)
    batch, length = 24, 4000
    g = torch.Generator().manual_seed(5)
    wave = torch.randn(batch, length, generator=g) * torch.linspace(0.01, 1, batch)[:, None]
    params = aug.sample_params(batch, length, torch.Generator().manual_seed(7))
    # The draw must exercise every branch for the comparison to mean something.
    assert params.reverb.any() and (~params.reverb).any()
    assert {-1, 0, 1} <= set(params.category.tolist())
    out = aug.apply(wave, params).numpy()

    rir_clips = read_clips(sets["rirs"])
    clips = [read_clips(sets["noise"]), read_clips(sets["speech"])]
    for b in range(batch):
        cat = int(params.category[b])
        sources = [
            (int(params.source_index[b, k]), int(params.source_start[b, k]))
            for k in range(int(params.num_sources[b]))
        ]
        expected = reference_augment_one(
            wave[b].numpy(),
            bool(params.reverb[b]),
            rir_clips[int(params.rir_index[b])],
            clips[cat] if cat >= 0 else None,
            float(params.snr_db[b]),
            sources,
        )
        scale = np.max(np.abs(expected))
        np.testing.assert_allclose(out[b], expected, rtol=0, atol=1e-4 * scale, err_msg=f"row {b}")


def test_measured_snr_equals_sampled_snr(sets):
    aug = make_augmenter(sets, rirs=False, noise_prob=1.0)
    batch, length = 64, 3200
    wave = torch.randn(batch, length, generator=torch.Generator().manual_seed(1)) * 0.3
    params = aug.sample_params(batch, length, torch.Generator().manual_seed(2))
    added = aug.apply(wave, params).double() - wave.double()
    measured = 10 * torch.log10(wave.double().pow(2).mean(1) / added.pow(2).mean(1))
    assert (params.category >= 0).all()
    assert torch.allclose(measured, params.snr_db, atol=0.1), (measured - params.snr_db).abs().max()
    # Babble rows really sum several sources.
    babble = params.category == 1
    assert babble.any() and (params.num_sources[babble] >= 3).all()


def test_unit_impulse_rir_returns_input(tmp_path):
    impulse = np.zeros(50, dtype=np.float32)
    impulse[7] = 0.5  # delayed and scaled: alignment and unit energy must undo both
    rirs = AugmentationSet(write_data_dir(tmp_path / "rirs", {"impulse": impulse}), SR)
    aug = Augmenter(rirs=rirs, rir_prob=1.0, noise=[], noise_prob=0.0)
    wave = torch.randn(3, 1000, generator=torch.Generator().manual_seed(0))
    out = aug(wave, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, wave, atol=1e-5, rtol=0)


def test_reverb_keeps_power_and_is_not_delayed(sets):
    aug = make_augmenter(sets, rir_prob=1.0, noise=False)
    wave = torch.randn(8, 4000, generator=torch.Generator().manual_seed(3))
    out = aug(wave, torch.Generator().manual_seed(4))
    torch.testing.assert_close(out.pow(2).mean(1), wave.pow(2).mean(1), rtol=1e-4, atol=0)
    for b in range(8):
        xcorr = np.correlate(out[b].numpy(), wave[b].numpy(), mode="full")
        assert int(np.argmax(np.abs(xcorr))) - (wave.shape[1] - 1) == 0


def test_deterministic_with_seeded_generator(sets):
    aug = make_augmenter(sets, rir_prob=0.5, noise_prob=0.8)
    wave = torch.randn(16, 2000, generator=torch.Generator().manual_seed(0))
    a = aug(wave, torch.Generator().manual_seed(11))
    b = aug(wave, torch.Generator().manual_seed(11))
    c = aug(wave, torch.Generator().manual_seed(12))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert aug(wave).shape == wave.shape  # the global generator also works
    # Another crop length on the same augmenter (its layout is rebuilt), then back.
    longer = torch.randn(5, 3000, generator=torch.Generator().manual_seed(1))
    fresh = make_augmenter(sets, rir_prob=0.5, noise_prob=0.8)
    assert torch.equal(
        aug(longer, torch.Generator().manual_seed(3)),
        fresh(longer, torch.Generator().manual_seed(3)),
    )
    assert torch.equal(aug(wave, torch.Generator().manual_seed(11)), a)


def test_rir_spectra_cache_and_prepare_change_nothing(sets, monkeypatch):
    wave = torch.randn(9, 2500, generator=torch.Generator().manual_seed(0))
    cached = make_augmenter(sets, rir_prob=0.8)
    cached.prepare("cpu", 2500)
    assert cached._states[(torch.device("cpu"), 2500)].rir_spectra is not None
    expected = cached(wave, torch.Generator().manual_seed(1))
    monkeypatch.setattr("sslsv.augment.augmenter.RIR_SPECTRA_MAX_BYTES", 0)
    uncached = make_augmenter(sets, rir_prob=0.8)
    out = uncached(wave, torch.Generator().manual_seed(1))
    assert uncached._states[(torch.device("cpu"), 2500)].rir_spectra is None
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)


def test_two_crop_lengths_keep_their_own_layouts(sets):
    """Multi-crop alternates two lengths: each keeps its layout, and a length augments the
    same whatever was augmented in between."""
    aug = make_augmenter(sets, rir_prob=0.8, noise_prob=0.9)
    short = torch.randn(5, 1200, generator=torch.Generator().manual_seed(0))
    long = torch.randn(5, 2500, generator=torch.Generator().manual_seed(1))
    first = aug(short, torch.Generator().manual_seed(2))
    aug(long, torch.Generator().manual_seed(3))
    assert {length for _, length in aug._states} == {1200, 2500}
    torch.testing.assert_close(aug(short, torch.Generator().manual_seed(2)), first)


def held_tensors(aug: Augmenter, device: torch.device) -> list[torch.Tensor]:
    """The distinct tensors the augmenter keeps for ``device`` (its sets and its per-length
    layouts)."""
    found: dict[int, torch.Tensor] = {}
    holders = [aug._devices[device]] + [s for (d, _), s in aug._states.items() if d == device]
    for holder in holders:
        for field in dataclasses.fields(holder):
            value = getattr(holder, field.name)
            for t in value if isinstance(value, list) else [value]:
                if isinstance(t, torch.Tensor):
                    found[id(t)] = t
    return list(found.values())


def held_bytes(aug: Augmenter, device: torch.device) -> int:
    return sum(t.untyped_storage().nbytes() for t in held_tensors(aug, device))


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("lengths", [(2500, 1200), (1200, 2500)])
def test_two_crop_lengths_hold_one_copy_of_the_sets(sets, monkeypatch, device, lengths):
    """Multi-crop prepares two lengths: the RIR set and the noise layout are kept once per
    device (the layout for the longest crop serves the shorter one); a second length adds
    only its RIR spectra, and those only within RIR_SPECTRA_MAX_BYTES for all lengths.
    ("meta" stands for a GPU: moving the sets there makes a copy, but allocates nothing.)"""
    device = torch.device(device)
    longest = max(lengths)
    only_longest = make_augmenter(sets)
    only_longest.prepare(device, longest)
    aug = make_augmenter(sets)
    for length in lengths:
        aug.prepare(device, length)
    assert {length for _, length in aug._states} == set(lengths)
    rir_shape = aug.rirs.shape
    assert sum(t.shape == rir_shape for t in held_tensors(aug, device)) == 1
    spectra = [aug._states[(device, length)].rir_spectra for length in lengths]
    spectra_bytes = [s.untyped_storage().nbytes() for s in spectra]
    assert held_bytes(aug, device) == held_bytes(only_longest, device) + sum(spectra_bytes) - (
        only_longest._states[(device, longest)].rir_spectra.untyped_storage().nbytes()
    )
    assert aug._devices[device].spectra_bytes == sum(spectra_bytes) <= 256 * 2**20
    # Without spectra (a set too big for them, as a full RIR set is): exactly one copy.
    monkeypatch.setattr("sslsv.augment.augmenter.RIR_SPECTRA_MAX_BYTES", 0)
    bare, bare_longest = make_augmenter(sets), make_augmenter(sets)
    for length in lengths:
        bare.prepare(device, length)
    bare_longest.prepare(device, longest)
    assert held_bytes(bare, device) == held_bytes(bare_longest, device)
    # The RIR set (float32); per noise category its clips, a short one with its looped
    # continuation for the longest crop (float32), and each clip's offset (int64).
    expected = bare.rirs.numel() * 4 + sum(
        (clips + torch.where(clips >= longest, 0, longest - 1)).sum() * 4 + len(clips) * 8
        for clips in bare._clip_lengths
    )
    assert held_bytes(bare, device) == int(expected)
    # Spectra budget shared by the lengths: room for the first one only.
    monkeypatch.setattr("sslsv.augment.augmenter.RIR_SPECTRA_MAX_BYTES", spectra_bytes[0])
    tight = make_augmenter(sets)
    for length in lengths:
        tight.prepare(device, length)
    assert [tight._states[(device, n)].rir_spectra is not None for n in lengths] == [True, False]


def test_sets_kept_once_augment_as_a_fresh_augmenter(sets):
    """Whatever lengths came before (a layout rebuilt for a longer crop included), a crop
    length augments exactly as an augmenter that only ever saw that length."""
    aug = make_augmenter(sets, rir_prob=0.7, noise_prob=0.9)
    for step, length in enumerate([1200, 2500, 1200, 4000, 800, 2500]):
        wave = torch.randn(11, length, generator=torch.Generator().manual_seed(step))
        fresh = make_augmenter(sets, rir_prob=0.7, noise_prob=0.9)
        expected = fresh(wave, torch.Generator().manual_seed(length))
        assert torch.equal(aug(wave, torch.Generator().manual_seed(length)), expected)
    assert aug._devices[torch.device("cpu")].length == 4000


@pytest.mark.parametrize("batch", [0, 1, 3, 17])
def test_any_batch_size(sets, batch):
    aug = make_augmenter(sets, rir_prob=0.7, noise_prob=0.9)
    wave = torch.randn(batch, 1234, generator=torch.Generator().manual_seed(batch))
    out = aug(wave, torch.Generator().manual_seed(0))
    assert out.shape == wave.shape and torch.isfinite(out).all()


def test_all_zero_input_and_silent_noise_give_no_nan(sets, tmp_path):
    silent = AugmentationSet(
        write_data_dir(tmp_path / "silent", {"z": np.zeros(800, dtype=np.float32)}), SR
    )
    aug = Augmenter(
        rirs=load_augmentation_set(sets["rirs"], SR),
        rir_prob=1.0,
        noise=[
            NoiseCategory("silence", silent, (0.0, 5.0), (1, 1), 1.0),
            NoiseCategory(
                "speech", load_augmentation_set(sets["speech"], SR), (13.0, 20.0), (3, 7), 1.0
            ),
        ],
        noise_prob=1.0,
    )
    zeros = torch.zeros(6, 2000)
    out = aug(zeros, torch.Generator().manual_seed(0))
    assert torch.isfinite(out).all() and torch.equal(out, zeros)
    speech = torch.randn(6, 2000, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(aug(speech, torch.Generator().manual_seed(2))).all()


def test_input_untouched_and_dtype_kept(sets):
    aug = make_augmenter(sets, rir_prob=1.0, noise_prob=1.0)
    wave = torch.randn(4, 1500, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    before = wave.clone()
    out = aug(wave, torch.Generator().manual_seed(0))
    assert torch.equal(wave, before) and out.dtype == torch.float64
    with pytest.raises(ValueError, match="batch, samples"):
        aug(wave[0])
    with pytest.raises(ValueError, match="CPU"):
        aug.sample_params(2, 100, SimpleNamespace(device=torch.device("cuda")))


def test_sampled_parameters_follow_the_configuration(sets):
    aug = make_augmenter(sets, rir_prob=0.3, noise_prob=0.6)
    aug.categories[1] = NoiseCategory("speech", aug.categories[1].clips, (13.0, 20.0), (3, 7), 3.0)
    n, length = 6000, 4000
    p = aug.sample_params(n, length, torch.Generator().manual_seed(0))
    assert abs(p.reverb.float().mean() - 0.3) < 0.03
    noisy = p.category >= 0
    assert abs(noisy.float().mean() - 0.6) < 0.03
    assert abs((p.category[noisy] == 1).float().mean() - 0.75) < 0.03  # weights 1 : 3
    assert p.rir_index.min() == 0 and p.rir_index.max() == len(aug.rirs) - 1
    for c, (snr_lo, snr_hi) in enumerate([(0, 15), (13, 20)]):
        mine = p.category == c
        assert p.snr_db[mine].min() >= snr_lo and p.snr_db[mine].max() <= snr_hi
        assert p.snr_db[mine].max() - p.snr_db[mine].min() > 0.9 * (snr_hi - snr_lo)
        lengths = aug._clip_lengths[c][p.source_index[mine]]
        start = p.source_start[mine]
        assert (start >= 0).all() and (start < lengths).all()
        long_clip = lengths >= length
        assert (start[long_clip] + length <= lengths[long_clip]).all()
    assert set(p.num_sources[p.category == 1].tolist()) == {3, 4, 5, 6, 7}
    assert set(p.num_sources[p.category == 0].tolist()) == {1}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(sets):
    aug = make_augmenter(sets, rir_prob=0.5, noise_prob=0.8)
    wave = torch.randn(32, 4000, generator=torch.Generator().manual_seed(0))
    cpu = aug(wave, torch.Generator().manual_seed(1))
    gpu = aug(wave.cuda(), torch.Generator().manual_seed(1))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)


def test_fast_fft_size_is_smallest_smooth_size():
    def smooth(n):
        for p in (2, 3, 5):
            while n % p == 0:
                n //= p
        return n == 1

    for n in range(1, 3000):
        expected = next(m for m in range(n, 4 * n + 2) if smooth(m))
        assert _fast_fft_size(n) == expected, n


def test_prepare_rir():
    rir = torch.tensor([0.1, -0.2, 2.0, 1.0, 0.5, 0.25])
    out = prepare_rir(rir, max_samples=3)
    torch.testing.assert_close(out, torch.tensor([2.0, 1.0, 0.5]) / math.sqrt(5.25))
    with pytest.raises(ValueError, match="zeros"):
        prepare_rir(torch.zeros(5), 3)


# -- loading sets ---------------------------------------------------------------------------


def test_augmentation_set_segments_stereo_and_cap(tmp_path):
    rng = np.random.default_rng(0)
    long = rng.standard_normal(SR * 2).astype(np.float32)
    stereo = np.stack([rng.standard_normal(SR), np.ones(SR)], axis=1).astype(np.float32)
    folder = write_data_dir(tmp_path / "d", {"a": long, "b": stereo})
    whole = AugmentationSet(folder, SR)
    assert whole.ids == ["a", "b"]
    np.testing.assert_array_equal(whole.clips[1].numpy(), stereo[:, 0])  # first channel
    assert whole.total_seconds == pytest.approx(3.0)

    (folder / "segments").write_text("a-1 a 0.5 1.0\na-0 a 0.0 0.25\nb-0 b 0.5 -1\n")
    segs = AugmentationSet(folder, SR)
    assert segs.ids == ["a-0", "a-1", "b-0"]
    np.testing.assert_array_equal(segs.clips[0].numpy(), long[: SR // 4])
    np.testing.assert_array_equal(segs.clips[1].numpy(), long[SR // 2 : SR])
    np.testing.assert_array_equal(segs.clips[2].numpy(), stereo[SR // 2 :, 0])

    capped = AugmentationSet(folder, SR, max_seconds=0.8)
    assert capped.total_seconds <= 0.8 and len(capped) >= 1
    assert capped.ids == AugmentationSet(folder, SR, max_seconds=0.8).ids  # deterministic

    (folder / "segments").write_text("a-0 a 0.5\n")
    with pytest.raises(DataError, match=r"segments:1: utterance 'a-0'"):
        AugmentationSet(folder, SR)
    (folder / "segments").write_text("a-0 zz 0 1\n")
    with pytest.raises(DataError, match="'zz', which is not in wav.scp"):
        AugmentationSet(folder, SR)


def test_augmentation_set_errors_name_the_culprit(tmp_path):
    with pytest.raises(DataError, match="no wav.scp"):
        AugmentationSet(tmp_path, SR)
    folder = write_data_dir(tmp_path / "d", {"x": np.zeros(100, np.float32)})
    (folder / "audio files" / "x.wav").write_bytes(b"not audio")
    with pytest.raises(DataError, match="'x': cannot read .*x.wav"):
        AugmentationSet(folder, SR)


def test_augmentation_set_at_another_rate_is_resampled(tmp_path):
    tone = np.sin(np.arange(8000) * 2 * np.pi * 300 / 8000).astype(np.float32)
    folder = write_data_dir(tmp_path / "d8k", {"x": tone}, rate=8000)
    clip = AugmentationSet(folder, SR).clips[0].numpy()
    assert len(clip) == SR
    expected = np.sin(np.arange(SR) * 2 * np.pi * 300 / SR)
    np.testing.assert_allclose(clip[400:-400], expected[400:-400], atol=2e-3)


def augment_config(**section) -> AugmentConfig:
    """An augment: section as a config file gives it: checked, defaults filled in."""
    return config_from_dict({"augment": section}, "<test>").augment


def test_build_from_config(sets):
    cfg = augment_config(
        rir_dir=str(sets["rirs"]),
        rir_prob=0.4,
        noise_prob=0.9,
        noise={
            "noise": {"data_dir": str(sets["noise"])},
            "speech": {"data_dir": str(sets["speech"]), "weight": 2},
            "babble": {"data_dir": str(sets["speech"]), "snr_db": [10, 12], "num_sources": [2, 3]},
        },
    )
    aug = build_augmenter(cfg, SR)
    noise, speech, babble = aug.categories
    assert (speech.snr_db, speech.num_sources, speech.weight) == ((13.0, 20.0), (3, 7), 2.0)
    assert noise.snr_db == (0.0, 15.0) and aug.rir_prob == 0.4 and aug.noise_prob == 0.9
    assert (babble.snr_db, babble.num_sources) == ((10.0, 12.0), (2, 3)) and len(aug.rirs) == 4
    assert "speech" in aug.describe() and "reverb p=0.4" in aug.describe()
    assert build_augmenter(augment_config(enabled=False), SR) is None


def test_build_leaves_out_missing_sets_with_a_warning(sets, tmp_path, caplog):
    cfg = augment_config(
        rir_dir=str(tmp_path / "no rirs"),
        noise={"noise": {"data_dir": str(sets["noise"])}, "music": {"data_dir": "nowhere"}},
    )
    with caplog.at_level(logging.WARNING):
        aug = build_augmenter(cfg, SR)
    assert [c.name for c in aug.categories] == ["noise"] and aug.rir_prob == 0.0
    assert "augment.noise.music" in caplog.text and "augment.rir_dir" in caplog.text


@pytest.mark.parametrize(
    "section,message",
    [
        ({"noise": {"noise": {}}}, "'augment.noise.noise.data_dir' is missing"),
        ({"noise": {"other": {"data_dir": "d"}}}, "'augment.noise.other.snr_db' is required"),
        (
            {"noise": {"noise": {"data_dir": "d", "num_sources": [3, 1]}}},
            r"'augment.noise.noise.num_sources' is \[3, 1\]; it must be a \[low, high\] pair",
        ),
        ({"noise": {"noise": {"data_dir": "d", "weight": 0}}}, "weight' is 0.0; it must be > 0"),
        ({"rir_prob": 1.5}, r"'augment.rir_prob' is 1.5; it must be >= 0 and <= 1"),
    ],
)
def test_bad_augment_sections_are_refused_at_load(section, message):
    with pytest.raises(ConfigError, match=message):
        augment_config(**section)


# -- simulation -------------------------------------------------------------------------------


def test_measure_rt60_on_known_exponential_decay():
    rng = np.random.default_rng(0)
    for rt60 in (0.25, 0.6):
        t = np.arange(int(1.5 * rt60 * SR)) / SR
        rir = rng.standard_normal(len(t)) * 10 ** (-3 * t / rt60)
        assert measure_rt60(rir, SR) == pytest.approx(rt60, rel=0.05)


def test_colored_noise_spectral_slope():
    rng = np.random.default_rng(0)
    for exponent in (0.0, 1.0, 2.0, 1.4):
        noise = colored_noise(SR * 4, exponent, rng)
        assert np.sqrt(np.mean(noise.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)
        power = np.abs(np.fft.rfft(noise)) ** 2
        freqs = np.fft.rfftfreq(len(noise), 1 / SR)
        band = (freqs > 50) & (freqs < 7000)
        slope = np.polyfit(np.log(freqs[band]), np.log(power[band]), 1)[0]
        assert slope == pytest.approx(-exponent, abs=0.1)


@pytest.mark.parametrize(
    "dims, rt60",
    [((4.0, 3.5, 2.7), 0.3), ((8.0, 6.0, 3.0), 0.5), ((15.0, 11.0, 4.0), 0.8)],
)
def test_simulated_rir_rt60(dims, rt60):
    pytest.importorskip("pyroomacoustics")
    room = RoomSpec(dims, rt60, source=(1.5, 1.2, 1.6), mic=(2.6, 2.4, 1.4))
    rir = simulate_rir(room, SR, seed=1)
    assert len(rir) <= SR + 64 and np.argmax(np.abs(rir)) == 32  # 2 ms lead, 1 s cap
    assert measure_rt60(rir, SR) == pytest.approx(rt60, rel=0.3)
    np.testing.assert_array_equal(rir, simulate_rir(room, SR, seed=1))


def test_exp_decay_rir_rt60():
    rng = np.random.default_rng(0)
    rir = exp_decay_rir(0.5, SR, rng)
    assert np.argmax(np.abs(rir)) == 0
    assert measure_rt60(rir, SR) == pytest.approx(0.5, rel=0.15)


def test_sample_room_is_valid():
    rng = np.random.default_rng(0)
    for _ in range(200):
        room = sample_room(rng)
        assert 3 <= room.dims[0] <= 20 and 3 <= room.dims[1] <= 15 and 2.5 <= room.dims[2] <= 5
        assert 0.2 <= room.rt60 <= 0.9
        for pos in (room.source, room.mic):
            assert all(0.5 <= p <= d - 0.5 for p, d in zip(pos, room.dims, strict=True))
        assert math.dist(room.source, room.mic) >= 1.0


def read_set(folder: Path) -> dict[str, bytes]:
    wavs = read_dict(folder / "wav.scp")
    return {utt: Path(path).read_bytes() for utt, path in wavs.items()}


def test_build_small_sets_determinism_and_rerun(tmp_path, caplog):
    rng = np.random.default_rng(0)
    noise_8k = tmp_path / "in" / "fan noise.wav"  # 8 kHz: resampled; space in the name
    noise_8k.parent.mkdir()
    sf.write(noise_8k, 0.1 * rng.standard_normal(8000 * 12), 8000)
    train = write_data_dir(
        tmp_path / "train",
        {f"u{i}": 0.1 * rng.standard_normal(SR * 3).astype(np.float32) for i in range(4)},
    )
    music = tmp_path / "in" / "tune.flac"
    sf.write(music, 0.3 * np.sin(np.arange(SR * 7) * 0.05), SR)
    kwargs = dict(
        num_rirs=5,
        noise_files=[noise_8k],
        num_colored=3,
        babble_from=train,
        num_babble=3,
        music_files=[music],
        chunk_seconds=5.0,
    )
    sets = build_aug_sets(tmp_path / "a", seed=3, **kwargs)
    assert sorted(sets) == ["music", "noise", "rirs", "speech"]
    assert list(read_dict(sets["music"] / "wav.scp")) == ["music-tune-000"]  # 7 s: 5 (+2 dropped)
    for folder in sets.values():
        assert folder.with_name(folder.name + ".stamp").is_file()
        utt2spk = read_dict(folder / "utt2spk")
        assert all(u == s for u, s in utt2spk.items())
        assert read_dict(folder / "spk2utt") == {u: u for u in utt2spk}
        assert list(read_dict(folder / "wav.scp")) == sorted(utt2spk, key=str.encode)
        for path in read_dict(folder / "wav.scp").values():
            assert sf.info(path).samplerate == SR
    noise_ids = list(read_dict(sets["noise"] / "wav.scp"))
    assert noise_ids == [
        "colored-000-white",
        "colored-001-pink",
        "colored-002-brown",
        "noise-fan_noise-000",
        "noise-fan_noise-001",
    ]  # 12 s: 5 + 5 (+2 dropped)
    assert len(read_dict(sets["rirs"] / "wav.scp")) == 5
    assert len(read_dict(sets["speech"] / "wav.scp")) == 3
    info = read_dict(sets["rirs"] / "room_info")
    assert all("measured_rt60=" in v for v in info.values())

    # Built sets load straight into the augmenter.
    aug = build_augmenter(
        augment_config(
            rir_dir=str(sets["rirs"]),
            noise={n: {"data_dir": str(sets[n])} for n in ("noise", "speech")},
        ),
        SR,
    )
    out = aug(torch.randn(4, SR * 2), torch.Generator().manual_seed(0))
    assert torch.isfinite(out).all()

    # Same seed, other folder, two processes: the same audio, byte for byte.
    again = build_aug_sets(tmp_path / "b", seed=3, jobs=2, **kwargs)
    for name in sets:
        assert read_set(sets[name]) == read_set(again[name]), name
    other = build_aug_sets(tmp_path / "c", seed=4, **kwargs)
    assert read_set(other["rirs"]) != read_set(sets["rirs"])

    # A rerun reuses finished sets; other settings, or changed sources (a babble utterance
    # replaced, same path), rebuild the set whole and say what changed.
    built = (sets["rirs"] / "wav.scp").stat().st_mtime_ns
    assert build_rir_set(sets["rirs"], 5, seed=3) is False
    assert (sets["rirs"] / "wav.scp").stat().st_mtime_ns == built
    with caplog.at_level(logging.INFO):
        assert build_rir_set(sets["rirs"], 6, seed=3) is True
    assert "rebuilt: settings (num_rirs 5 -> 6)" in caplog.text
    assert len(read_dict(sets["rirs"] / "wav.scp")) == 6
    first = next(iter(read_dict(train / "wav.scp").values()))
    sf.write(first, np.zeros(SR * 3, dtype=np.float32), SR)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert build_aug_sets(tmp_path / "a", seed=3, **kwargs)["speech"] == sets["speech"]
    assert "speech: rebuilt: sources changed" in caplog.text
    assert "noise: already built from these inputs, reused" in caplog.text
    assert not list((tmp_path / "a").glob(".*tmp*"))  # no temporary folders left
    foreign = tmp_path / "mine"
    foreign.mkdir()
    with pytest.raises(DataError, match="exists but was not made by make_aug_sets"):
        build_rir_set(foreign, 2, seed=0)


def test_noise_set_without_sources_is_refused(tmp_path):
    with pytest.raises(DataError, match="noise files or num_colored"):
        build_noise_set(tmp_path / "noise", [], num_colored=0)
    assert not (tmp_path / "noise").exists()


def test_failed_build_leaves_nothing(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    with pytest.raises(DataError, match="bad.wav"):
        build_noise_set(tmp_path / "out" / "noise", [bad], num_colored=1)
    assert list((tmp_path / "out").iterdir()) == []  # no set, no temporary folder


def test_rir_method_falls_back_without_pyroomacoustics(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pyroomacoustics", None)  # import now fails
    assert rir_method_available("auto") == "exp-decay"
    with pytest.raises(DataError, match="RIR method pyroomacoustics: cannot import it"):
        rir_method_available("pyroomacoustics")
    build_rir_set(tmp_path / "rirs", 2, seed=0)
    info = read_dict(tmp_path / "rirs" / "room_info")
    assert all("method=exp-decay" in v for v in info.values())


def test_cli(tmp_path, caplog):
    from sslsv.bin.make_aug_sets import main

    noise_dir = tmp_path / "noises" / "sub"
    noise_dir.mkdir(parents=True)
    for name in ("hum", "fan"):
        sf.write(noise_dir / f"{name}.wav", 0.1 * np.random.default_rng(0).random(SR * 6), SR)
    out = tmp_path / "aug"
    args = ["--out", str(out), "--num-rirs", "3", "--rir-method", "exp-decay", "--jobs", "1"]
    args += ["--noise-dir", str(tmp_path / "noises"), "--num-colored", "2"]
    with caplog.at_level(logging.INFO):
        assert main(args) == 0
    assert list(read_dict(out / "noise" / "wav.scp")) == [
        "colored-000-white", "colored-001-pink", "noise-fan-000", "noise-hum-000",
    ]  # fmt: skip
    summary = [r.getMessage() for r in caplog.records if "augmentation sets in" in r.getMessage()]
    assert (
        len(summary) == 1 and "rirs (3 clips)" in summary[0] and "not built: speech" in summary[0]
    )
    assert not (out / "speech").exists() and not (out / "music").exists()
    assert main(args) == 0  # rerun: reused
    assert main(args[:-2] + ["--num-colored", "3"]) == 0  # other settings: rebuilt
    assert len([u for u in read_dict(out / "noise" / "wav.scp") if u.startswith("colored")]) == 3
    assert main(["--out", str(out), "--noise-dir", str(tmp_path / "missing")]) == 1


def test_real_noise_files(tmp_path):
    if not SHARED_NOISE.is_dir():
        pytest.skip(f"{SHARED_NOISE} is absent (shared real noise data)")
    folder = tmp_path / "noise"
    build_noise_set(folder, find_audio_files(SHARED_NOISE), num_colored=0)
    ids = list(read_dict(folder / "wav.scp"))
    assert len(ids) >= 6 * 10  # six ~60 s files in 5 s chunks
    noise = NoiseCategory("noise", AugmentationSet(folder, SR), (0.0, 15.0), (1, 1), 1.0)
    aug = Augmenter(rirs=None, rir_prob=0.0, noise=[noise], noise_prob=1.0)
    wave = torch.randn(8, SR * 2, generator=torch.Generator().manual_seed(0)) * 0.1
    params = aug.sample_params(8, SR * 2, torch.Generator().manual_seed(1))
    added = aug.apply(wave, params).double() - wave.double()
    measured = 10 * torch.log10(wave.double().pow(2).mean(1) / added.pow(2).mean(1))
    assert torch.allclose(measured, params.snr_db, atol=0.1)


def test_cli_refuses_an_empty_noise_dir(tmp_path, capsys):
    from sslsv.bin.make_aug_sets import main

    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["--out", str(tmp_path / "aug"), "--num-rirs", "1", "--noise-dir", str(empty)]
    assert main(args) == 1
    assert f"{empty}: no audio files" in capsys.readouterr().err
    assert not (tmp_path / "aug").exists()
