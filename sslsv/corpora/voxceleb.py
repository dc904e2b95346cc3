"""VoxCeleb1 (with the official cleaned trial lists) and VoxCeleb2 (m4a decoded once to WAV);
utterance ``idXXXXX/VIDEO/NNNNN`` -> id ``idXXXXX-VIDEO-NNNNN``, session = video."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from sslsv.corpora.download import download_file, file_md5
from sslsv.corpora.importer import (
    ImportOptions,
    ImportReport,
    Recording,
    Trial,
    audio_path,
    import_recordings,
)
from sslsv.corpora.transcode import convert_to_wav
from sslsv.datadir.io import PathLike, sanitize_id
from sslsv.errors import DataError
from sslsv.fileio import utf8_text

log = logging.getLogger(__name__)


def voxceleb_utt_id(speaker: str, video: str, stem: str) -> str:
    """``idXXXXX-VIDEO-NNNNN``: the id of ``idXXXXX/VIDEO/NNNNN.{wav,m4a}``."""
    return sanitize_id(f"{speaker}-{video}-{stem}")


def _voxceleb_files(base: Path, extension: str) -> list[tuple[str, str, Path]]:
    files = []
    for path in sorted(base.glob(f"*/*/*{extension}")):
        files.append((path.parent.parent.name, path.parent.name, path))
    return files


def _find_first(candidates: list[Path], what: str, extension: str) -> Path:
    for folder in candidates:
        if folder.is_dir() and any(folder.glob(f"*/*/*{extension}")):
            return folder
    raise DataError(
        f"no {what} (SPEAKER/VIDEO/*{extension}) in any of {[str(c) for c in candidates]}"
    )


def list_voxceleb1(root: PathLike) -> list[Recording]:
    """``ROOT/wav/idXXXXX/VIDEO/NNNNN.wav`` (or ``ROOT/idXXXXX/...``); session = video."""
    root = Path(root)
    base = _find_first([root / "wav", root], "VoxCeleb1 wav files", ".wav")
    return [
        Recording(
            voxceleb_utt_id(spk, video, p.stem),
            sanitize_id(spk),
            audio_path(p),
            sanitize_id(video),
        )
        for spk, video, p in _voxceleb_files(base, ".wav")
    ]


#: Trial kind -> (Kaldi trial file, official cleaned VoxCeleb1 list, prepare_data flag).
VOXCELEB1_TRIAL_LISTS = {
    "O": ("trials_O", "veri_test2.txt", "--veri-test"),
    "E": ("trials_E", "list_test_all2.txt", "--list-test-all"),
    "H": ("trials_H", "list_test_hard2.txt", "--list-test-hard"),
}


#: Where the VoxCeleb authors publish the cleaned lists, and their MD5 sums. The sums are the
#: ones other open recipes check the same files against (PaddleSpeech's VoxCeleb1 preparation
#: and the Avignon mirror list of the kiwano toolkit agree on all three); MD5 is only an
#: integrity check here, against truncated or altered downloads.
VOXCELEB1_META_URL = "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/"
VOXCELEB1_TRIAL_MD5 = {
    "veri_test2.txt": "b73110731c9223c1461fe49cb48dddfc",
    "list_test_all2.txt": "a53e059deb562ffcfc092bf5d90d9f3a",
    "list_test_hard2.txt": "857790e09d579a68eb2e339a090343c8",
}


def download_voxceleb1_trial_list(kind: str, folder: PathLike) -> Path:
    """The official list of trial kind ``O``/``E``/``H`` in ``folder``, downloaded when absent
    or when the copy there does not match the published checksum."""
    file_name = VOXCELEB1_TRIAL_LISTS[kind][1]
    dest = Path(folder) / file_name
    md5 = VOXCELEB1_TRIAL_MD5[file_name]
    if dest.is_file():
        if file_md5(dest) == md5:
            log.info("%s: already downloaded, checksum OK", dest)
            return dest
        log.warning("%s: checksum differs from the published one; downloading it again", dest)
    return download_file(VOXCELEB1_META_URL + file_name, dest, md5)


def read_voxceleb_trial_list(path: PathLike) -> list[Trial]:
    """An official list (``1|0 id/video/file.wav id/video/file.wav``) as Kaldi trials, in order."""
    path = Path(path)
    trials = []
    with utf8_text(path) as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if len(fields) != 3 or fields[0] not in ("0", "1"):
                raise DataError(
                    f"{path}:{lineno}: expected '1|0 id/video/file.wav id/video/file.wav'"
                )
            utts = []
            for rel in fields[1:]:
                parts = rel.split("/")
                if len(parts) != 3 or not parts[2].endswith(".wav"):
                    raise DataError(f"{path}:{lineno}: {rel!r} is not SPEAKER/VIDEO/FILE.wav")
                utts.append(voxceleb_utt_id(parts[0], parts[1], parts[2][: -len(".wav")]))
            trials.append((utts[0], utts[1], fields[0] == "1"))
    if not trials:
        raise DataError(f"{path}: empty trial list")
    return trials


def find_voxceleb1_trial_list(
    kind: str,
    roots: list[Path],
    given: PathLike | None = None,
    download_dir: PathLike | None = None,
) -> Path:
    """The official list for trial kind ``O``/``E``/``H``: ``given``, else next to the corpus,
    else (only when ``download_dir`` is set) downloaded into ``download_dir``."""
    trials_name, file_name, flag = VOXCELEB1_TRIAL_LISTS[kind]
    if given is not None:
        if not Path(given).is_file():
            raise DataError(f"{trials_name}: official list {given} not found")
        return Path(given)
    places = []
    for root in roots:
        places += [root, root / "meta", root.parent, root.parent / "meta"]
    for place in places:
        if (place / file_name).is_file():
            return place / file_name
    if download_dir is not None:
        return download_voxceleb1_trial_list(kind, download_dir)
    raise DataError(
        f"{trials_name} needs the official list {file_name}, not found in "
        f"{sorted({str(p) for p in places})}; pass its path ({flag} FILE), put it next to the "
        f"corpus, or let data preparation download it ({VOXCELEB1_META_URL}{file_name}) with "
        "--download true (prepare_data: --download)"
    )


def prepare_voxceleb1(
    roots: PathLike | list[PathLike],
    dest: PathLike,
    trials: Iterable[str] = ("O",),
    trial_list_files: dict[str, PathLike] | None = None,
    options: ImportOptions | None = None,
    download_dir: PathLike | None = None,
) -> ImportReport:
    """Import VoxCeleb1 (one or more roots, e.g. dev and test) and convert official trial lists.

    ``trials``: which of ``O`` (veri_test2), ``E`` (list_test_all2), ``H`` (list_test_hard2) to
    write as ``trials_O``/``trials_E``/``trials_H``, line for line; ``trial_list_files`` gives
    their paths, else they are looked for next to the corpus, else downloaded (checksummed)
    into ``download_dir`` when it is given.
    """
    roots = [Path(r) for r in ([roots] if isinstance(roots, (str, os.PathLike)) else roots)]
    items = [r for root in roots for r in list_voxceleb1(root)]
    lists = {}
    for kind in trials:
        if kind not in VOXCELEB1_TRIAL_LISTS:
            raise DataError(f"unknown VoxCeleb1 trial list {kind!r}; choose from O, E, H")
        source = find_voxceleb1_trial_list(
            kind, roots, (trial_list_files or {}).get(kind), download_dir
        )
        lists[VOXCELEB1_TRIAL_LISTS[kind][0]] = (source, read_voxceleb_trial_list(source))
    return import_recordings(items, dest, options, trial_lists=lists)


def prepare_voxceleb2(
    root: PathLike,
    dest: PathLike,
    wav_cache: PathLike,
    options: ImportOptions | None = None,
    subset: str = "dev",
) -> ImportReport:
    """Import VoxCeleb2 ``ROOT/{subset}/aac/idXXXXX/VIDEO/NNNNN.m4a``, decoded once to
    ``WAV_CACHE/idXXXXX/VIDEO/NNNNN.wav`` (mono, at ``options.sample_rate``); session = video."""
    options = options or ImportOptions()
    root, cache = Path(root), Path(wav_cache)
    base = _find_first([root / subset / "aac", root / "aac", root], "VoxCeleb2 m4a files", ".m4a")
    files = _voxceleb_files(base, ".m4a")
    jobs = [(m4a, cache / spk / video / f"{m4a.stem}.wav") for spk, video, m4a in files]
    errors = convert_to_wav(jobs, options.sample_rate, nj=options.nj)
    items = [
        Recording(
            voxceleb_utt_id(spk, video, m4a.stem),
            sanitize_id(spk),
            audio_path(wav),
            sanitize_id(video),
            error=errors.get(m4a),
        )
        for (spk, video, m4a), (_, wav) in zip(files, jobs)
    ]
    return import_recordings(items, dest, options)
