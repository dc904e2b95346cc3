"""Data-dir tools: validate, fix, combine, subset, split, utt2dur, segments readers, CLI."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sslsv.audio import AudioSource, read_audio
from sslsv.bin import datadir as datadir_cli
from sslsv.datadir.fix import fix_data_dir
from sslsv.datadir.io import (
    read_audio_sources,
    read_segments,
    read_trials,
    read_wav_scp,
    sanitize_id,
    write_trials,
)
from sslsv.datadir.tools import combine_data_dirs, compute_utt2dur, split_data_dir, subset_data_dir
from sslsv.datadir.validate import validate_data_dir
from sslsv.errors import DataError
from sslsv.fileio import read_dict

RATE = 16000


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def make_data_dir(
    root: Path,
    speakers: dict[str, int],
    name: str = "data",
    with_audio: bool = False,
    seed: int = 0,
) -> Path:
    """A valid data dir: speaker -> number of utterances (ids ``SPK-uNN``), with trials."""
    d = root / name
    d.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    wav, utt2spk, utt2dur, spk2utt = [], [], [], []
    for spk in sorted(speakers):
        utts = [f"{spk}-u{i:02d}" for i in range(speakers[spk])]
        spk2utt.append(f"{spk} {' '.join(utts)}")
        for utt in utts:
            path = root / "audio" / f"{utt}.wav"
            if with_audio:
                path.parent.mkdir(exist_ok=True)
                frames = int(rng.integers(RATE // 2, RATE))
                sf.write(path, rng.standard_normal(frames).astype(np.float32) * 0.1, RATE)
                utt2dur.append(f"{utt} {frames / RATE!r}")
            else:
                utt2dur.append(f"{utt} 1.5")
            wav.append(f"{utt} {path}")
            utt2spk.append(f"{utt} {spk}")
    write_lines(d / "wav.scp", wav)
    write_lines(d / "utt2spk", utt2spk)
    write_lines(d / "spk2utt", spk2utt)
    write_lines(d / "utt2dur", utt2dur)
    utts = [line.split()[0] for line in utt2spk]
    write_lines(d / "trials", [f"{utts[0]} {utts[1]} target", f"{utts[0]} {utts[-1]} nontarget"])
    return d


@pytest.fixture
def small(tmp_path: Path) -> Path:
    return make_data_dir(tmp_path, {"spkA": 3, "spkB": 2, "spkC": 4})


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def utts_of(d: Path) -> list[str]:
    return [line.split()[0] for line in lines_of(d / "utt2spk")]


# ----------------------------------------------------------------------------- validate


def test_valid_dir_passes(small: Path) -> None:
    assert validate_data_dir(small, check_wav_exists=False) == []


def _expect_invalid(d: Path, *fragments: str, check_wav_exists: bool = False) -> str:
    with pytest.raises(DataError) as err:
        validate_data_dir(d, check_wav_exists=check_wav_exists)
    message = str(err.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_validate_unsorted(small: Path) -> None:
    lines = lines_of(small / "utt2dur")
    lines[0], lines[1] = lines[1], lines[0]
    write_lines(small / "utt2dur", lines)
    _expect_invalid(small, "utt2dur:2:", "'spkA-u00'", "not sorted")


def test_validate_duplicate(small: Path) -> None:
    lines = lines_of(small / "wav.scp")
    write_lines(small / "wav.scp", lines[:2] + [lines[1]] + lines[2:])
    _expect_invalid(small, "wav.scp:3:", "duplicate id 'spkA-u01'", "first on line 2")


def test_validate_missing_and_extra_utterances(small: Path) -> None:
    write_lines(small / "wav.scp", lines_of(small / "wav.scp")[1:])
    write_lines(small / "utt2dur", lines_of(small / "utt2dur") + ["zzz-extra 1.0"])
    _expect_invalid(
        small, "wav.scp: 1 utterances are missing", "'spkA-u00'", "utt2dur: id 'zzz-extra'"
    )


def test_validate_empty_field_and_bad_values(small: Path) -> None:
    lines = lines_of(small / "utt2dur")
    lines[0] = "spkA-u00"
    lines[1] = "spkA-u01 -3"
    write_lines(small / "utt2dur", lines)
    _expect_invalid(small, "utt2dur:1: id 'spkA-u00' has no value", "utt2dur:2:", "positive")


def test_validate_spk2utt_mismatch(small: Path) -> None:
    lines = lines_of(small / "spk2utt")
    lines[0] = "spkA spkA-u00 spkA-u01"
    write_lines(small / "spk2utt", lines)
    _expect_invalid(small, "spk2utt: utterance list of speaker 'spkA'", "spkA-u02")
    write_lines(small / "spk2utt", lines[1:])
    _expect_invalid(small, "spk2utt: speaker 'spkA' of utt2spk is missing")


def test_validate_feats_and_frames_must_cover_utterances(small: Path) -> None:
    utts = utts_of(small)
    write_lines(small / "feats.scp", [f"{u} feats.ark:{i}" for i, u in enumerate(utts[:-1])])
    write_lines(small / "utt2num_frames", [f"{u} 100" for u in utts[:-1]] + [f"{utts[-1]} 1.5"])
    _expect_invalid(small, "feats.scp: 1 utterances are missing", "utt2num_frames:9:", "integer")


def test_validate_trials_reference_known_utterances(small: Path) -> None:
    write_lines(small / "trials_X", ["spkA-u00 nobody target", "spkA-u00 spkB-u00 maybe"])
    _expect_invalid(small, "trials_X:1: utterance 'nobody'", "trials_X:2: expected")


def test_validate_wav_existence(tmp_path: Path) -> None:
    d = make_data_dir(tmp_path, {"s1": 2, "s2": 2}, with_audio=True)
    validate_data_dir(d)
    missing = read_wav_scp(d / "wav.scp")["s2-u01"]
    os.unlink(missing)
    _expect_invalid(d, "'s2-u01'", "does not exist", check_wav_exists=True)
    validate_data_dir(d, check_wav_exists=False)


def test_validate_required_files(small: Path) -> None:
    (small / "spk2utt").unlink()
    _expect_invalid(small, "spk2utt: missing")


def test_validate_segments(small: Path) -> None:
    utts = utts_of(small)
    recs = {u: u.split("-")[0] + "-rec" for u in utts}
    write_lines(small / "segments", [f"{u} {recs[u]} 0.0 1.5" for u in utts])
    wav = sorted({f"{r} /x/{r}.wav" for r in recs.values()})
    write_lines(small / "wav.scp", wav)
    validate_data_dir(small, check_wav_exists=False)
    write_lines(small / "wav.scp", wav[1:] + ["zz-unused /x/zz.wav"])
    _expect_invalid(small, "wav.scp: id 'zz-unused' is not a known recording", "'spkA-rec'")
    write_lines(small / "wav.scp", wav)
    segs = lines_of(small / "segments")
    segs[0] = segs[0].replace("0.0 1.5", "2.0 1.0")
    write_lines(small / "segments", segs)
    _expect_invalid(small, "segments:1:", "start < end")


def test_validate_warns_when_ids_not_prefixed(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    write_lines(d / "utt2spk", ["a1 zed", "b1 alpha"])
    write_lines(d / "spk2utt", ["alpha b1", "zed a1"])
    write_lines(d / "wav.scp", ["a1 /x/a1.wav", "b1 /x/b1.wav"])
    warnings = validate_data_dir(d, check_wav_exists=False)
    assert any("do not start with their speaker id" in w for w in warnings)
    assert any("not sorted by speaker" in w for w in warnings)


def test_validate_segments_past_the_end_of_their_recording(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """By the headers (the validate command), or by reco2dur without audio checks; within
    training's tolerance (0.05 s) a segment may end past the end, as segment times are
    rounded. Before: valid, and training left the utterances out."""
    sf.write(tmp_path / "r.wav", np.zeros(RATE, dtype=np.float32), RATE)  # 1 s
    d = tmp_path / "d"
    d.mkdir()
    write_lines(d / "wav.scp", [f"r {tmp_path / 'r.wav'}"])
    write_lines(d / "utt2spk", ["r-0 r", "r-1 r", "r-2 r"])
    write_lines(d / "spk2utt", ["r r-0 r-1 r-2"])
    write_lines(d / "segments", ["r-0 r 0 0.5", "r-1 r 0.5 1.04", "r-2 r 0.5 -1"])
    validate_data_dir(d)
    write_lines(d / "segments", ["r-0 r 0 0.5", "r-1 r 0.5 1.2", "r-2 r 1.5 -1"])
    assert datadir_cli.main(["validate", str(d)]) == 1
    err = capsys.readouterr().err
    assert "segments:2: utterance 'r-1' ends at 1.2 s, past the end of its recording 'r'" in err
    assert "(1 s, its header; tolerance 0.05 s)" in err
    assert "segments:3: utterance 'r-2' starts at 1.5 s, after its recording 'r' ends" in err
    validate_data_dir(d, check_wav_exists=False)  # no reco2dur: nothing to compare with
    write_lines(d / "reco2dur", ["r 1.0"])
    _expect_invalid(d, "'r-1' ends at 1.2 s", "(1 s, reco2dur;")


def test_segment_tolerance_is_trainings() -> None:
    from sslsv.datadir import validate
    from sslsv.train import dataset

    assert validate.SEGMENT_OVERSHOOT == dataset.SEGMENT_OVERSHOOT


def test_validate_ids_outside_the_character_set(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Ids are printable ASCII but space and '/' (docs/DATA.md): before, these were valid."""
    d = make_data_dir(tmp_path, {"caf\u00e9": 1, "sp/k": 1, "spkA": 1})
    assert datadir_cli.main(["validate", "--no-wav-check", str(d)]) == 1
    err = capsys.readouterr().err
    assert "utt2spk:1: utterance id 'caf\u00e9-u00' has '\u00e9'" in err
    assert "utt2spk:2: utterance id 'sp/k-u00' has '/'" in err
    assert "spk2utt:2: speaker id 'sp/k' has '/'" in err
    assert "spkA" not in err
    # Recordings too (wav.scp with segments); stage 0's ids are always inside the set.
    d = make_segmented_dir(tmp_path, "seg", {"n\u00b71": 1, "n2": 1})
    _expect_invalid(d, "wav.scp:2: recording id 'n\u00b71' has '\u00b7'")
    from sslsv.datadir.validate import bad_ids

    odd = ["a b", "caf\u00e9", "x/y", "tab\there", "zero\u200bwidth", "ok-1_2.3"]
    assert bad_ids(sanitize_id(i) for i in odd) == []
    assert bad_ids(odd) == odd[:5]


# ----------------------------------------------------------------------------- fix


def test_fix_drops_and_reports(small: Path, caplog: pytest.LogCaptureFixture) -> None:
    wav = [line for line in lines_of(small / "wav.scp") if not line.startswith("spkB-u00")]
    write_lines(small / "wav.scp", wav)
    durs = lines_of(small / "utt2dur")
    durs = [d for d in durs if not d.startswith("spkC-u03")] + ["spkC-u03", "zz-only 2.0"]
    write_lines(small / "utt2dur", list(reversed(durs)))  # unsorted as well
    write_lines(small / "trials", ["spkA-u00 spkB-u00 nontarget", "spkA-u00 spkA-u01 target"])
    write_lines(small / "spk2gender", ["spkA f", "spkB m", "spkC f", "spkD m"])
    with caplog.at_level(logging.WARNING):
        summary = fix_data_dir(small)
    assert summary["kept"] == 9 - 2
    assert summary["dropped"] == 3  # spkB-u00, spkC-u03, zz-only
    assert summary["trials_dropped"] == {"trials": 1}
    assert "dropped 3" in caplog.text
    dropped = dict(line.split(" ", 1) for line in lines_of(small / ".backup" / "dropped"))
    assert dropped["spkB-u00"] == "not in wav.scp"
    assert "utt2dur line" in dropped["spkC-u03"] and "no value" in dropped["spkC-u03"]
    assert "not in utt2spk" in dropped["zz-only"]
    assert "speaker spkD" in (small / ".backup" / "dropped_other").read_text()
    assert (small / ".backup" / "wav.scp").read_text() == "\n".join(wav) + "\n"
    validate_data_dir(small, check_wav_exists=False)
    kept = utts_of(small)
    assert "spkB-u00" not in kept and "spkC-u03" not in kept and len(kept) == 7
    assert read_trials(small / "trials") == [("spkA-u00", "spkA-u01", True)]
    assert lines_of(small / "spk2gender") == ["spkA f", "spkB m", "spkC f"]


def test_fix_on_consistent_dir_changes_nothing(small: Path) -> None:
    before = {p.name: p.read_bytes() for p in small.iterdir() if p.is_file()}
    summary = fix_data_dir(small)
    assert summary["dropped"] == 0 and summary["kept"] == 9
    assert {p.name: p.read_bytes() for p in small.iterdir() if p.is_file()} == before
    assert (small / ".backup" / "dropped").read_text() == ""


# ----------------------------------------------------------------------------- combine


def test_combine(tmp_path: Path) -> None:
    a = make_data_dir(tmp_path, {"s1": 2, "s3": 1}, name="a")
    b = make_data_dir(tmp_path, {"s2": 3}, name="b")
    write_lines(a / "utt2session", ["s1-u00 x", "s1-u01 y", "s3-u00 z"])
    warnings = combine_data_dirs(tmp_path / "ab", [a, b])
    assert any("utt2session left out" in w for w in warnings)
    assert any("trial lists" in w for w in warnings)
    ab = tmp_path / "ab"
    validate_data_dir(ab, check_wav_exists=False)
    assert utts_of(ab) == ["s1-u00", "s1-u01", "s2-u00", "s2-u01", "s2-u02", "s3-u00"]
    assert read_wav_scp(ab / "wav.scp") == {
        **read_wav_scp(a / "wav.scp"),
        **read_wav_scp(b / "wav.scp"),
    }
    assert not (ab / "utt2session").exists() and not (ab / "trials").exists()


def test_combine_duplicate_utterance_is_an_error(tmp_path: Path) -> None:
    a = make_data_dir(tmp_path, {"s1": 2}, name="a")
    b = make_data_dir(tmp_path, {"s1": 3}, name="b")
    with pytest.raises(DataError, match=r"utterance id 's1-u00' is in both .*a/.* and .*b/"):
        combine_data_dirs(tmp_path / "ab", [a, b])
    assert not (tmp_path / "ab").exists()


# ----------------------------------------------------------------------------- subset


def test_subset_variants(small: Path, tmp_path: Path) -> None:
    (tmp_path / "utts").write_text("spkC-u01\nspkA-u00 extra-column\n")
    subset_data_dir(small, tmp_path / "by_utt", utt_list=tmp_path / "utts")
    assert utts_of(tmp_path / "by_utt") == ["spkA-u00", "spkC-u01"]
    subset_data_dir(small, tmp_path / "by_spk", spk_list=["spkB", "spkA"])
    by_spk = tmp_path / "by_spk"
    assert utts_of(by_spk) == ["spkA-u00", "spkA-u01", "spkA-u02", "spkB-u00", "spkB-u01"]
    assert lines_of(by_spk / "spk2utt")[1] == "spkB spkB-u00 spkB-u01"
    # The first trial (spkA-u00 vs spkA-u01) survives; the one naming spkC does not.
    assert read_trials(by_spk / "trials") == [("spkA-u00", "spkA-u01", True)]
    subset_data_dir(small, tmp_path / "first", first=4)
    assert utts_of(tmp_path / "first") == utts_of(small)[:4]
    for d in ("by_utt", "by_spk", "first"):
        validate_data_dir(tmp_path / d, check_wav_exists=False)
        assert read_dict(tmp_path / d / "utt2dur").keys() == set(utts_of(tmp_path / d))


def test_subset_errors(small: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not in .*utt2spk.*'nobody'"):
        subset_data_dir(small, tmp_path / "x", utt_list=["spkA-u00", "nobody"])
    with pytest.raises(DataError, match="speakers of the list .*'spkZ'"):
        subset_data_dir(small, tmp_path / "x", spk_list=["spkZ"])
    with pytest.raises(DataError, match="exactly one"):
        subset_data_dir(small, tmp_path / "x", utt_list=["spkA-u00"], first=2)
    with pytest.raises(DataError, match="first=100"):
        subset_data_dir(small, tmp_path / "x", first=100)


# ----------------------------------------------------------------------------- split


def test_split_per_utterance_is_balanced_and_exact(tmp_path: Path) -> None:
    d = make_data_dir(tmp_path, {f"s{i}": 3 + i for i in range(5)})  # 25 utterances
    parts = split_data_dir(d, 4)
    assert parts == [d / "split4" / str(i) for i in range(1, 5)]
    all_utts = utts_of(d)
    got = [utts_of(p) for p in parts]
    # Independent reference: contiguous blocks as numpy.array_split makes them.
    assert got == [list(block) for block in np.array_split(np.array(all_utts), 4)]
    assert [len(g) for g in got] == [7, 6, 6, 6]
    for p in parts:
        validate_data_dir(p, check_wav_exists=False)
        assert read_dict(p / "utt2dur").keys() == set(utts_of(p))


def test_split_per_speaker_keeps_speakers_whole(tmp_path: Path) -> None:
    sizes = {"a": 9, "b": 1, "c": 4, "d": 4, "e": 3, "f": 2, "g": 5}
    d = make_data_dir(tmp_path, sizes)
    parts = split_data_dir(d, 3, per_speaker=True)
    assert parts[0].parent.name == "split3spk"
    seen: list[str] = []
    counts = []
    for p in parts:
        validate_data_dir(p, check_wav_exists=False)
        speakers = set(read_dict(p / "utt2spk").values())
        for spk in speakers:  # every utterance of the speaker is in this part
            assert (
                read_dict(p / "spk2utt")[spk]
                == lines_of(d / "spk2utt")[sorted(sizes).index(spk)].split(" ", 1)[1]
            )
        seen += utts_of(p)
        counts.append(len(utts_of(p)))
    assert sorted(seen) == sorted(utts_of(d))
    # Greedy largest-first onto the smallest part: a=9 | g=5,e=3,f=2 | c=4,d=4,b=1.
    assert counts == [9, 10, 9]
    assert set(read_dict(parts[1] / "utt2spk").values()) == {"g", "e", "f"}


def test_split_reuses_up_to_date_split(tmp_path: Path) -> None:
    d = make_data_dir(tmp_path, {"s1": 4, "s2": 4})
    parts = split_data_dir(d, 2)
    stamp = (parts[0] / "utt2spk").stat().st_mtime_ns
    assert split_data_dir(d, 2) == parts
    assert (parts[0] / "utt2spk").stat().st_mtime_ns == stamp
    lines = lines_of(d / "utt2dur")
    lines[0] = lines[0].replace("1.5", "2.5")
    write_lines(d / "utt2dur", lines)
    split_data_dir(d, 2)
    assert lines_of(parts[0] / "utt2dur")[0].endswith("2.5")


def test_split_errors(small: Path) -> None:
    with pytest.raises(DataError, match="cannot split 3 speakers"):
        split_data_dir(small, 4, per_speaker=True)
    with pytest.raises(DataError, match="cannot split 9 utterances"):
        split_data_dir(small, 10)


# ----------------------------------------------------------------------------- utt2dur, segments


def test_compute_utt2dur_matches_soundfile(tmp_path: Path) -> None:
    d = make_data_dir(tmp_path, {"s1": 3, "s2": 2}, with_audio=True)
    (d / "utt2dur").unlink()
    durations = compute_utt2dur(d, nj=2)
    for utt, path in read_wav_scp(d / "wav.scp").items():
        info = sf.info(path)
        assert durations[utt] == info.frames / info.samplerate
        assert float(read_dict(d / "utt2dur")[utt]) == info.frames / info.samplerate
    validate_data_dir(d)


def test_compute_utt2dur_with_segments_and_unreadable(tmp_path: Path) -> None:
    d = make_data_dir(tmp_path, {"s1": 2}, with_audio=True)
    wav = read_wav_scp(d / "wav.scp")
    write_lines(d / "wav.scp", [f"rec {wav['s1-u00']}"])
    write_lines(d / "segments", ["s1-u00 rec 0 0.25", "s1-u01 rec 0.125 -1"])
    durations = compute_utt2dur(d)
    assert durations["s1-u00"] == 0.25
    assert durations["s1-u01"] == sf.info(wav["s1-u00"]).duration - 0.125
    Path(wav["s1-u00"]).write_bytes(b"not audio")
    with pytest.raises(DataError, match="s1-u01.*cannot read"):
        compute_utt2dur(d)


def test_read_audio_sources_and_segments(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    audio = (rng.standard_normal((RATE * 2, 2)) * 0.1).astype(np.float32)
    sf.write(tmp_path / "rec one.wav", audio, RATE, subtype="FLOAT")
    d = tmp_path / "d"
    d.mkdir()
    write_lines(d / "wav.scp", [f"rec {tmp_path / 'rec one.wav'}"])
    write_lines(d / "segments", ["rec-0 rec 0 0.5", "rec-1 rec 0.5 -1"])
    segments = read_segments(d / "segments")
    assert segments["rec-0"] == ("rec", 0.0, 0.5) and segments["rec-1"].end is None
    sources = read_audio_sources(d)
    assert sources["rec-0"] == AudioSource(str(tmp_path / "rec one.wav"), 0.0, 0.5)
    first = read_audio(sources["rec-0"], sample_rate=RATE)
    rest = read_audio(sources["rec-1"], sample_rate=RATE)
    np.testing.assert_array_equal(first, audio[: RATE // 2, 0])
    np.testing.assert_array_equal(rest, audio[RATE // 2 :, 0])
    write_lines(d / "segments", ["rec-0 nowhere 0 0.5"])
    with pytest.raises(DataError, match="'rec-0' refers to recording 'nowhere'"):
        read_audio_sources(d)


def test_write_and_read_trials_keep_order(tmp_path: Path) -> None:
    trials = [("b", "a", True), ("a", "c", False)]
    write_trials(tmp_path / "t", trials)
    assert read_trials(tmp_path / "t") == trials


# ----------------------------------------------------------------------------- CLI


def test_cli(small: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert datadir_cli.main(["validate", str(small), "--no-wav-check"]) == 0
    assert datadir_cli.main(["validate", str(small)]) == 1  # audio files do not exist
    assert datadir_cli.main(["split", str(small), "2"]) == 0
    out = capsys.readouterr().out.split()
    assert out == [str(small / "split2" / "1"), str(small / "split2" / "2")]
    assert datadir_cli.main(["spk2utt", str(small / "utt2spk")]) == 0
    assert capsys.readouterr().out == (small / "spk2utt").read_text()
    assert datadir_cli.main(["subset", "--first", "2", str(small), str(tmp_path / "f2")]) == 0
    assert utts_of(tmp_path / "f2") == ["spkA-u00", "spkA-u01"]
    with pytest.raises(SystemExit):
        datadir_cli.main(["subset", "--first", "2", "--spk-list", "x", str(small), "y"])


def make_segmented_dir(root: Path, name: str, recordings: dict[str, int]) -> Path:
    """recording -> number of 1-s segments; each recording is its own speaker."""
    d = root / name
    d.mkdir()
    write_lines(d / "wav.scp", [f"{r} /audio/{r}.wav" for r in sorted(recordings)])
    segs = [(f"{r}-{i:04d}", r, i) for r in sorted(recordings) for i in range(recordings[r])]
    write_lines(d / "segments", [f"{s} {r} {i}.0 {i + 1}.0" for s, r, i in segs])
    write_lines(d / "utt2spk", [f"{s} {r}" for s, r, _ in segs])
    write_lines(d / "utt2dur", [f"{s} 1.0" for s, _, _ in segs])
    write_lines(
        d / "spk2utt",
        [f"{r} {' '.join(s for s, rr, _ in segs if rr == r)}" for r in sorted(recordings)],
    )
    return d


def test_fix_and_split_with_segments(tmp_path: Path) -> None:
    d = make_segmented_dir(tmp_path, "noise", {"n1": 3, "n2": 2, "n3": 1})
    validate_data_dir(d, check_wav_exists=False)
    parts = split_data_dir(d, 2)
    assert read_dict(parts[0] / "wav.scp").keys() == {"n1"}  # only recordings the part uses
    assert read_dict(parts[1] / "wav.scp").keys() == {"n2", "n3"}
    write_lines(d / "wav.scp", ["n1 /audio/n1.wav", "n3 /audio/n3.wav", "n9 /audio/n9.wav"])
    summary = fix_data_dir(d)
    assert summary["dropped"] == 2 and summary["other_dropped"] == 1
    dropped = lines_of(d / ".backup" / "dropped")
    assert dropped == [
        "n2-0000 recording 'n2' not in wav.scp",
        "n2-0001 recording 'n2' not in wav.scp",
    ]
    assert "recording n9 wav.scp: no kept segment refers to it" in lines_of(
        d / ".backup" / "dropped_other"
    )
    assert read_dict(d / "wav.scp").keys() == {"n1", "n3"}
    validate_data_dir(d, check_wav_exists=False)


def test_combine_with_segments(tmp_path: Path) -> None:
    a = make_segmented_dir(tmp_path, "a", {"n1": 2})
    b = make_segmented_dir(tmp_path, "b", {"n2": 1})
    combine_data_dirs(tmp_path / "ab", [a, b])
    assert read_dict(tmp_path / "ab" / "wav.scp").keys() == {"n1", "n2"}
    assert len(read_segments(tmp_path / "ab" / "segments")) == 3
    c = make_data_dir(tmp_path, {"s": 2}, name="c")
    with pytest.raises(DataError, match="some sources have a segments file and some do not"):
        combine_data_dirs(tmp_path / "abc", [a, c])
