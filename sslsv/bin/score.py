"""Scoring: score a trial list with a back end (cosine, PLDA, ...), optionally score-normalised.

  python -m sslsv.bin.score --config conf/x.yaml --trials data/test/trials \
      --enroll exp/x/embeddings_final/test/embeddings.scp \
      --test exp/x/embeddings_final/test/embeddings.scp \
      --train exp/x/embeddings_final/train/embeddings.scp --train-utt2spk data/train/utt2spk \
      [--backend-model exp/x/scores_final/plda.npz] --output exp/x/scores_final/test.scores

Reads the trial list, the enroll and test embeddings and the scoring: section of --config
(default: its defaults), each key overridable on the command line. The back ends, and the
options of each, are those of the registry (sslsv.backend). The training set's embeddings
(--train) give the mean that cosine scoring subtracts, PLDA's training data (with
--train-utt2spk) and the cohort of score normalisation. With a back end worth saving
(PLDA), a --backend-model trained on exactly these inputs (settings, training embeddings
and labels: its stamp says) is loaded instead of trained; otherwise the back end is
trained, saved there and stamped, and the log says what changed. With --calibration
(from sslsv.bin.calibrate; --utt2dur too when it uses quality measures) the scores, after
any normalisation, become LLRs; a calibration fitted on scores made with other scoring:
settings, or on another model's scores, is refused.
Which model made the embeddings is read from the stamps sslsv.bin.extract wrote beside
them: enroll, test and training embeddings of different models are refused.
Writes OUTPUT: ``enroll test score`` per trial, in the trial list's order, and OUTPUT.stamp:
the model file that made the embeddings (when their stamps say), the scoring settings and
whether the scores are LLRs, which sslsv.bin.calibrate and sslsv.bin.compute_metrics read.
OUTPUT (and --backend-model) may not be one of the inputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
import typing
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sslsv import cli
from sslsv.arkio import arks_of, load_embeddings, load_labelled_embeddings
from sslsv.backend import (
    BACKENDS,
    NORM_METHODS,
    Backend,
    TrainingSet,
    backend_class,
    backend_options,
    load_backend,
    save_backend,
    score_norm,
    speaker_means,
)
from sslsv.backend.base import FORMAT as BACKEND_FORMAT
from sslsv.calibration import Calibration
from sslsv.config.load import load_config
from sslsv.config.schema import ScoringConfig
from sslsv.datadir.io import read_trials
from sslsv.errors import DataError
from sslsv.provenance import (
    ModelFile,
    embeddings_model,
    recorded_fingerprint,
    same_model_file,
    write_scores_stamp,
)
from sslsv.reuse import changes, files_identity, remove_stamp, text_digest, write_stamp
from sslsv.scores import check_unique_pairs, id_codes, pair_codes, write_scores

log = logging.getLogger("score")

#: scoring: keys of score normalisation that the command line can override; those of the
#: back ends come from the registry (:func:`overrides`).
NORM_OVERRIDES = ("norm", "top_k", "cohort_speaker_means")


def overrides() -> tuple[str, ...]:
    """The scoring: keys that the command line can override: the back end, the keys of the
    registered back ends, score normalisation."""
    return ("backend", *backend_options(), *NORM_OVERRIDES)


def _add_backend_options(group: argparse._ArgumentGroup) -> None:
    """A flag per scoring: key of the registered back ends, of the key's type and range
    (ScoringConfig's), its help the back end's text."""
    fields = {f.name: f for f in dataclasses.fields(ScoringConfig)}
    types = typing.get_type_hints(ScoringConfig)
    for key, users in backend_options().items():
        flag = "--" + key.replace("_", "-")
        text = f"{'/'.join(users)}: {BACKENDS[users[0]].options[key]}"
        kind = types[key]
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, help=text)
        elif typing.get_origin(kind) is typing.Literal:
            group.add_argument(flag, choices=typing.get_args(kind), help=text)
        else:
            low = fields[key].metadata.get("bounds", {}).get("minimum")
            group.add_argument(
                flag, type=kind if low is None else cli.at_least(kind, low), help=text
            )


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, "python -m sslsv.bin.score")
    p.add_argument("--config", help="experiment config whose scoring: section to use")
    p.add_argument("--trials", required=True, help="Kaldi trial list")
    p.add_argument("--enroll", required=True, help="embeddings (scp or ark) of enroll ids")
    p.add_argument("--test", required=True, help="embeddings (scp or ark) of test ids")
    p.add_argument("--output", required=True, help="score file to write")
    p.add_argument("--train", help="the training set's embeddings: mean, PLDA data, cohort")
    p.add_argument("--train-utt2spk", help="speaker labels of --train (PLDA, speaker cohorts)")
    p.add_argument(
        "--backend-model",
        help="trained back end (.npz; PLDA): loaded if it exists, else trained and saved here",
    )
    p.add_argument("--calibration", help="calibration (.json): write LLRs")
    p.add_argument("--utt2dur", nargs="+", help="durations, for a calibration that uses them")
    g = p.add_argument_group("scoring: keys (override the config)")
    g.add_argument("--backend", choices=sorted(BACKENDS))
    _add_backend_options(g)
    g.add_argument("--norm", choices=NORM_METHODS)
    g.add_argument("--top-k", type=cli.at_least(int, 1), help="as-norm: cohort scores per side")
    g.add_argument(
        "--cohort-speaker-means",
        action=argparse.BooleanOptionalAction,
        help="cohort of per-speaker mean embeddings (needs --train-utt2spk)",
    )
    return p


def scoring_config(args: argparse.Namespace) -> ScoringConfig:
    """The config's scoring: section with the command line's overrides."""
    section = load_config(args.config).scoring if args.config else ScoringConfig()
    given = {k: getattr(args, k) for k in overrides() if getattr(args, k, None) is not None}
    return dataclasses.replace(section, **given)


def _needs(args: argparse.Namespace, what: str, *, labels: bool) -> None:
    if not args.train or (labels and not args.train_utt2spk):
        flags = "--train and --train-utt2spk" if labels else "--train"
        raise DataError(f"{what} needs {flags} (the training set's embeddings and labels)")


def _needs_training(cls: type[Backend], sc: ScoringConfig) -> str | None:
    """What needs the training set, in words for the error when it is not given."""
    why = cls.needs_training(sc)
    return f"{why} (or an existing --backend-model)" if why and cls.saved else why


def _train(args: argparse.Namespace, sc: ScoringConfig) -> Backend:
    cls = backend_class(sc.backend)
    why = _needs_training(cls, sc)
    if why is None:
        return cls.fit(sc, None)
    _needs(args, why, labels=cls.needs_labels)
    if cls.needs_labels:
        _, x, speakers = load_labelled_embeddings(args.train, args.train_utt2spk)
        log.info(
            "training the %s back end on %d embeddings of %d speakers",
            cls.name,
            len(x),
            len(set(speakers)),
        )
        train = TrainingSet(x, speakers)
    else:
        train = TrainingSet(load_embeddings(args.train)[1])
    try:
        return cls.fit(sc, train)
    except ValueError as e:
        raise DataError(f"{args.train}: {e}") from None


def backend_inputs(args: argparse.Namespace, sc: ScoringConfig) -> dict:
    """What a trained back end depends on (see :mod:`sslsv.reuse`): its settings, the
    training embeddings (the scp's lines and its arks' identity) and their labels."""
    return {
        "format": BACKEND_FORMAT,
        "settings": {"backend": sc.backend, **backend_class(sc.backend).settings_of(sc)},
        "embeddings": text_digest(args.train),
        "arks": files_identity(arks_of(args.train)),
        "labels": text_digest(args.train_utt2spk) if args.train_utt2spk else "",
    }


def get_backend(args: argparse.Namespace, sc: ScoringConfig) -> Backend:
    """The back end: for one worth saving (``saved``: PLDA) with ``--backend-model``, the
    saved one when it was trained on exactly these inputs, else a new one trained and saved
    (the log says what changed); otherwise a new one."""
    cls = backend_class(sc.backend)
    path = args.backend_model if cls.saved else None
    if not path:
        return _train(args, sc)
    if not args.train:
        # Nothing to check the saved model against: use it if its settings are these.
        if not Path(path).exists():
            return _train(args, sc)  # an error where it needs --train
        backend = load_backend(path)
        wanted, saved = cls.settings_of(sc), backend.settings()
        diff = {k: (saved.get(k), v) for k, v in wanted.items() if saved.get(k) != v}
        if backend.name != sc.backend or diff:
            shown = ", ".join(f"{k}: saved {s!r}, asked {w!r}" for k, (s, w) in diff.items())
            raise DataError(
                f"{path}: trained with other settings ({shown or backend.name}); give --train"
                f"{' and --train-utt2spk' if cls.needs_labels else ''} to retrain it"
            )
        log.info(
            "loaded %s back end from %s (its training data not checked: no --train)",
            backend.name,
            path,
        )
        return backend
    inputs = backend_inputs(args, sc)
    why = changes(path, inputs)
    if not why:
        log.info("loaded %s back end from %s (trained on these inputs)", sc.backend, path)
        return load_backend(path)
    log.info("training the %s back end: %s", sc.backend, "; ".join(why))
    remove_stamp(path)
    backend = _train(args, sc)
    save_backend(path, backend)
    write_stamp(path, inputs)
    log.info("saved %s back end to %s", backend.name, path)
    return backend


def _same_file(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _cohort(args: argparse.Namespace, sc: ScoringConfig) -> tuple[list[str], np.ndarray]:
    """The training set's embeddings (or its speakers' means) as the cohort."""
    _needs(args, f"scoring.norm {sc.norm}", labels=sc.cohort_speaker_means)
    if sc.cohort_speaker_means:
        _, x, speakers = load_labelled_embeddings(args.train, args.train_utt2spk)
        ids, x = speaker_means(x, speakers)
    else:
        ids, x = load_embeddings(args.train)
    if sc.norm == "as" and sc.top_k > len(x):
        raise DataError(f"{args.train}: scoring.top_k {sc.top_k} exceeds cohort size {len(x)}")
    return ids, x


def _prepare(backend: Backend, raw: np.ndarray, ids: Sequence[str], path: str) -> np.ndarray:
    """``backend.prepare``, with a failure (a zero embedding) named by utterance."""
    try:
        return backend.prepare(raw)
    except ValueError as e:
        zero = [ids[i] for i in np.flatnonzero(~np.any(raw, axis=1))[:5]]
        hint = f" (all-zero embedding(s): {' '.join(zero)})" if zero else ""
        raise DataError(f"{path}: {e}{hint}") from None


def _load_side(
    path: str, all_ids: list[str], codes: np.ndarray
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(ids, raw matrix, row index per trial)`` for one side's utterances."""
    used = np.unique(codes)
    ids, raw = load_embeddings(path, [all_ids[c] for c in used])
    row_of_code = np.empty(len(all_ids), dtype=np.int64)
    row_of_code[used] = np.arange(len(used))
    return ids, raw, row_of_code[codes]


def check_paths(args: argparse.Namespace) -> None:
    """The command's inputs and outputs, named once (sslsv.cli.check_io): neither the score
    file nor the back end written may be an input, nor each other."""
    inputs = {
        "--config": args.config,
        "--trials": args.trials,
        "--enroll": args.enroll,
        "--test": args.test,
        "--train": args.train,
        "--train-utt2spk": args.train_utt2spk,
        "--calibration": args.calibration,
        **cli.numbered("--utt2dur", args.utt2dur),
    }
    cli.check_io(inputs, files={"--backend-model": args.backend_model})
    cli.check_io({**inputs, "--backend-model": args.backend_model}, files={"--output": args.output})


def scored_model(args: argparse.Namespace) -> ModelFile | None:
    """The model file whose embeddings are scored, from the extraction stamps of
    --enroll and --test (None: not known for one of them). Sides made by different models,
    or a --train of another model than theirs, are refused: their scores mean nothing."""
    sides = {"--enroll": embeddings_model(args.enroll)}
    same = _same_file(args.enroll, args.test)
    sides["--test"] = sides["--enroll"] if same else embeddings_model(args.test)
    if args.train:
        sides["--train"] = embeddings_model(args.train)
    known = {k: v for k, v in sides.items() if v is not None}
    first = next(iter(known), None)
    for option, model in known.items():
        if not same_model_file(known[first], model):
            raise DataError(
                f"{option} {getattr(args, option[2:])}: made by model {model['path']}, but "
                f"{first} {getattr(args, first[2:])} by {known[first]['path']} (or by that file "
                "before it changed): score embeddings of one model"
            )
    return None if sides["--enroll"] is None or sides["--test"] is None else sides["--enroll"]


def score(args: argparse.Namespace) -> None:
    check_paths(args)
    sc = scoring_config(args)
    start = time.time()
    trials = read_trials(args.trials)
    if not trials:
        raise DataError(f"{args.trials}: no trials")
    enrolls = [t[0] for t in trials]
    tests = [t[1] for t in trials]
    del trials
    vocab: dict[str, int] = {}  # utterance id -> code, first enrolls then tests
    enroll_codes = id_codes(enrolls, vocab)
    test_codes = id_codes(tests, vocab)
    check_unique_pairs(args.trials, enrolls, tests, pair_codes(enroll_codes, test_codes))
    model = scored_model(args)
    calibration = quality = None
    if args.calibration:  # checked before any scoring work
        calibration = Calibration.from_json(args.calibration)
        calibration.check_scoring(dataclasses.asdict(sc), args.calibration)
        fingerprint = None if model is None else recorded_fingerprint(model, args.enroll)
        calibration.check_model(
            fingerprint,
            args.calibration,
            f"the model of these embeddings ({model and model['path']})",
        )
        quality = calibration.quality_for(enrolls, tests, args.utt2dur, args.calibration)
    backend = get_backend(args, sc)

    all_ids = list(vocab)
    if _same_file(args.enroll, args.test):
        # One matrix whose rows follow the codes: trials index it directly.
        _, raw = load_embeddings(args.enroll, all_ids)
        enroll_x = test_x = _prepare(backend, raw, all_ids, args.enroll)
        enroll_ids = test_ids = all_ids
        enroll_idx, test_idx = enroll_codes, test_codes
    else:
        enroll_ids, raw, enroll_idx = _load_side(args.enroll, all_ids, enroll_codes)
        enroll_x = _prepare(backend, raw, enroll_ids, args.enroll)
        test_ids, raw, test_idx = _load_side(args.test, all_ids, test_codes)
        test_x = _prepare(backend, raw, test_ids, args.test)
    del raw
    log.info("%d trials over %d embeddings", len(enrolls), len(all_ids))

    scores = backend.score_pairs(enroll_x, test_x, enroll_idx, test_idx)
    if sc.norm != "none":
        cohort_ids, cohort_raw = _cohort(args, sc)
        cohort = _prepare(backend, cohort_raw, cohort_ids, args.train)
        try:
            scores = score_norm(
                backend,
                scores,
                enroll_x,
                test_x,
                enroll_idx,
                test_idx,
                cohort,
                sc.norm,
                sc.top_k,
                enroll_ids,
                test_ids,
            )
        except ValueError as e:
            raise DataError(f"{args.train}: {e}") from None
    if calibration is not None:
        scores = calibration.apply(scores, quality)
    remove_stamp(args.output)  # a failure below leaves no stamp that describes other scores
    write_scores(args.output, enrolls, tests, scores)
    write_scores_stamp(
        args.output,
        model,
        dataclasses.asdict(sc),
        None if calibration is None else calibration.model,
    )
    log.info(
        "wrote %s (%s, norm %s%s) in %.1fs",
        args.output,
        sc.backend,
        sc.norm,
        ", calibrated LLRs" if calibration is not None else "",
        time.time() - start,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(score, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
