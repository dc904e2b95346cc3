"""Corpus importers (fake trees in the real layouts), audio checks and trial generation."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import sine_file

import sslsv.corpora.transcode
from sslsv.audio import read_audio
from sslsv.bin import make_trials as make_trials_cli
from sslsv.bin import prepare_data
from sslsv.corpora.folder import list_csv, prepare_csv, prepare_folder
from sslsv.corpora.importer import ImportOptions, Recording, import_recordings
from sslsv.corpora.librispeech import list_librispeech, prepare_librispeech
from sslsv.corpora.noise import prepare_musan, prepare_rirs
from sslsv.corpora.voxceleb import prepare_voxceleb1, prepare_voxceleb2, read_voxceleb_trial_list
from sslsv.datadir.io import (
    read_audio_sources,
    read_durations,
    read_id_list,
    read_segments,
    read_trials,
    read_wav_scp,
)
from sslsv.datadir.trials import count_trials, make_trials
from sslsv.datadir.validate import validate_data_dir
from sslsv.errors import DataError
from sslsv.fileio import kaldi_sort_key, read_dict
from sslsv.train.dataset import CropDataset

RATE = 16000
LIBRISPEECH = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "LibriSpeech"
ONE_JOB = ImportOptions(nj=1)


def tone(path: Path, seconds: float = 0.6, rate: int = RATE, channels: int = 1, seed: int = 0):
    """Write a short noise file; returns its frame count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = int(round(seconds * rate))
    rng = np.random.default_rng(seed)
    data = (rng.standard_normal((frames, channels)) * 0.1).astype(np.float32)
    sf.write(path, data if channels > 1 else data[:, 0], rate)
    return frames


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def check_data_dir(d: Path, expected: dict[str, tuple[str, Path]]) -> None:
    """Every core file of ``d`` against ``expected``: utt -> (speaker, audio path)."""
    validate_data_dir(d)
    order = sorted(expected, key=kaldi_sort_key)
    assert [line.split()[0] for line in lines_of(d / "utt2spk")] == order
    assert read_dict(d / "utt2spk") == {u: s for u, (s, _) in expected.items()}
    assert read_wav_scp(d / "wav.scp") == {u: str(p) for u, (_, p) in expected.items()}
    spk2utt = {}
    for utt in order:
        spk2utt.setdefault(expected[utt][0], []).append(utt)
    assert {k: v.split() for k, v in read_dict(d / "spk2utt").items()} == spk2utt
    for utt, value in read_dict(d / "utt2dur").items():
        info = sf.info(str(expected[utt][1]))
        assert float(value) == info.frames / info.samplerate


# ----------------------------------------------------------------------------- LibriSpeech


def make_librispeech(root: Path) -> dict[str, tuple[str, Path, str]]:
    expected = {}
    for spk, chapters in (("19", ("198", "227")), ("1970", ("26100",)), ("250", ("142276", "9"))):
        for chapter in chapters:
            for i in range(2):
                utt = f"{spk}-{chapter}-{i:04d}"
                path = root / spk / chapter / f"{utt}.flac"
                tone(path, 0.55 + 0.01 * i)
                expected[utt] = (spk, path, chapter)
            (root / spk / chapter / f"{spk}-{chapter}.trans.txt").write_text("TEXT\n")
    return expected


def test_librispeech(tmp_path: Path) -> None:
    root = tmp_path / "LibriSpeech" / "train-clean-5"
    expected = make_librispeech(root)
    report = prepare_librispeech(root, tmp_path / "data", ONE_JOB)
    d = tmp_path / "data"
    check_data_dir(d, {u: (s, p) for u, (s, p, _) in expected.items()})
    assert read_dict(d / "utt2session") == {u: c for u, (_, _, c) in expected.items()}
    assert report.utterances == 10 and report.speakers == 3 and report.excluded == []
    assert (d / "excluded.txt").read_text() == ""
    # Speaker selection, from files as the CLI reads them.
    (tmp_path / "held_out").write_text("1970\n")
    assert prepare_data.main(
        ["librispeech", str(root), str(tmp_path / "train"), "--nj", "1",
         "--exclude-speakers", str(tmp_path / "held_out")]
    ) == 0  # fmt: skip
    assert set(read_dict(tmp_path / "train" / "utt2spk").values()) == {"19", "250"}
    prepare_librispeech(root, tmp_path / "test", ImportOptions(nj=1, speakers=["1970"]))
    assert set(read_dict(tmp_path / "test" / "utt2spk").values()) == {"1970"}
    with pytest.raises(DataError, match=r"--speakers: 1 speakers not in the corpus: \['42'\]"):
        prepare_librispeech(root, tmp_path / "x", ImportOptions(nj=1, speakers=["42"]))


def test_librispeech_bad_name(tmp_path: Path) -> None:
    tone(tmp_path / "19" / "198" / "19-200-0001.flac")
    with pytest.raises(DataError, match=r"19-200-0001.flac: expected the name 19-198-NNNN"):
        list_librispeech(tmp_path)


@pytest.mark.skipif(
    not (LIBRISPEECH / "train-clean-5").is_dir(),
    reason="real LibriSpeech not found at ../shared/data/LibriSpeech/train-clean-5",
)
def test_real_librispeech(tmp_path: Path) -> None:
    root = (LIBRISPEECH / "train-clean-5").resolve()
    report = prepare_librispeech(root, tmp_path / "data", ImportOptions(nj=2))
    d = tmp_path / "data"
    flacs = sorted(root.glob("*/*/*.flac"))
    assert report.utterances == len(flacs) == 448 and report.speakers == 28
    validate_data_dir(d)
    wavs = read_wav_scp(d / "wav.scp")
    assert sorted(wavs.values()) == sorted(str(p) for p in flacs)
    durations = read_dict(d / "utt2dur")
    for utt in list(wavs)[::50]:
        assert float(durations[utt]) == sf.info(wavs[utt]).duration
    trials = make_trials(
        read_dict(d / "utt2spk"), read_dict(d / "utt2session"), trials_per_utt=4, seed=0
    )
    sessions, utt2spk = read_dict(d / "utt2session"), read_dict(d / "utt2spk")
    chapters: dict[str, set[str]] = {}
    for utt, spk in utt2spk.items():
        chapters.setdefault(spk, set()).add(sessions[utt])
    multi = {spk for spk, c in chapters.items() if len(c) > 1}
    assert multi  # the README says speakers are spread over chapters
    targets = [(e, t) for e, t, y in trials if y and utt2spk[e] in multi]
    assert targets and all(sessions[e] != sessions[t] for e, t in targets)


def recipe_default(recipe: Path, name: str) -> str:
    """A default of the recipe's stage 0: set in its local/data.sh, or in run.sh where that
    script runs stage 0 itself."""
    script = recipe / "local" / "data.sh"
    script = script if script.is_file() else recipe / "run.sh"
    match = re.search(rf"^{name}=(\S+)", script.read_text(), re.M)
    assert match, f"{script} sets no {name}"
    return match.group(1)


@pytest.mark.skipif(
    not (LIBRISPEECH / "train-clean-5").is_dir(),
    reason="real LibriSpeech not found at ../shared/data/LibriSpeech/train-clean-5",
)
def test_real_librispeech_recipe_test_set_counts(tmp_path: Path, caplog) -> None:
    """What egs/librispeech stage 0 does for its test set, with its own settings: the held-out
    speakers, and a trial list whose cross-chapter target count is printed and right."""
    recipe = Path(__file__).resolve().parents[1] / "egs" / "librispeech"
    held_out = recipe / "conf" / "test_speakers"
    dest = tmp_path / "test"
    argv = ["librispeech", str(LIBRISPEECH / "train-clean-5"), str(dest), "--nj", "2",
            "--speakers", str(held_out)]  # fmt: skip
    assert prepare_data.main(argv) == 0
    validate_data_dir(dest)
    speakers = set(read_id_list(held_out))
    assert set(read_dict(dest / "utt2spk").values()) == speakers
    options = ["--num-per-utt", recipe_default(recipe, "trials_per_utt"),
               "--target-fraction", recipe_default(recipe, "target_fraction"),
               "--seed", recipe_default(recipe, "seed")]  # fmt: skip
    with caplog.at_level(logging.INFO):
        assert make_trials_cli.main([str(dest), *options]) == 0
    trials = read_trials(dest / "trials")
    utt2spk, sessions = read_dict(dest / "utt2spk"), read_dict(dest / "utt2session")
    targets = [(e, t) for e, t, y in trials if y]
    cross = [(e, t) for e, t in targets if sessions[e] != sessions[t]]
    assert all(utt2spk[e] == utt2spk[t] for e, t in targets)
    assert all(utt2spk[e] != utt2spk[t] for e, t, y in trials if not y)
    assert cross and len(trials) > len(targets) > 0
    line = (
        f"{dest}: {len(speakers)} speakers ({len(utt2spk)} utterances) -> {len(trials)} trials: "
        f"{len(targets)} target ({len(cross)} across sessions (utt2session)), "
        f"{len(trials) - len(targets)} non-target"
    )
    assert line in caplog.text
    assert caplog.text.count(f"{len(trials)} trials") == 1  # one summary, not two
    # Speakers read several chapters: all their targets cross chapters. (In the shared copy
    # only speaker 1088 has two chapters; the others fall back to same-chapter targets.)
    chapters: dict[str, set[str]] = {}
    for utt, spk in utt2spk.items():
        chapters.setdefault(spk, set()).add(sessions[utt])
    multi = {spk for spk, c in chapters.items() if len(c) > 1}
    assert multi and {utt2spk[e] for e, _ in cross} == multi
    assert all(sessions[e] != sessions[t] for e, t in targets if utt2spk[e] in multi)


# ----------------------------------------------------------------------------- folder, CSV


def test_folder_with_spaces_and_sessions(tmp_path: Path) -> None:
    root = tmp_path / "my corpus"
    files = {
        "alice-s 1-take_1": ("alice", root / "alice" / "s 1" / "take 1.wav"),
        "alice-s2-deep-b": ("alice", root / "alice" / "s2" / "deep" / "b.FLAC"),
        "bob_smith-day1-x": ("bob_smith", root / "bob smith" / "day1" / "x.wav"),
    }
    files = {k.replace("s 1", "s_1"): v for k, v in files.items()}
    for _, path in files.values():
        if path.suffix == ".FLAC":
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, np.zeros(RATE), RATE, format="FLAC")
        else:
            tone(path)
    tone(root / "loose.wav")  # no speaker folder: ignored, logged
    (root / "alice" / "s2" / "notes.txt").write_text("not audio")
    prepare_folder(root, tmp_path / "data", ONE_JOB)
    d = tmp_path / "data"
    check_data_dir(d, files)
    assert read_dict(d / "utt2session") == {
        "alice-s_1-take_1": "s_1",
        "alice-s2-deep-b": "s2",
        "bob_smith-day1-x": "day1",
    }
    # wav.scp keeps the path with its spaces intact.
    assert str(root / "alice" / "s 1" / "take 1.wav") in (d / "wav.scp").read_text()


def test_folder_without_full_sessions_and_id_collision(tmp_path: Path, caplog) -> None:
    tone(tmp_path / "c" / "spk" / "a.wav")
    tone(tmp_path / "c" / "spk" / "sess" / "b.wav")
    with caplog.at_level(logging.WARNING):
        prepare_folder(tmp_path / "c", tmp_path / "data", ONE_JOB)
    assert "no utt2session written" in caplog.text
    assert not (tmp_path / "data" / "utt2session").exists()
    tone(tmp_path / "c" / "spk" / "a b.wav")
    tone(tmp_path / "c" / "spk" / "a_b.wav")
    with pytest.raises(DataError, match=r"'spk-a_b' names two files: .*a b.wav.* and .*a_b.wav"):
        prepare_folder(tmp_path / "c", tmp_path / "data", ONE_JOB)


def test_csv_and_tsv(tmp_path: Path) -> None:
    audio = tmp_path / "lists" / "audio"
    tone(audio / "spk1" / "a.wav")
    tone(audio / "spk1" / "b c.wav")
    tone(tmp_path / "elsewhere" / "z.wav")
    (tmp_path / "lists" / "all.csv").write_text(
        "speaker,path,gender\n"
        "spk1,audio/spk1/a.wav,f\n"
        'spk1,"audio/spk1/b c.wav",f\n'
        f"spk2,{tmp_path / 'elsewhere' / 'z.wav'},m\n"
    )
    d = tmp_path / "data"
    prepare_csv(tmp_path / "lists" / "all.csv", d, ONE_JOB)
    check_data_dir(
        d,
        {
            "spk1-lists-audio-a": ("spk1", audio / "spk1" / "a.wav"),
            "spk1-lists-audio-b_c": ("spk1", audio / "spk1" / "b c.wav"),
            "spk2-elsewhere-z": ("spk2", tmp_path / "elsewhere" / "z.wav"),
        },
    )
    (tmp_path / "lists" / "two.tsv").write_text(
        "path\tspeaker\tutt\tsession\n"
        "audio/spk1/a.wav\tspk1\tfirst\tmon\n"
        "audio/spk1/b c.wav\tspk1\tspk1-second\ttue\n"
    )
    prepare_csv(tmp_path / "lists" / "two.tsv", d, ONE_JOB)
    assert read_dict(d / "utt2session") == {"spk1-first": "mon", "spk1-second": "tue"}
    (tmp_path / "bad.csv").write_text("file,speaker\na.wav,s\n")
    with pytest.raises(DataError, match=r"bad.csv:1: header .* has no 'path' column"):
        list_csv(tmp_path / "bad.csv")
    (tmp_path / "bad.csv").write_text("path,speaker\na.wav,\n")
    with pytest.raises(DataError, match=r"bad.csv:2: empty 'speaker' field"):
        list_csv(tmp_path / "bad.csv")


# ----------------------------------------------------------------------------- audio checks


def make_bad_audio_corpus(root: Path) -> None:
    for i in range(6):
        tone(root / "good" / f"g{i}.wav", seed=i)
    tone(root / "good" / "stereo.wav", channels=2)
    tone(root / "bad" / "short.wav", seconds=0.3)
    sf.write(root / "bad" / "empty.wav", np.zeros(0, dtype=np.float32), RATE)
    (root / "bad" / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")


def test_bad_audio_fails_above_max_bad_fraction(tmp_path: Path) -> None:
    make_bad_audio_corpus(tmp_path / "c")
    dest = tmp_path / "data"
    with pytest.raises(DataError) as err:
        prepare_folder(tmp_path / "c", dest, ONE_JOB)
    message = str(err.value)
    assert "2 of 10 files are unreadable or empty" in message
    assert "broken.wav: unreadable" in message and "empty.wav: empty" in message
    assert not dest.exists()
    listed = (tmp_path / "data.bad_audio.txt").read_text()
    assert "bad-broken" in listed and "bad-empty" in listed and "bad-short" in listed


def test_bad_audio_excluded_and_listed(tmp_path: Path, caplog) -> None:
    make_bad_audio_corpus(tmp_path / "c")
    dest = tmp_path / "data"
    with caplog.at_level(logging.INFO):
        report = prepare_folder(tmp_path / "c", dest, ImportOptions(nj=1, max_bad_fraction=0.25))
    assert report.bad == 2 and report.multichannel == 1 and report.utterances == 7
    excluded = {line.split("\t")[0]: line.split("\t") for line in lines_of(dest / "excluded.txt")}
    assert sorted(excluded) == ["bad-broken", "bad-empty", "bad-short"]
    assert excluded["bad-broken"][1].startswith("unreadable: ")
    assert excluded["bad-empty"][1] == "empty: 0 samples"
    assert excluded["bad-short"][1] == "too short: 0.300 s < min-duration 0.5 s"
    assert excluded["bad-short"][2] == str(tmp_path / "c" / "bad" / "short.wav")
    assert set(read_dict(dest / "utt2spk")) == {f"good-g{i}" for i in range(6)} | {"good-stereo"}
    assert "1 files have more than one channel" in caplog.text
    assert "readers use the first channel" in caplog.text
    assert "excluded 3 files" in caplog.text
    validate_data_dir(dest)


def test_wrong_sample_rate(tmp_path: Path) -> None:
    tone(tmp_path / "c" / "s" / "ok.wav")
    tone(tmp_path / "c" / "s" / "low.wav", rate=8000)
    with pytest.raises(DataError, match=r"1 files are not 16000 Hz \(.*low.wav: 8000 Hz\)"):
        prepare_folder(tmp_path / "c", tmp_path / "data", ONE_JOB)
    assert prepare_data.main(["folder", str(tmp_path / "c"), str(tmp_path / "d"), "--nj", "1"]) == 1
    prepare_folder(tmp_path / "c", tmp_path / "data", ImportOptions(nj=1, allow_resample=True))
    assert read_dict(tmp_path / "data" / "utt2sr") == {"s-low": "8000", "s-ok": "16000"}
    assert float(read_dict(tmp_path / "data" / "utt2dur")["s-low"]) == 0.6
    validate_data_dir(tmp_path / "data")


def test_no_audio_check_with_duration_table(tmp_path: Path, caplog) -> None:
    """Paths that do not exist yet, durations from a table: nothing opened, nothing lost."""
    listing = tmp_path / "list.csv"
    rows = [("s1", "a", 3.25), ("s1", "b", 0.4), ("s2", "c", 12.0), ("s2", "d", 0.0)]
    listing.write_text(
        "path,speaker\n" + "".join(f"/nowhere/{s}/{u}.wav,{s}\n" for s, u, _ in rows)
    )
    table = tmp_path / "durations"
    table.write_text("".join(f"{s}-{u} {d}\n" for s, u, d in rows) + "s9-unused 1.5\n")
    dest = tmp_path / "data"
    argv = [
        "csv",
        str(listing),
        str(dest),
        "--nj",
        "1",
        "--no-audio-check",
        "--utt2dur",
        str(table),
    ]
    with caplog.at_level(logging.INFO):
        assert prepare_data.main([*argv, "--max-bad-fraction", "0.5"]) == 0
    assert "1 entries of the duration table name no utterance here" in caplog.text
    validate_data_dir(dest, check_wav_exists=False)
    # Durations are copied as given (no rounding to samples); the rules still apply.
    assert read_dict(dest / "utt2dur") == {"s1-a": "3.25", "s2-c": "12.0"}
    assert read_wav_scp(dest / "wav.scp") == {
        "s1-a": "/nowhere/s1/a.wav",
        "s2-c": "/nowhere/s2/c.wav",
    }
    excluded = {
        line.split("\t")[0]: line.split("\t")[1] for line in lines_of(dest / "excluded.txt")
    }
    assert excluded == {
        "s1-b": "too short: 0.400 s < min-duration 0.5 s",
        "s2-d": "empty: 0 samples",
    }
    # An empty file is bad: above --max-bad-fraction the import fails.
    assert prepare_data.main(argv) == 1

    # A missing duration is an error naming the utterance, not a silent drop.
    table.write_text("s1-a 3.25\ns1-b 0.4\ns2-c 12.0\n")
    with pytest.raises(DataError, match=r"no entry for 1 of 4 utterances, e\.g\. \['s2-d'\]"):
        prepare_csv(
            listing, dest, ImportOptions(check_audio=False, durations=read_durations(table))
        )
    table.write_text("s1-a 3.25\ns1-b -1\n")
    with pytest.raises(DataError, match=r"durations:2: utterance 's1-b': bad duration '-1'"):
        read_durations(table)
    assert prepare_data.main(["csv", str(listing), str(dest), "--utt2dur", str(table)]) == 1


def test_no_audio_check_without_durations(tmp_path: Path, caplog) -> None:
    listing = tmp_path / "list.csv"
    listing.write_text("path,speaker\n/nowhere/a.wav,s1\n/nowhere/b.wav,s2\n")
    dest = tmp_path / "data"
    with caplog.at_level(logging.INFO):
        report = prepare_csv(listing, dest, ImportOptions(check_audio=False))
    assert report.utterances == 2 and report.excluded == []
    assert "no utt2dur written and no min-duration rule applied" in caplog.text
    assert sorted(p.name for p in dest.iterdir()) == [
        "excluded.txt",
        "spk2utt",
        "utt2spk",
        "wav.scp",
    ]
    validate_data_dir(dest, check_wav_exists=False)
    with pytest.raises(DataError, match="cutting into chunks needs durations"):
        import_recordings(
            list_csv(listing), dest, ImportOptions(check_audio=False), chunk_seconds=6
        )


def test_no_audio_check_chunks_from_durations(tmp_path: Path) -> None:
    items = [Recording("noise-1", "noise-1", "/nowhere/noise-1.wav")]
    options = ImportOptions(check_audio=False, durations={"noise-1": 13.0})
    import_recordings(items, tmp_path / "d", options, chunk_seconds=6)
    segments = read_segments(tmp_path / "d" / "segments")
    assert [(s.start, s.end) for s in segments.values()] == [(0.0, 6.0), (6.0, 12.0), (12.0, 13.0)]


# ----------------------------------------------------------------------------- readers


def test_resampled_data_dir_trains_and_extracts_at_16k(tmp_path: Path) -> None:
    """Import with --allow-resample, then the training dataset and the extraction reader
    see 16 kHz audio of the recorded durations."""

    sine_file(tmp_path / "c" / "s1" / "a.wav", 8000, 300.0, 1.5)
    sine_file(tmp_path / "c" / "s2" / "b.wav", 44100, 440.0, 2.5)
    tone(tmp_path / "c" / "s2" / "c.wav", seconds=1.2)
    dest = tmp_path / "data"
    argv = ["folder", str(tmp_path / "c"), str(dest), "--nj", "1", "--allow-resample"]
    assert prepare_data.main(argv) == 0
    assert read_dict(dest / "utt2sr") == {"s1-a": "8000", "s2-b": "44100", "s2-c": "16000"}
    durations = {u: float(v) for u, v in read_dict(dest / "utt2dur").items()}
    for utt, path in read_wav_scp(dest / "wav.scp").items():
        assert len(read_audio(path, sample_rate=RATE, utt=utt)) == int(durations[utt] * RATE)
    dataset = CropDataset(dest, [(2, 16000)], seed=0, sample_rate=RATE)
    for index in range(len(dataset)):
        (pair,), label, _ = dataset[(0, index)]
        assert pair.shape == (2, 16000) and bool(pair.abs().max() > 0.05)


# ----------------------------------------------------------------------------- VoxCeleb1


def make_voxceleb1(root: Path) -> list[str]:
    """wav/idXXXXX/VIDEO/NNNNN.wav; returns the relative paths."""
    rels = []
    for spk, videos in (("id10270", ("x6uYqmx31kE", "8jEAjG6SegY")), ("id10271", ("-1k_abc",))):
        for video in videos:
            for n in (1, 2):
                rel = f"{spk}/{video}/{n:05d}.wav"
                tone(root / "wav" / rel, seed=n)
                rels.append(rel)
    return rels


def test_voxceleb1_with_official_lists(tmp_path: Path) -> None:
    root = tmp_path / "vox 1"
    rels = make_voxceleb1(root)
    lists = {
        "veri_test2.txt": [(1, rels[0], rels[2]), (0, rels[0], rels[4]), (1, rels[5], rels[4])],
        "list_test_all2.txt": [(0, rels[1], rels[5]), (1, rels[1], rels[3])],
        "list_test_hard2.txt": [(1, rels[3], rels[0])],
    }
    for name, rows in lists.items():
        (root / name).write_text("".join(f"{y} {a} {b}\n" for y, a, b in rows))
    dest = tmp_path / "data"
    assert prepare_data.main(
        ["voxceleb1", str(root), str(dest), "--trials", "O,E,H", "--nj", "1"]
    ) == 0  # fmt: skip
    expected = {
        r.replace("/", "-")[: -len(".wav")]: (r.split("/")[0], root / "wav" / r) for r in rels
    }
    check_data_dir(dest, expected)
    assert read_dict(dest / "utt2session")["id10271--1k_abc-00002"] == "-1k_abc"
    for kind, name in (
        ("O", "veri_test2.txt"),
        ("E", "list_test_all2.txt"),
        ("H", "list_test_hard2.txt"),
    ):
        written = lines_of(dest / f"trials_{kind}")
        source = lines_of(root / name)
        assert len(written) == len(source)
        for out, src in zip(written, source):  # line for line, in order
            label, a, b = src.split()
            want = [a.replace("/", "-")[:-4], b.replace("/", "-")[:-4]]
            assert out.split() == want + ["target" if label == "1" else "nontarget"]


def test_voxceleb1_list_errors(tmp_path: Path) -> None:
    root = tmp_path / "vox1"
    rels = make_voxceleb1(root)
    with pytest.raises(DataError, match=r"trials_O needs the official list veri_test2.txt"):
        prepare_voxceleb1(root, tmp_path / "data", options=ONE_JOB)
    listing = tmp_path / "lists" / "v.txt"
    listing.parent.mkdir()
    listing.write_text(f"1 {rels[0]} {rels[1]}\n0 {rels[0]} id19999/vid/00001.wav\n")
    with pytest.raises(DataError, match=r"v.txt:2: utterance 'id19999-vid-00001'"):
        prepare_voxceleb1(root, tmp_path / "data", trial_list_files={"O": listing}, options=ONE_JOB)
    listing.write_text(f"yes {rels[0]} {rels[1]}\n")
    with pytest.raises(DataError, match=r"v.txt:1: expected '1\|0"):
        read_voxceleb_trial_list(listing)
    report = prepare_voxceleb1(root, tmp_path / "data", trials=(), options=ONE_JOB)
    assert report.utterances == 6 and not list((tmp_path / "data").glob("trials*"))


def test_voxceleb1_trials_naming_excluded_audio_are_dropped_and_listed(tmp_path: Path) -> None:
    root = tmp_path / "vox1"
    rels = make_voxceleb1(root)
    tone(root / "wav" / rels[1], seconds=0.2)
    (root / "veri_test2.txt").write_text(f"1 {rels[0]} {rels[1]}\n0 {rels[0]} {rels[4]}\n")
    prepare_voxceleb1(root, tmp_path / "data", options=ONE_JOB)
    d = tmp_path / "data"
    assert read_trials(d / "trials_O") == [
        ("id10270-x6uYqmx31kE-00001", "id10271--1k_abc-00001", False)
    ]
    assert lines_of(d / "excluded_trials.txt") == [
        "trials_O 1 id10270-x6uYqmx31kE-00001 id10270-x6uYqmx31kE-00002 target"
    ]


# ----------------------------------------------------------------------------- VoxCeleb2


def test_voxceleb2_missing_ffmpeg_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    m4a = tmp_path / "vox2" / "dev" / "aac" / "id00012" / "21Uxsk56VDQ" / "00001.m4a"
    m4a.parent.mkdir(parents=True)
    m4a.write_bytes(b"not decoded in this test")
    monkeypatch.setattr(sslsv.corpora.transcode.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="ffmpeg not found on PATH"):
        prepare_voxceleb2(tmp_path / "vox2", tmp_path / "data", tmp_path / "cache")


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed: m4a not tested")
def test_voxceleb2_decodes_once(tmp_path: Path) -> None:
    aac = tmp_path / "vox 2" / "dev" / "aac"
    sources = []
    for spk, video, n in (("id00012", "21Uxsk56VDQ", 1), ("id00012", "2DLq_Kkc1r8", 2),
                          ("id00015", "0fijmz4vTVU", 1)):  # fmt: skip
        wav = tmp_path / "src" / f"{spk}{video}{n}.wav"
        tone(wav, seconds=0.7, rate=44100, channels=2, seed=n)
        m4a = aac / spk / video / f"{n:05d}.m4a"
        m4a.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(wav), "-c:a", "aac", str(m4a)],
            check=True,
        )
        sources.append((spk, video, n))
    (aac / "id00015" / "0fijmz4vTVU" / "00002.m4a").write_bytes(b"corrupt")
    cache = tmp_path / "wav cache"
    dest = tmp_path / "data"
    options = ImportOptions(nj=2, max_bad_fraction=0.5)
    report = prepare_voxceleb2(tmp_path / "vox 2", dest, cache, options)
    assert report.utterances == 3 and report.bad == 1
    wavs = read_wav_scp(dest / "wav.scp")
    for spk, video, n in sources:
        path = cache / spk / video / f"{n:05d}.wav"
        assert wavs[f"{spk}-{video}-{n:05d}"] == str(path)
        info = sf.info(str(path))
        assert (info.samplerate, info.channels) == (16000, 1)
        assert abs(info.duration - 0.7) < 0.05
    assert read_dict(dest / "utt2session")["id00012-2DLq_Kkc1r8-00002"] == "2DLq_Kkc1r8"
    assert "ffmpeg failed" in (dest / "excluded.txt").read_text()
    assert not [p for p in cache.rglob("*") if p.name.endswith(".tmp")]
    stamps = {p: p.stat().st_mtime_ns for p in cache.rglob("*.wav")}
    prepare_voxceleb2(tmp_path / "vox 2", dest, cache, options)
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.wav")} == stamps  # not redone
    validate_data_dir(dest)


# ----------------------------------------------------------------------------- MUSAN, RIRs


def test_musan_virtual_chunks(tmp_path: Path) -> None:
    root = tmp_path / "musan"
    lengths = {
        ("noise", "free-sound", "noise-free-sound-0000"): 2.3,
        ("noise", "sound-bible", "noise-sound-bible-0001"): 0.8,
        ("speech", "librivox", "speech-librivox-0000"): 2.6,
        ("music", "fma", "music-fma-0003"): 3.0,
    }
    for (cat, sub, name), seconds in lengths.items():
        tone(root / cat / sub / f"{name}.wav", seconds=seconds)
    (root / "noise" / "free-sound" / "ANNOTATIONS").write_text("x\n")
    assert prepare_data.main(
        ["musan", str(root), str(tmp_path / "musan"), "--chunk-seconds", "1", "--nj", "1"]
    ) == 0  # fmt: skip
    noise = tmp_path / "musan_noise"
    validate_data_dir(noise)
    segments = read_segments(noise / "segments")
    # 2.3 s: [0,1) [1,2.3) (a 0.3 s tail joins the previous chunk); 0.8 s: one chunk.
    assert segments == {
        "noise-free-sound-0000-0000": ("noise-free-sound-0000", 0.0, 1.0),
        "noise-free-sound-0000-0001": ("noise-free-sound-0000", 1.0, 2.3),
        "noise-sound-bible-0001-0000": ("noise-sound-bible-0001", 0.0, 0.8),
    }
    assert read_dict(noise / "utt2spk")["noise-free-sound-0000-0001"] == "noise-free-sound-0000"
    assert float(read_dict(noise / "utt2dur")["noise-free-sound-0000-0001"]) == pytest.approx(1.3)
    speech = read_segments(tmp_path / "musan_speech" / "segments")
    assert [(s.start, s.end) for s in speech.values()] == [(0.0, 1.0), (1.0, 2.0), (2.0, 2.6)]
    assert len(read_segments(tmp_path / "musan_music" / "segments")) == 3
    # Chunks read back as the matching slices of the file.
    source = read_audio_sources(noise)["noise-free-sound-0000-0001"]
    chunk = read_audio(source, sample_rate=RATE)
    whole, _ = sf.read(str(root / "noise" / "free-sound" / "noise-free-sound-0000.wav"))
    np.testing.assert_allclose(chunk, whole[RATE:], atol=1e-4)
    prepare_musan(root, tmp_path / "whole", chunk_seconds=0, categories=["music"])
    assert not (tmp_path / "whole_music" / "segments").exists()
    assert read_dict(tmp_path / "whole_music" / "utt2spk") == {"music-fma-0003": "music-fma-0003"}


def test_rirs(tmp_path: Path) -> None:
    root = tmp_path / "RIRS_NOISES"
    expected = {}
    for room_type, room, n in (("smallroom", "Room001", 1), ("smallroom", "Room001", 2),
                               ("largeroom", "Room120", 1)):  # fmt: skip
        path = root / "simulated_rirs" / room_type / room / f"{room}-{n:05d}.wav"
        tone(path, seconds=0.25)
        expected[f"{room_type}-{room}-{n:05d}"] = (f"{room_type}-{room}", path)
    real = root / "real_rirs_isotropic_noises" / "RWCP_type1_rir_circle_ane_imp050.wav"
    tone(real, seconds=0.3, channels=2)
    tone(root / "real_rirs_isotropic_noises" / "RWCP_type1_noise_ane.wav", seconds=0.3)
    prepare_rirs(tmp_path, tmp_path / "rirs")  # the folder above RIRS_NOISES works too
    check_data_dir(tmp_path / "rirs", expected)
    assert prepare_data.main(["rirs", str(root), str(tmp_path / "all"), "--real", "--nj", "1"]) == 0
    expected["real-RWCP_type1_rir_circle_ane_imp050"] = (
        "real-RWCP_type1_rir_circle_ane_imp050",
        real,
    )
    check_data_dir(tmp_path / "all", expected)


# ----------------------------------------------------------------------------- trials


def random_corpus(seed: int = 0) -> tuple[dict[str, str], dict[str, str]]:
    rng = np.random.default_rng(seed)
    utt2spk, utt2session = {}, {}
    for s in range(12):
        num_sessions = 1 if s == 3 else int(rng.integers(2, 4))
        for sess in range(num_sessions):
            for u in range(int(rng.integers(1, 5))):
                utt = f"spk{s:02d}-s{sess}-{u}"
                utt2spk[utt], utt2session[utt] = f"spk{s:02d}", f"s{sess}"
    return utt2spk, utt2session


def test_make_trials_properties(caplog) -> None:
    utt2spk, utt2session = random_corpus()
    with caplog.at_level(logging.INFO):
        trials = make_trials(utt2spk, utt2session, trials_per_utt=6, target_fraction=0.25, seed=3)
    assert "1 speakers have one session" in caplog.text and "spk03" in caplog.text
    pairs = [frozenset((e, t)) for e, t, _ in trials]
    assert len(pairs) == len(set(pairs))  # no duplicate unordered pair
    for enroll, test, target in trials:
        assert enroll != test
        assert target == (utt2spk[enroll] == utt2spk[test])
        if target and utt2spk[enroll] != "spk03":
            assert utt2session[enroll] != utt2session[test]
    assert any(y for e, t, y in trials if utt2spk[e] == "spk03")  # same-session fallback used
    keys = [(kaldi_sort_key(e), kaldi_sort_key(t)) for e, t, _ in trials]
    assert keys == sorted(keys)
    n = len(utt2spk)
    assert sum(not y for *_, y in trials) == n * 6 - round(n * 6 * 0.25)
    assert sum(y for *_, y in trials) <= round(n * 6 * 0.25)
    assert make_trials(utt2spk, utt2session, 6, 0.25, seed=3) == trials
    assert make_trials(utt2spk, utt2session, 6, 0.25, seed=4) != trials


def test_make_trials_logs_cross_session_targets(caplog) -> None:
    utt2spk, utt2session = random_corpus(2)
    with caplog.at_level(logging.DEBUG):
        trials = make_trials(utt2spk, utt2session, trials_per_utt=5, target_fraction=0.4, seed=1)
    targets = [(e, t) for e, t, y in trials if y]
    cross = sum(utt2session[e] != utt2session[t] for e, t in targets)
    assert 0 < cross < len(targets)  # spk03 has one session: its targets stay within it
    assert f"{len(targets)} target ({cross} across sessions (utt2session))," in caplog.text
    counts = count_trials(trials, utt2spk, utt2session)
    used = {u for e, t, _ in trials for u in (e, t)}
    assert counts == (len(trials), len(targets), cross, len({utt2spk[u] for u in used}), len(used))
    assert count_trials(trials, utt2spk).cross_session_target == 0
    with pytest.raises(DataError, match="not in utt2spk"):
        count_trials([("ghost", "spk00-s0-0", False)], utt2spk)


def test_make_trials_exact_counts_when_candidates_suffice() -> None:
    utt2spk = {f"s{s}-{u:02d}": f"s{s}" for s in range(4) for u in range(20)}
    trials = make_trials(utt2spk, None, trials_per_utt=5, target_fraction=0.4, seed=0)
    assert len(trials) == 80 * 5
    assert sum(y for *_, y in trials) == 160
    per_enroll = {}
    for e, _, _ in trials:
        per_enroll[e] = per_enroll.get(e, 0) + 1
    assert set(per_enroll.values()) == {5}


def test_make_trials_errors() -> None:
    with pytest.raises(DataError, match="at least two speakers"):
        make_trials({"a-1": "a", "a-2": "a"}, trials_per_utt=2, target_fraction=0.5)
    with pytest.raises(DataError, match="target_fraction"):
        make_trials({"a-1": "a", "b-1": "b"}, target_fraction=1.5)
    with pytest.raises(DataError, match="no session for 1"):
        make_trials({"a-1": "a", "b-1": "b"}, {"a-1": "x"})


def test_make_trials_cli(tmp_path: Path) -> None:
    d = tmp_path / "data"
    d.mkdir()
    utt2spk, utt2session = random_corpus(1)
    order = sorted(utt2spk, key=kaldi_sort_key)
    (d / "utt2spk").write_text("".join(f"{u} {utt2spk[u]}\n" for u in order))
    (d / "utt2session").write_text("".join(f"{u} {utt2session[u]}\n" for u in order))
    (d / "wav.scp").write_text("".join(f"{u} /x/{u}.wav\n" for u in order))
    spk2utt = {}
    for u in order:
        spk2utt.setdefault(utt2spk[u], []).append(u)
    (d / "spk2utt").write_text(
        "".join(f"{s} {' '.join(us)}\n" for s, us in sorted(spk2utt.items()))
    )
    argv = [str(d), "--num-per-utt", "3", "--target-fraction", "0.5", "--seed", "7"]
    assert make_trials_cli.main(argv) == 0
    assert read_trials(d / "trials") == make_trials(utt2spk, utt2session, 3, 0.5, 7)
    validate_data_dir(d, check_wav_exists=False)
    assert make_trials_cli.main([*argv, "--output", str(tmp_path / "t")]) == 0
    assert (tmp_path / "t").read_text() == (d / "trials").read_text()
    os.unlink(d / "spk2utt")
    assert make_trials_cli.main(argv) == 1
