"""The one audio reader (sslsv.audio): spans of recordings, resampling, first channel,
header probes and the audio-file walker."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import sine_file

from sslsv.audio import (
    INT16_SCALE,
    AudioSource,
    find_audio_files,
    probe_audio_files,
    read_audio,
    read_crop,
    read_crops,
    resample,
    to_int16,
)
from sslsv.errors import DataError

RATE = 16000


@pytest.mark.parametrize(
    "rate,target,freq",
    [(8000, 16000, 300.0), (22050, 16000, 1000.0), (44100, 16000, 440.0), (16000, 8000, 300.0)],
)
def test_readers_resample(tmp_path: Path, rate: int, target: int, freq: float) -> None:
    """A file at another rate reads at the asked one: the whole file is the band-limited sine
    sampled at the target rate (checked against the formula), and a crop equals the same
    span of the whole file read and resampled."""
    path = tmp_path / "x.wav"
    sine_file(path, rate, freq, 3.1, channels=2)
    whole = read_audio(str(path), sample_rate=target)
    assert whole.dtype == np.float32 and len(whole) == round(3.1 * rate) * target // rate
    inner = np.arange(400, len(whole) - 400)  # away from the file's edges
    expected = 0.5 * np.sin(2 * np.pi * freq * inner / target)
    np.testing.assert_allclose(whole[inner], expected, atol=2e-3)
    crop = 2 * target
    for start in (0, 1, 7, 12345, len(whole) - crop - 1, len(whole) - crop, len(whole)):
        got = read_crop(str(path), start, crop, sample_rate=target)
        first = min(start, len(whole) - crop)  # a start too late reads the last 2 s
        assert got.shape == (crop,) and got.dtype == np.float32
        np.testing.assert_allclose(got, whole[first : first + crop], atol=1e-5)
    # A file shorter than the crop loops, as at the file's own rate.
    sine_file(path, rate, freq, 0.5)
    short = read_audio(str(path), sample_rate=target)
    looped = read_crop(str(path), 0, 20000, sample_rate=target)
    np.testing.assert_array_equal(looped, np.resize(short, 20000))


def test_readers_unchanged_at_the_files_rate(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    sine_file(path, RATE, 440.0, 1.0, channels=2)
    raw = sf.read(str(path), dtype="float32")[0][:, 0]
    np.testing.assert_array_equal(read_audio(str(path), sample_rate=RATE), raw)
    np.testing.assert_array_equal(read_crop(str(path), 100, 4000, sample_rate=RATE), raw[100:4100])
    np.testing.assert_array_equal(read_crop(str(path), 15000, 4000, sample_rate=RATE), raw[-4000:])
    looped = read_crop(str(path), 0, 40000, sample_rate=RATE)
    np.testing.assert_array_equal(looped, np.resize(raw, 40000))


@pytest.mark.parametrize("rate", [RATE, 22050])
def test_a_span_reads_as_the_same_span_cut_into_its_own_file(tmp_path: Path, rate: int) -> None:
    """What a segments file means: the span [start, end) of a recording is read (whole or
    cropped, resampled or not) exactly as a file holding just those samples."""
    rng = np.random.default_rng(3)
    audio = (0.1 * rng.standard_normal((rate * 4, 2))).astype(np.float32)
    recording = tmp_path / "rec.wav"
    sf.write(recording, audio, rate, subtype="FLOAT")
    for start, end in ((0.0, 1.5), (0.73, 3.2), (2.5, None), (3.9, 4.0), (1.0, 9.0)):
        first = round(start * rate)
        stop = len(audio) if end is None else min(len(audio), round(end * rate))
        cut = tmp_path / f"cut-{start}.wav"
        sf.write(cut, audio[first:stop], rate, subtype="FLOAT")
        span = AudioSource(str(recording), start, end)
        whole = read_audio(span, sample_rate=RATE)
        np.testing.assert_array_equal(whole, read_audio(cut, sample_rate=RATE))
        for crop_start in (0, 5, len(whole) // 3, len(whole)):
            for length in (800, len(whole) + 300):
                np.testing.assert_array_equal(
                    read_crop(span, crop_start, length, sample_rate=RATE),
                    read_crop(cut, crop_start, length, sample_rate=RATE),
                )


@pytest.mark.parametrize("rate", [RATE, 22050, 8000])
@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_read_crops_are_read_crop_of_each(tmp_path: Path, rate: int, subtype: str) -> None:
    """Several crops from one open equal one read_crop each (whole files and segments, at the
    training rate or resampled; overlapping, late, and longer-than-the-utterance crops), as
    float32 and as int16."""
    rng = np.random.default_rng(rate)
    path = tmp_path / "rec.wav"
    sf.write(path, (0.3 * rng.standard_normal((3 * rate, 2))).astype(np.float32), rate,
             subtype=subtype)  # fmt: skip
    plans = [
        [(0, 8000)],
        [(100, 16000), (5000, 16000), (200, 8000), (3000, 8000), (7000, 8000), (99999, 8000)],
        [(17, 32000), (40000, 70000), (0, 70000), (12345, 4000)],  # long ones loop
        [(1, 4000), (20000, 4000)],  # apart: read one by one
    ]
    for source in (AudioSource(str(path)), AudioSource(str(path), 0.37, 2.2),
                   AudioSource(str(path), 2.5, None)):  # fmt: skip
        for crops in plans:
            floats = read_crops(source, crops, sample_rate=RATE)
            ints = read_crops(source, crops, sample_rate=RATE, dtype=np.int16)
            assert len(floats) == len(ints) == len(crops)
            for (start, length), got, got16 in zip(crops, floats, ints):
                one = read_crop(source, start, length, sample_rate=RATE)
                assert got.dtype == np.float32 and got16.dtype == np.int16
                assert got.shape == got16.shape == (length,)
                np.testing.assert_array_equal(got, one)
                np.testing.assert_array_equal(got16, to_int16(one))
                if subtype == "PCM_16" and rate == RATE:  # read as int16: the file's samples
                    np.testing.assert_array_equal(got16 / np.float32(INT16_SCALE), one)
    assert read_crops(path, [], sample_rate=RATE) == []


def test_to_int16_rounds_to_the_nearest_step_and_clips() -> None:
    step = 1 / INT16_SCALE
    x = np.array([0.0, 0.4 * step, 0.6 * step, -0.6 * step, 0.5, -1.0, 1.0, 1.7, -1.2, 1 - step])
    np.testing.assert_array_equal(
        to_int16(x.astype(np.float32)), [0, 0, 1, -1, 16384, -32768, 32767, 32767, -32768, 32767]
    )
    values = np.random.default_rng(0).uniform(-1, 1 - step, 10000).astype(np.float32)
    assert np.abs(to_int16(values) / INT16_SCALE - values).max() <= step / 2


def test_read_errors_name_the_utterance_and_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    with pytest.raises(DataError, match=r"utterance 'u1': cannot read .*bad.wav"):
        read_audio(bad, sample_rate=RATE, utt="u1")
    sine_file(tmp_path / "ok.wav", RATE, 300.0, 1.0)
    past_the_end = AudioSource(str(tmp_path / "ok.wav"), 2.0, 3.0)
    with pytest.raises(DataError, match=r"utterance 'u2': .*ok.wav \[2 s, 3 s\) is empty"):
        read_crop(past_the_end, 0, 100, sample_rate=RATE, utt="u2")


def test_resample_keeps_a_tone_in_band() -> None:
    t = np.arange(8000) / 8000
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    up = resample(tone, 8000, 16000)
    assert len(up) == 16000
    np.testing.assert_allclose(
        up[800:-800], np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)[800:-800], atol=2e-3
    )


def test_parallel_probe_matches_serial(tmp_path: Path) -> None:
    paths = []
    for i in range(300):
        path = tmp_path / f"{i}.wav"
        sf.write(path, np.zeros(100 + i, dtype=np.int16), RATE)
        paths.append(str(path))
    paths.append(str(tmp_path / "missing.wav"))
    serial = probe_audio_files(paths, nj=1)
    assert probe_audio_files(paths, nj=2) == serial
    assert [i.frames for i in serial[:-1]] == [100 + i for i in range(300)]
    assert serial[-1].error


def test_find_audio_files_follows_links_once_and_skips_hidden(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for rel in ("b/x.wav", "a/y.FLAC", "a/z.ogg", "a/.hidden.wav", ".dot/w.wav", "a/notes.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")
    os.symlink(root / "b", root / "a" / "link-to-b")
    os.symlink(root, root / "b" / "loop")  # a link loop ends
    found = [p.relative_to(root).as_posix() for p in find_audio_files(root)]
    # Folders in C order: b's file is reached through the link first, then b is not read again.
    assert found == ["a/link-to-b/x.wav", "a/y.FLAC", "a/z.ogg"]
    with pytest.raises(DataError, match="not a folder"):
        find_audio_files(root / "a" / "y.FLAC")
