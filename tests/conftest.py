"""Shared fixtures: small data dirs of generated audio (no corpus needed)."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from sslsv.datadir.io import write_spk2utt
from sslsv.fileio import write_table
from sslsv.models import ENCODERS, register_encoder

#: A batch-independent test encoder (no batch norm), so any split of a batch is exact.
MEAN_LINEAR = "test_mean_linear"

if MEAN_LINEAR not in ENCODERS:

    @register_encoder(MEAN_LINEAR)
    class MeanLinear(nn.Module):
        def __init__(self, n_mels: int = 40, embed_dim: int = 16) -> None:
            super().__init__()
            self.embed_dim = embed_dim
            self.proj = nn.Linear(n_mels, embed_dim)

        def forward(self, feats):
            return self.proj(torch.tanh(feats).mean(dim=-1))


REPO = Path(__file__).resolve().parents[1]

#: The files that take longest (the mini recipe end to end is about 6 of the suite's minutes),
#: collected first: the README's command runs the suite in 2 processes, a file to a process
#: (pytest-xdist, --dist loadfile), and a long file that starts last ends last.
SLOWEST_FIRST = ("test_recipe.py", "test_export.py", "test_segments_and_rates.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return SLOWEST_FIRST.index(name) if name in SLOWEST_FIRST else len(SLOWEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file (and of the rest) is kept


SHARED_DATA = REPO.parent / "shared" / "data"


def make_tone_data_dir(root: Path, speakers: int = 4, utts: int = 4, seconds: float = 2.5) -> Path:
    """Speaker k: harmonic tones around its own pitch, with noise; utterances vary."""
    rng = np.random.default_rng(0)
    wav_dir, data_dir = root / "wav dir", root / "data"
    wav_dir.mkdir(parents=True)
    wavs, utt2spk, utt2dur = {}, {}, {}
    for s in range(speakers):
        f0 = 100 + 40 * s
        for u in range(utts):
            n = int(16000 * (seconds + 0.5 * u / utts))
            t = np.arange(n) / 16000
            f = f0 * (1 + 0.05 * rng.standard_normal())
            x = sum(np.sin(2 * np.pi * f * h * t) / h for h in range(1, 6))
            x = 0.1 * x + 0.01 * rng.standard_normal(n)
            utt = f"spk{s}-utt{u}"
            path = wav_dir / f"{utt}.wav"
            sf.write(path, x.astype(np.float32), 16000, subtype="PCM_16")
            wavs[utt], utt2spk[utt], utt2dur[utt] = str(path), f"spk{s}", f"{n / 16000:.4f}"
    write_table(data_dir / "wav.scp", wavs)
    write_table(data_dir / "utt2spk", utt2spk)
    write_table(data_dir / "utt2dur", utt2dur)
    write_spk2utt(data_dir)
    return data_dir


def sine_file(path: Path, rate: int, freq: float, seconds: float, channels: int = 1) -> None:
    """A 0.5-amplitude sine as float WAV; a second channel (-0.3 x) checks that readers take
    the first one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(rate * seconds)) / rate
    x = 0.5 * np.sin(2 * np.pi * freq * t)
    data = np.stack([x, -0.3 * x], axis=1)[:, :channels]
    sf.write(path, data.astype(np.float32), rate, subtype="FLOAT")


@pytest.fixture
def tone_data_dir(tmp_path: Path) -> Path:
    return make_tone_data_dir(tmp_path)
