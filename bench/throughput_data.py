"""The test data of ``bench/train_throughput.py``: WAV files of speech-like noise and data
dirs over them, for the training rows (2.5-6 s utterances) and the whole-utterance rows
(4-20 s). Written once per sizes: a later run (or the next part of one device check) with
the same sizes reuses them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sslsv.datadir.io import write_spk2utt  # noqa: E402
from sslsv.fileio import write_table  # noqa: E402
from sslsv.simulation.dsp import colored_noise  # noqa: E402

SAMPLE_RATE = 16000
#: Whole-utterance data: lengths drawn uniformly from this range (VoxCeleb1's test
#: utterances are 4 s and longer, most under 20 s).
WHOLE_SECONDS = (4.0, 20.0)
WHOLE_FILES = 64  # distinct files the whole-utterance data dir cycles over


def speech_like(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Pink noise under a syllable-rate (3-6 Hz) envelope with pauses, peak 0.5."""
    n = round(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    rate = rng.uniform(3.0, 6.0)
    envelope = np.abs(np.sin(np.pi * rate * t + rng.uniform(0, np.pi))) ** 2
    envelope *= np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 2 * np.pi)) > -0.6  # pauses
    audio = colored_noise(n, 1.0, rng) * envelope
    return (0.5 * audio / max(np.abs(audio).max(), 1e-6)).astype(np.float32)


def _write_data_dir(
    root: Path, name: str, params: dict, num_files: int, num_utts: int, seconds: tuple
) -> Path:
    """``num_files`` WAVs of ``seconds`` (a range); a data dir of ``num_utts`` utterances
    cycling over them (the files stay few, while an epoch has enough distinct utterances),
    speakers ``u % 1000`` (labels for the classifier). Kept when ``params`` match the last
    writing: the parts of one device check share the data."""
    data_dir = root / "data" / name
    marker = data_dir / "bench.json"
    if marker.exists() and json.loads(marker.read_text()) == params:
        return data_dir
    rng = np.random.default_rng(params["seed"])
    wav_dir = root / f"wav-{name}"
    wav_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(num_files):
        audio = speech_like(rng.uniform(*seconds), rng)
        path = wav_dir / f"f{i:05d}.wav"
        sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
        files.append((str(path), len(audio) / SAMPLE_RATE))
    wavs, utt2spk, utt2dur = {}, {}, {}
    for u in range(num_utts):
        path, duration = files[u % num_files]
        utt = f"spk{u % 1000:03d}-utt{u:06d}"
        wavs[utt], utt2spk[utt], utt2dur[utt] = path, utt.split("-")[0], f"{duration:.4f}"
    write_table(data_dir / "wav.scp", wavs)
    write_table(data_dir / "utt2spk", utt2spk)
    write_table(data_dir / "utt2dur", utt2dur)
    write_spk2utt(data_dir)
    marker.write_text(json.dumps(params))
    return data_dir


def write_corpus(root: Path, num_files: int, num_utts: int, seed: int) -> Path:
    """The training data dir: ``num_files`` WAVs of 2.5-6 s, ``num_utts`` utterances."""
    params = {"seed": seed, "files": num_files, "utts": num_utts, "seconds": [2.5, 6.0]}
    return _write_data_dir(root, "train", params, num_files, num_utts, (2.5, 6.0))


def write_whole_corpus(root: Path, num_utts: int, seed: int) -> Path:
    """The whole-utterance data dir: ``num_utts`` utterances of 4-20 s."""
    files = min(num_utts, WHOLE_FILES)
    params = {"seed": seed, "files": files, "utts": num_utts, "seconds": list(WHOLE_SECONDS)}
    return _write_data_dir(root, "whole", params, files, num_utts, WHOLE_SECONDS)
