"""sslsv.inputs: the one normaliser of user audio and protocol options (API, verify, embed,
stage 5's minimum length). No model here: the API's use of it is in test_api.py."""

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sslsv import inputs
from sslsv.config.schema import ExtractConfig, FeaturesConfig
from sslsv.errors import ConfigError, DataError, UserError

FRONT = FeaturesConfig()  # 16 kHz, 25 ms window, 512-point FFT


def speech_like(n: int = 8000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(np.arange(n) / 7) + 0.05 * rng.standard_normal(n)).astype(np.float32)


@pytest.mark.parametrize(
    ("dtype", "subtype"), [(np.int16, "PCM_16"), (np.int32, "PCM_32"), (np.uint8, "PCM_U8")]
)
def test_integer_samples_are_scaled_as_soundfile_reads_them(tmp_path: Path, dtype, subtype):
    """An int16/int32/uint8 array is the float waveform soundfile reads from the PCM file
    holding those samples (before: int16 used unscaled, 32768 times too loud)."""
    path = tmp_path / "x.wav"
    sf.write(path, speech_like(), 16000, subtype=subtype)
    as_ints, _ = sf.read(path, dtype="int16" if dtype == np.uint8 else dtype.__name__)
    if dtype == np.uint8:  # soundfile reads no uint8: the file's 8-bit samples, unsigned
        as_ints = (as_ints.astype(np.int32) // 256 + 128).astype(np.uint8)
    as_float, _ = sf.read(path, dtype="float32")
    got = inputs.waveform(as_ints, None, 16000, "input 0")
    assert got.dtype == np.float32 and got.shape == as_float.shape
    np.testing.assert_array_equal(got, as_float)
    # A tensor is the same array.
    np.testing.assert_array_equal(inputs.waveform(torch.from_numpy(as_ints), None, 16000, "t"), got)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.ones(500, dtype=bool), "bool samples"),
        (torch.ones(500, dtype=torch.bool), "bool samples"),
        (np.ones(500, dtype=np.complex64), "complex samples"),
        (torch.ones(500, dtype=torch.complex64), "complex samples"),
        (np.ones(500, dtype=np.int64), "int64 samples have no standard full scale"),
        (np.array(["a", "b"]), "is not audio"),
        (b"RIFF....WAVEfmt ", "bytes are neither a path nor samples"),
        ((x for x in range(500)), "generator of object is not audio"),
        (None, "is not audio"),
        (0.5, r"got shape \(\)"),
        (np.zeros((2, 3, 500)), r"got shape \(2, 3, 500\)"),
        (np.zeros((500, 2)), r"soundfile's \(samples, channels\)\? give x\[:, 0\]"),
        ([[0.1] * 500, [0.2] * 3], "not an array of samples"),
        (np.array([0.1, np.nan] * 300), "non-finite"),
        (np.array([1e39] * 600), "non-finite"),  # inf in float32
        (np.zeros(0, dtype=np.float32), "no audio samples"),
    ],
)
def test_what_is_not_audio_is_one_named_error(value, match):
    with pytest.raises(DataError, match=match) as e:
        inputs.waveform(value, None, 16000, "input 2")
    assert str(e.value).startswith("input 2: ") and "\n" not in str(e.value)


def test_channels_first_keeps_the_first_channel_and_bfloat16_converts():
    x = speech_like()
    stereo = np.stack([x, np.zeros_like(x)])
    np.testing.assert_array_equal(inputs.waveform(stereo, None, 16000, "s"), x)
    np.testing.assert_array_equal(inputs.waveform(torch.from_numpy(stereo), None, 16000, "s"), x)
    half = torch.from_numpy(x).bfloat16()
    np.testing.assert_array_equal(inputs.waveform(half, None, 16000, "h"), half.float().numpy())
    # A list of numbers is an array-like of samples; float64 becomes float32.
    np.testing.assert_array_equal(inputs.waveform(x.tolist(), None, 16000, "l"), x)


def test_loud_float_samples_are_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="sslsv.inputs"):
        inputs.waveform(speech_like() * 32768, None, 16000, "input 0")
    assert "full scale is 1.0" in caplog.text


@pytest.mark.parametrize(
    ("rate", "match"),
    [
        (0, "outside 1000 to 384000 Hz"),
        (-16000, "outside"),
        (1, "outside"),
        (10**7, "outside"),
        (16000.5, "not a whole number"),
        (float("nan"), "not a whole number"),
        (True, "not a number of Hz"),
        ("16000", "not a number of Hz"),
    ],
)
def test_a_sample_rate_is_a_whole_number_in_range(rate, match):
    with pytest.raises(DataError, match=match):
        inputs.check_rate(rate, 16000)


def test_sane_sample_rates_and_resampling():
    assert inputs.check_rate(None, 16000) == 16000
    assert inputs.check_rate(np.int64(8000), 16000) == 8000
    assert inputs.check_rate(44100.0, 16000) == 44100
    assert inputs.MIN_RATE == 1000  # features.sample_rate's minimum, read from the schema
    assert inputs.waveform(speech_like(4000), 8000, 16000, "x").shape == (8000,)


def test_protocol_options_take_the_config_ranges():
    base, front = ExtractConfig(), FRONT
    assert inputs.protocol(base, front) == base
    got = inputs.protocol(base, front, crop_seconds=np.float32(1.5), num_crops=np.int64(3))
    assert (got.crop_seconds, got.num_crops, got.batch_size) == (1.5, 3, 256)
    for option, value, match in [
        ("num_crops", 0, "'num_crops' is 0; it must be >= 1"),
        ("batch_size", 0, "'batch_size' is 0; it must be >= 1"),
        ("crop_seconds", -1, "'crop_seconds' is -1.0; it must be >= 0"),
        ("crop_seconds", float("nan"), "'crop_seconds' is nan"),
        ("num_crops", 2.5, "'num_crops' must be int"),
        ("num_crops", True, "'num_crops' must be int"),
    ]:
        with pytest.raises(ConfigError, match=match):
            inputs.protocol(base, front, **{option: value})
    with pytest.raises(DataError, match="unknown protocol option"):
        inputs.protocol(base, front, crops=3)
    with pytest.raises(DataError, match=r"crop_seconds 0.001: 16 samples .*\(400 samples, 25 ms\)"):
        inputs.protocol(base, front, crop_seconds=0.001)


def test_the_minimum_length_is_one_front_end_window():
    assert inputs.min_samples(FRONT) == 400  # the 25 ms window
    wide_fft = FeaturesConfig(n_fft=1024, win_length=200)
    assert inputs.min_samples(wide_fft) == 513  # centred frames reflect-pad 512 samples
    assert inputs.min_frames(FRONT) == 3
    inputs.check_length(400, FRONT, "u")
    with pytest.raises(DataError, match=r"^utt 'a': 256 samples \(16 ms\) at 16000 Hz"):
        inputs.check_length(256, FRONT, "utt 'a'")
    with pytest.raises(DataError, match="2 frames at 16000 Hz.*3 frames"):
        inputs.check_length(2, FRONT, "utt 'a'", frames=True)


def test_silence_is_refused_or_logged(caplog):
    quiet = np.zeros(16000, dtype=np.float32)
    with pytest.raises(DataError, match=r"^a.wav: digitally silent \(RMS below -70 dBFS\)"):
        inputs.check_usable(quiet, FRONT, "a.wav")
    with caplog.at_level(logging.WARNING, logger="sslsv.inputs"):
        inputs.check_usable(quiet, FRONT, "a.wav", on_silence="warn")
    assert "a.wav: digitally silent" in caplog.text
    inputs.check_usable(speech_like(), FRONT, "a.wav")
    with pytest.raises(UserError, match="on_silence 'ignore'"):
        inputs.check_usable(speech_like(), FRONT, "a.wav", on_silence="ignore")


def test_files_are_named_and_their_rates_checked(tmp_path: Path):
    slow = tmp_path / "slow.wav"
    sf.write(slow, speech_like(), 1, subtype="FLOAT")  # a header claiming 1 Hz
    with pytest.raises(DataError, match=r"slow.wav: sample rate 1 Hz, outside 1000 to"):
        inputs.waveform(slow, None, 16000, "input 0")
    short = tmp_path / "short.wav"
    sf.write(short, speech_like(16), 16000, subtype="FLOAT")
    with pytest.raises(DataError, match=r"short.wav: 16 samples \(1 ms\)"):
        inputs.user_audio(short, None, FRONT, "input 0")
    with pytest.raises(DataError, match="an empty path"):
        inputs.waveform("", None, 16000, "input 0")
    # A path-like that spells the path as bytes is a path.
    good = tmp_path / "good.wav"
    sf.write(good, speech_like(), 16000, subtype="FLOAT")

    class BytesPath:
        def __fspath__(self) -> bytes:
            return bytes(good)

    np.testing.assert_array_equal(inputs.waveform(BytesPath(), None, 16000, "x"), speech_like())
