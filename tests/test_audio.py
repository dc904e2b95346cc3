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
    AudioSource,
    find_audio_files,
    probe_audio_files,
    read_audio,
    read_crop,
    resample,
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
