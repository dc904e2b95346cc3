"""egs/voxceleb stage 0 end to end on fake corpora in the exact official layouts, and the
official trial-list download (never touching the network)."""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import shutil
import socket
import subprocess
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO

import sslsv.corpora.download
import sslsv.corpora.voxceleb
from sslsv.bin import prepare_data
from sslsv.corpora.download import download_file
from sslsv.corpora.voxceleb import (
    VOXCELEB1_META_URL,
    VOXCELEB1_TRIAL_LISTS,
    VOXCELEB1_TRIAL_MD5,
    download_voxceleb1_trial_list,
    prepare_voxceleb1,
)
from sslsv.datadir.io import read_segments, read_trials, read_wav_scp
from sslsv.datadir.validate import validate_data_dir
from sslsv.errors import DataError
from sslsv.fileio import read_dict

RATE = 16000
HAVE_FFMPEG = shutil.which("ffmpeg") is not None
needs_ffmpeg = pytest.mark.skipif(
    not HAVE_FFMPEG,
    reason="ffmpeg not installed: VoxCeleb2 m4a decoding in stage 0 not tested "
    "(apt-get install ffmpeg)",
)
STAGE0_SH = (REPO / "egs" / "voxceleb" / "local" / "data.sh").read_text()

# VoxCeleb1: dev speakers and test speakers in one wav/ tree, as vox1_dev_wav + vox1_test_wav
# unpack; a video id starting with '-' (they exist) puts '-' in the middle of utterance ids.
VOX1 = {
    "id10001": ("1zcIwhmdeo4", "7w0IBEWc9Qw"),
    "id10002": ("-8x_hy4o1qw",),
    "id10270": ("5r0dWxy17C8", "x6uYqmx31kE"),
    "id10271": ("1gtz-CUIygI",),
}
VOX2 = {"id00012": ("21Uxsk56VDQ", "2DLq_Kkc1r8"), "id00015": ("0fijmz4vTVU",)}


# ----------------------------------------------------------------------------- fake corpora


def write_noise(path: Path, seconds: float, rate: int = RATE, channels: int = 1, seed: int = 0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    data = (0.1 * rng.standard_normal((round(seconds * rate), channels))).astype(np.float32)
    sf.write(path, data if channels > 1 else data[:, 0], rate, subtype="PCM_16")


def make_voxceleb1(root: Path) -> list[str]:
    """``wav/idXXXXX/VIDEO/NNNNN.wav`` and the three cleaned lists, official format, beside
    ``wav/``. Returns the relative paths of the audio files."""
    rels = []
    for s, (spk, videos) in enumerate(VOX1.items()):
        for v, video in enumerate(videos):
            for n in (1, 2):
                rel = f"{spk}/{video}/{n:05d}.wav"
                write_noise(root / "wav" / rel, 0.6 + 0.05 * n, seed=100 * s + 10 * v + n)
                rels.append(rel)
    test = [r for r in rels if r.startswith(("id10270", "id10271"))]
    lines = {
        "veri_test2.txt": [(1, test[0], test[3]), (0, test[0], test[4]), (1, test[5], test[4])],
        "list_test_all2.txt": [(1, rels[0], rels[2]), (0, rels[1], rels[4]), (0, rels[9], rels[0])],
        "list_test_hard2.txt": [(1, rels[3], rels[1]), (0, rels[4], rels[5])],
    }
    for name, rows in lines.items():
        (root / name).write_text("".join(f"{y} {a} {b}\n" for y, a, b in rows))
    return rels


def make_voxceleb2(root: Path, work: Path, cache: Path | None = None) -> dict[str, float]:
    """``dev/aac/idXXXXX/VIDEO/NNNNN.m4a`` (and a ``test/aac`` part stage 0 must ignore).

    With ffmpeg the m4a files are real AAC (44.1 kHz stereo sources, so decoding must down-mix
    and resample); without, ``cache`` is pre-filled with the decoded WAVs, which stage 0
    reuses (the m4a files are then placeholders it must not need to open). Returns
    relative path (no extension) -> duration in seconds.
    """
    made = {}
    for s, (spk, videos) in enumerate(VOX2.items()):
        for v, video in enumerate(videos):
            for n in range(1, 3 if v == 0 else 2):
                rel = f"{spk}/{video}/{n:05d}"
                m4a = root / "dev" / "aac" / f"{rel}.m4a"
                m4a.parent.mkdir(parents=True, exist_ok=True)
                seconds = 0.7 + 0.1 * n
                if cache is None:
                    src = work / f"{s}{v}{n}.wav"
                    write_noise(src, seconds, rate=44100, channels=2, seed=s * 10 + v + n)
                    subprocess.run(
                        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(src), "-c:a",
                         "aac", str(m4a)],
                        check=True,
                    )  # fmt: skip
                else:
                    m4a.write_bytes(b"placeholder: stage 0 must reuse the cached wav")
                    write_noise(cache / f"{rel}.wav", seconds, seed=s * 10 + v + n)
                made[rel] = seconds
    other = root / "test" / "aac" / "id09999" / "abcdefghijk" / "00001.m4a"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"VoxCeleb2 test part: not imported into vox2_dev")
    return made


MUSAN = {
    ("noise", "free-sound", "noise-free-sound-0000"): 7.5,  # chunks [0, 6) [6, 7.5)
    ("noise", "sound-bible", "noise-sound-bible-0003"): 6.3,  # 0.3 s tail joins: [0, 6.3)
    ("speech", "librivox", "speech-librivox-0011"): 2.0,
    ("music", "fma-western-art", "music-fma-wa-0002"): 13.0,  # [0, 6) [6, 12) [12, 13)
}


def make_musan(root: Path) -> None:
    for i, ((category, source, name), seconds) in enumerate(MUSAN.items()):
        write_noise(root / category / source / f"{name}.wav", seconds, seed=i)
        (root / category / source / "LICENSE").write_text("license text\n")
    (root / "README").write_text("MUSAN\n")


RIRS = [("smallroom", "Room001", 1), ("smallroom", "Room001", 2), ("mediumroom", "Room034", 1),
        ("largeroom", "Room120", 7)]  # fmt: skip


def make_rirs(root: Path) -> None:
    for i, (size, room, n) in enumerate(RIRS):
        write_noise(root / "simulated_rirs" / size / room / f"{room}-{n:05d}.wav", 0.3, seed=i)
    (root / "simulated_rirs" / "smallroom" / "rir_list").write_text("list\n")
    write_noise(root / "real_rirs_isotropic_noises" / "RVB2014_type1_rir_largeroom1_near.wav", 0.3)
    write_noise(root / "pointsource_noises" / "noise-free-sound-0001.wav", 0.3)


# ----------------------------------------------------------------------------- running it


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    """A recipe folder of links to egs/voxceleb's files (stage 0 writes into its own folder)."""
    work = tmp_path / "vox recipe"
    work.mkdir()
    for entry in (REPO / "egs" / "voxceleb").iterdir():
        if entry.name not in ("data", "exp", "feats"):  # outputs of a run there, if any
            os.symlink(entry, work / entry.name)
    return work


def run_stage0(recipe: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = env or {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        ["bash", str(recipe / "run.sh"), "--stage", "0", "--stop-stage", "0", "--nj", "2", *args],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    return result


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def c_sorted(keys: list[str]) -> list[str]:
    """Order of ``LC_ALL=C sort``, from the sort program itself (an independent reference)."""
    done = subprocess.run(
        ["sort"], input="".join(f"{k}\n" for k in keys), capture_output=True, text=True,
        env={**os.environ, "LC_ALL": "C"}, check=True,
    )  # fmt: skip
    return done.stdout.splitlines()


def check_core_files(d: Path, expected: dict[str, tuple[str, Path]], session: bool) -> None:
    """wav.scp, utt2spk, spk2utt, utt2dur (and utt2session) of ``d`` against ``expected``:
    utt -> (speaker, audio file); order checked against the sort program."""
    validate_data_dir(d)  # including: every audio file exists
    order = c_sorted(list(expected))
    for name in ("wav.scp", "utt2spk", "utt2dur", *(["utt2session"] if session else [])):
        assert [line.split(" ", 1)[0] for line in lines_of(d / name)] == order, name
    assert read_wav_scp(d / "wav.scp") == {u: str(p) for u, (_, p) in expected.items()}
    assert read_dict(d / "utt2spk") == {u: s for u, (s, _) in expected.items()}
    spk2utt: dict[str, list[str]] = {}
    for utt in order:
        spk2utt.setdefault(expected[utt][0], []).append(utt)
    assert [line.split(" ", 1)[0] for line in lines_of(d / "spk2utt")] == c_sorted(list(spk2utt))
    assert {k: v.split() for k, v in read_dict(d / "spk2utt").items()} == spk2utt
    for utt, value in read_dict(d / "utt2dur").items():
        info = sf.info(str(expected[utt][1]))
        assert float(value) == info.frames / info.samplerate
    if session:
        # utt id = speaker-video-file, session = video
        assert read_dict(d / "utt2session") == {u: p.parent.name for u, (_, p) in expected.items()}
    assert (d / "excluded.txt").read_text() == ""  # nothing dropped


def check_official_trials(d: Path, vox1_root: Path) -> None:
    """trials_O/E/H converted line for line, in order, from the official lists."""
    for kind, name in (("O", "veri_test2.txt"), ("E", "list_test_all2.txt"),
                       ("H", "list_test_hard2.txt")):  # fmt: skip
        source = lines_of(vox1_root / name)
        written = lines_of(d / f"trials_{kind}")
        assert len(written) == len(source)
        for out, src in zip(written, source):
            label, a, b = src.split(" ")
            ids = ["-".join(Path(x).with_suffix("").parts) for x in (a, b)]
            assert out == f"{ids[0]} {ids[1]} {'target' if label == '1' else 'nontarget'}"


def check_mean_subset(data: Path, mean_utts: int) -> None:
    """vox2_dev_mean = every k-th line of vox2_dev/utt2spk, k = total // mean_utts."""
    utts = [line.split()[0] for line in lines_of(data / "vox2_dev" / "utt2spk")]
    k = max(1, len(utts) // mean_utts)
    want = [u for i, u in enumerate(utts, 1) if i % k == 0]
    assert [line.split()[0] for line in lines_of(data / "vox2_dev_mean" / "utt2spk")] == want
    validate_data_dir(data / "vox2_dev_mean")


def aug_log_line(stderr: str) -> set[str]:
    """The set names on the recipe's one 'augmentation sets in use:' log line."""
    found = re.findall(r"augmentation sets in use:(.*)", stderr)
    assert len(found) == 1, stderr[-2000:]
    return set(re.findall(r"\b(rirs|noise|speech|music)\b", found[0]))


def num_rirs_option() -> list[str]:
    # Simulating the default 200 rooms takes ~25 s; run.sh passes --num-rirs on to stage 0.
    return ["--num-rirs", "4"] if re.search(r"^num_rirs=", STAGE0_SH, re.M) else []


@needs_ffmpeg
def test_stage0_with_musan_and_rirs(recipe: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "my corpora"  # a space in every corpus path
    vox1, vox2 = corpus / "Vox Celeb1", corpus / "Vox Celeb2"
    musan, rirs = corpus / "musan", corpus / "RIRS_NOISES"
    cache = corpus / "vox2 wav cache"
    rels = make_voxceleb1(vox1)
    made = make_voxceleb2(vox2, tmp_path)
    make_musan(musan)
    make_rirs(rirs)
    result = run_stage0(
        recipe, "--voxceleb1-root", str(vox1), "--voxceleb2-root", str(vox2),
        "--wav-cache", str(cache), "--musan-root", str(musan), "--rirs-root", str(rirs),
        "--mean-utts", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = recipe / "data"

    expected = {r[:-4].replace("/", "-"): (r.split("/")[0], vox1 / "wav" / r) for r in rels}
    check_core_files(data / "vox1", expected, session=True)
    check_official_trials(data / "vox1", vox1)

    expected = {r.replace("/", "-"): (r.split("/")[0], cache / f"{r}.wav") for r in made}
    check_core_files(data / "vox2_dev", expected, session=True)
    for rel, seconds in made.items():
        info = sf.info(str(cache / f"{rel}.wav"))
        assert (info.samplerate, info.channels, info.subtype) == (RATE, 1, "PCM_16")
        assert abs(info.duration - seconds) < 0.05  # AAC frames pad a little at most
    assert sorted(p.relative_to(cache) for p in cache.rglob("*") if p.is_file()) == sorted(
        Path(f"{r}.wav") for r in made
    )  # decoded once, nothing else (no temporary files, no test part)
    check_mean_subset(data, 2)

    for category in ("noise", "speech", "music"):
        d = data / f"musan_{category}"
        validate_data_dir(d)
        files = {n: s for (c, src, n), s in MUSAN.items() if c == category}
        sources = {n: musan / c / src / f"{n}.wav" for (c, src, n) in MUSAN if c == category}
        assert read_wav_scp(d / "wav.scp") == {n: str(p) for n, p in sources.items()}
        want = {}
        for name, seconds in files.items():
            # 6 s chunks (prepare_data.sh --chunk-seconds 6); a tail under min-duration
            # (0.5 s) joins the previous chunk.
            bounds = [6.0 * i for i in range(math.ceil(seconds / 6))] + [seconds]
            if len(bounds) > 2 and bounds[-1] - bounds[-2] < 0.5:
                bounds.pop(-2)
            for i, (start, end) in enumerate(zip(bounds, bounds[1:])):
                want[f"{name}-{i:04d}"] = (name, start, end)
        segments = read_segments(d / "segments")
        assert list(segments) == c_sorted(list(want))
        assert {u: s.recording for u, s in segments.items()} == {
            u: r for u, (r, _, _) in want.items()
        }
        for utt, (_, start, end) in want.items():
            assert (segments[utt].start, segments[utt].end) == pytest.approx((start, end))
        assert read_dict(d / "utt2spk") == {u: r for u, (r, _, _) in want.items()}
        durations = {u: float(v) for u, v in read_dict(d / "utt2dur").items()}
        assert durations == pytest.approx({u: e - s for u, (_, s, e) in want.items()})

    validate_data_dir(data / "rirs")
    assert read_dict(data / "rirs" / "utt2spk") == {
        f"{size}-{room}-{n:05d}": f"{size}-{room}" for size, room, n in RIRS
    }  # only the simulated rooms: no real RIRs, no point-source noises

    links = {k: os.readlink(data / "aug" / k) for k in ("noise", "speech", "music", "rirs")}
    assert links == {"noise": "../musan_noise", "speech": "../musan_speech",
                     "music": "../musan_music", "rirs": "../rirs"}  # fmt: skip
    assert sorted(os.listdir(data / "aug")) == ["music", "noise", "rirs", "speech"]
    for kind in links:
        validate_data_dir(data / "aug" / kind)
    assert not (data / "aug_simulated").exists()
    assert aug_log_line(result.stderr) == {"music", "noise", "rirs", "speech"}


def test_stage0_without_musan_rirs_uses_simulated_sets(recipe: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "my corpora"
    vox1, vox2, cache = corpus / "Vox Celeb1", corpus / "Vox Celeb2", corpus / "wav cache"
    rels = make_voxceleb1(vox1)
    made = make_voxceleb2(vox2, tmp_path, cache=cache)  # decoded already: no ffmpeg needed
    result = run_stage0(
        recipe, "--voxceleb1-root", str(vox1), "--voxceleb2-root", str(vox2),
        "--wav-cache", str(cache), *num_rirs_option(),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = recipe / "data"
    assert f"0 files to decode, {len(made)} already done" in result.stderr

    expected = {r[:-4].replace("/", "-"): (r.split("/")[0], vox1 / "wav" / r) for r in rels}
    check_core_files(data / "vox1", expected, session=True)
    check_official_trials(data / "vox1", vox1)
    expected = {r.replace("/", "-"): (r.split("/")[0], cache / f"{r}.wav") for r in made}
    check_core_files(data / "vox2_dev", expected, session=True)
    check_mean_subset(data, 20000)  # fewer utterances than mean_utts: all of them

    links = {k: os.readlink(data / "aug" / k) for k in os.listdir(data / "aug")}
    assert links == {k: f"../aug_simulated/{k}" for k in ("rirs", "noise", "speech")}
    for kind in links:
        validate_data_dir(data / "aug" / kind)
    if num_rirs_option():
        assert len(lines_of(data / "aug" / "rirs" / "wav.scp")) == 4
    # Babble comes from the training speech, one chunk per utterance when there are few.
    assert len(lines_of(data / "aug" / "speech" / "wav.scp")) == len(made)
    assert aug_log_line(result.stderr) == {"noise", "rirs", "speech"}
    assert not [p for p in data.iterdir() if p.name.startswith("musan")]


def test_stage0_missing_roots_and_bad_download_value(recipe: Path, tmp_path: Path) -> None:
    result = run_stage0(recipe, "--voxceleb1-root", str(tmp_path))
    assert result.returncode != 0
    assert "stage 0 needs --voxceleb1-root, --voxceleb2-root and --wav-cache" in result.stderr
    script = recipe / "local" / "prepare_data.sh"
    done = subprocess.run(
        ["bash", str(script), "--voxceleb1-root", str(tmp_path), "--download", "yes"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode != 0 and "--download must be true or false, got 'yes'" in done.stderr


# ----------------------------------------------------------------------------- --download


class FakeResponse(io.BytesIO):
    """What urlopen returns, for a body served from memory."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails, as on an offline machine."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def fake_site(monkeypatch, files: dict[str, bytes]) -> list[str]:
    """Serve ``files`` (name -> body) as the VoxCeleb meta folder; publish their MD5s.
    Returns the list of URLs fetched."""
    fetched = []

    def urlopen(url, timeout=None):
        fetched.append(url)
        name = url.rsplit("/", 1)[1]
        if not url.startswith(VOXCELEB1_META_URL) or name not in files:
            raise urllib.error.HTTPError(url, 404, "Not Found", None, None)
        return FakeResponse(files[name])

    monkeypatch.setattr(sslsv.corpora.download.urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(
        sslsv.corpora.voxceleb,
        "VOXCELEB1_TRIAL_MD5",
        {name: hashlib.md5(body).hexdigest() for name, body in files.items()},
    )
    return fetched


def test_official_urls_and_checksums_are_the_published_ones() -> None:
    assert VOXCELEB1_META_URL == "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/"
    assert VOXCELEB1_TRIAL_MD5 == {
        "veri_test2.txt": "b73110731c9223c1461fe49cb48dddfc",
        "list_test_all2.txt": "a53e059deb562ffcfc092bf5d90d9f3a",
        "list_test_hard2.txt": "857790e09d579a68eb2e339a090343c8",
    }
    names = {name for _, name, _ in VOXCELEB1_TRIAL_LISTS.values()}
    assert names == set(VOXCELEB1_TRIAL_MD5)


def test_download_lists_checksummed_and_converted(tmp_path, monkeypatch, no_network) -> None:
    vox1 = tmp_path / "vox1"
    rels = make_voxceleb1(vox1)
    served = tmp_path / "served"
    served.mkdir()
    for name in ("veri_test2.txt", "list_test_all2.txt", "list_test_hard2.txt"):
        os.replace(vox1 / name, served / name)  # the lists are not next to the corpus
    bodies = {p.name: p.read_bytes() for p in served.iterdir()}
    fetched = fake_site(monkeypatch, bodies)
    dest = tmp_path / "data" / "vox1"

    # Not asked to download: a clear error that says how.
    assert prepare_data.main(["voxceleb1", str(vox1), str(dest), "--trials", "O", "--nj", "1"]) == 1
    with pytest.raises(DataError, match=r"veri_test2\.txt.*--download true"):
        prepare_voxceleb1(vox1, dest, trials=["O"])
    assert fetched == []
    assert prepare_data.main(
        ["voxceleb1", str(vox1), str(dest), "--trials", "O", "--download-dir", str(tmp_path)]
    ) == 1  # fmt: skip

    argv = ["voxceleb1", str(vox1), str(dest), "--trials", "O,E,H", "--nj", "1", "--download"]
    assert prepare_data.main(argv) == 0
    meta = tmp_path / "data" / "local" / "voxceleb1_meta"  # the default download folder
    assert sorted(fetched) == sorted(VOXCELEB1_META_URL + n for n in bodies)
    assert {p.name: p.read_bytes() for p in meta.iterdir()} == bodies  # no temp files left
    check_official_trials(dest, served)
    assert len(rels) == len(read_dict(dest / "utt2spk"))

    # A second run reuses the verified copies.
    assert prepare_data.main(argv) == 0
    assert len(fetched) == 3
    # A damaged copy is detected by its checksum and fetched again.
    (meta / "veri_test2.txt").write_text("1 a/b/c.wav a/b/d.wav\n")
    assert prepare_data.main(argv) == 0
    assert len(fetched) == 4 and (meta / "veri_test2.txt").read_bytes() == bodies["veri_test2.txt"]


def test_download_wrong_checksum_writes_nothing(tmp_path, monkeypatch, no_network) -> None:
    fake_site(monkeypatch, {"veri_test2.txt": b"1 id1/v/00001.wav id1/v/00002.wav\n"})
    monkeypatch.setitem(sslsv.corpora.voxceleb.VOXCELEB1_TRIAL_MD5, "veri_test2.txt", "0" * 32)
    with pytest.raises(DataError) as err:
        download_voxceleb1_trial_list("O", tmp_path / "meta")
    message = str(err.value)
    assert VOXCELEB1_META_URL + "veri_test2.txt" in message
    assert "does not match the published " + "0" * 32 in message
    assert not (tmp_path / "meta" / "veri_test2.txt").exists()
    assert list((tmp_path / "meta").iterdir()) == []  # no temporary file left either


def test_download_offline_is_a_clear_error(tmp_path, no_network) -> None:
    # Nothing patched but the socket layer: the real urllib path meets a dead network.
    with pytest.raises(DataError) as err:
        download_voxceleb1_trial_list("H", tmp_path / "meta")
    message = str(err.value)
    assert "cannot download https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/" in message
    assert "list_test_hard2.txt" in message and "is this machine online?" in message
    assert str(tmp_path / "meta" / "list_test_hard2.txt") in message  # where to put it by hand
    assert not (tmp_path / "meta" / "list_test_hard2.txt").exists()
    with pytest.raises(DataError, match="refusing to download over anything but HTTPS"):
        download_file("http://example.org/x", tmp_path / "x", "0" * 32)


def test_prepare_data_sh_download_true_offline(tmp_path: Path) -> None:
    """The shell option reaches the downloader: with every connection refused (a proxy on a
    closed local port) stage 0 stops with the offline message, naming the URL."""
    vox1 = tmp_path / "vox 1"
    make_voxceleb1(vox1)
    (vox1 / "list_test_hard2.txt").unlink()
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "pythonpath")}
    env.update(https_proxy="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    script = REPO / "egs" / "voxceleb" / "local" / "prepare_data.sh"
    base = ["bash", str(script), "--voxceleb1-root", str(vox1), "--data-root",
            str(tmp_path / "data"), "--nj", "1"]  # fmt: skip
    done = subprocess.run(base, capture_output=True, text=True, env=env)
    assert done.returncode != 0 and "--download true" in done.stderr  # not asked: not fetched
    done = subprocess.run([*base, "--download", "true"], capture_output=True, text=True, env=env)
    assert done.returncode != 0
    assert "cannot download " + VOXCELEB1_META_URL + "list_test_hard2.txt" in done.stderr
    assert not (tmp_path / "data" / "vox1").exists()
    # Lists found next to the corpus are used as they are, even with --download true.
    done = subprocess.run(
        [*base, "--download", "true", "--trials", "O,E"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_trials(tmp_path / "data" / "vox1" / "trials_O")
