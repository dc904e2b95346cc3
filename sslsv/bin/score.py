"""Score a trial list with a cosine or PLDA back end, optionally score-normalised.

Writes ``enroll test score`` per trial, in the trial list's order. Example::

    python -m sslsv.bin.score --backend plda --lda-dim 200 \\
        --train exp/x/embeddings/train/embeddings.scp --train-utt2spk data/train/utt2spk \\
        --backend-model exp/x/backend/plda.npz \\
        --trials data/test/trials --enroll exp/x/embeddings/test/embeddings.scp \\
        --test exp/x/embeddings/test/embeddings.scp \\
        --norm as --cohort exp/x/embeddings/train/embeddings.scp \\
        --cohort-utt2spk data/train/utt2spk --top-k 300 \\
        --output exp/x/scores/test.scores
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sslsv.backend import (
    NORM_METHODS,
    Backend,
    CosineBackend,
    PLDABackend,
    load_backend,
    load_embeddings,
    load_labelled_embeddings,
    save_backend,
    score_norm,
    speaker_means,
)
from sslsv.data.datadir import read_trials
from sslsv.fileio import DataError, atomic_write
from sslsv.metrics import check_unique_pairs, id_codes, pair_codes


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m sslsv.bin.score",
        description=__doc__.split("\n")[0],
    )
    p.add_argument("--backend", choices=("cosine", "plda"), required=True)
    p.add_argument("--trials", required=True, help="Kaldi trial list")
    p.add_argument("--enroll", required=True, help="embeddings (scp or ark) of enroll ids")
    p.add_argument("--test", required=True, help="embeddings (scp or ark) of test ids")
    p.add_argument("--output", required=True, help="score file to write")
    g = p.add_argument_group("back-end training")
    g.add_argument("--train", help="training embeddings (plda)")
    g.add_argument("--train-utt2spk", help="speaker labels of the training set (plda)")
    g.add_argument("--mean-from", help="cosine: subtract the mean of these embeddings")
    g.add_argument("--lda-dim", type=int, default=0, help="plda: LDA dimension (0: no LDA)")
    g.add_argument("--whiten", action="store_true", help="plda: whiten before LDA/PLDA")
    g.add_argument("--plda-iters", type=int, default=10, help="plda: EM iterations")
    g.add_argument(
        "--backend-model",
        help="trained back end (.npz): loaded if it exists, else trained and saved here",
    )
    g = p.add_argument_group("score normalisation")
    g.add_argument("--norm", choices=NORM_METHODS, default="none")
    g.add_argument("--cohort", help="cohort embeddings (scp or ark)")
    g.add_argument(
        "--cohort-utt2spk", help="use per-speaker mean embeddings of the cohort, by this file"
    )
    g.add_argument("--top-k", type=int, default=300, help="AS-norm: cohort scores per side")
    args = p.parse_args(argv)
    if args.norm != "none" and not args.cohort:
        p.error(f"--norm {args.norm} needs --cohort")
    if args.cohort_utt2spk and not args.cohort:
        p.error("--cohort-utt2spk needs --cohort")
    if args.backend == "cosine" and (args.train or args.train_utt2spk):
        p.error("--train/--train-utt2spk train PLDA; for cosine use --mean-from")
    if args.backend == "plda" and args.mean_from:
        p.error("--mean-from is for cosine; PLDA centres on its --train set")
    if args.top_k < 1:
        p.error("--top-k must be >= 1")
    if args.lda_dim < 0 or args.plda_iters < 0:
        p.error("--lda-dim and --plda-iters must be >= 0")
    return args


def _log(message: str) -> None:
    print(f"[score] {message}", file=sys.stderr, flush=True)


def _train(args: argparse.Namespace) -> Backend:
    if args.backend == "cosine":
        if not args.mean_from:
            return CosineBackend()
        _, x = load_embeddings(args.mean_from)
        return CosineBackend.fit(x)
    if not (args.train and args.train_utt2spk):
        raise DataError(
            "--backend plda needs --train and --train-utt2spk (or an existing --backend-model)"
        )
    _, x, speakers = load_labelled_embeddings(args.train, args.train_utt2spk)
    _log(f"training PLDA on {len(x)} embeddings of {len(set(speakers))} speakers")
    try:
        return PLDABackend.fit(x, speakers, args.lda_dim or None, args.whiten, args.plda_iters)
    except ValueError as e:
        raise DataError(f"{args.train}: {e}") from None


def _wanted_config(args: argparse.Namespace) -> dict:
    if args.backend == "cosine":
        return {"mean_subtraction": bool(args.mean_from)}
    return {"lda_dim": args.lda_dim, "whiten": args.whiten, "n_iter": args.plda_iters}


def get_backend(args: argparse.Namespace) -> Backend:
    """Load ``--backend-model`` if it exists (checking it matches the options), else train."""
    path = args.backend_model
    if path and Path(path).exists():
        backend = load_backend(path)
        if backend.kind != args.backend:
            raise DataError(f"{path}: holds a {backend.kind} back end, not {args.backend}")
        wanted, saved = _wanted_config(args), backend.config()
        diff = {k: (saved[k], v) for k, v in wanted.items() if saved[k] != v}
        if diff:
            shown = ", ".join(f"{k}: saved {s!r}, asked {w!r}" for k, (s, w) in diff.items())
            raise DataError(f"{path}: trained with other options ({shown}); remove it to retrain")
        _log(f"loaded {backend.kind} back end from {path}")
        return backend
    backend = _train(args)
    if path:
        save_backend(path, backend)
        _log(f"saved {backend.kind} back end to {path}")
    return backend


def _same_file(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _cohort(args: argparse.Namespace) -> tuple[list[str], np.ndarray]:
    if args.cohort_utt2spk:
        _, x, speakers = load_labelled_embeddings(args.cohort, args.cohort_utt2spk)
        ids, x = speaker_means(x, speakers)
    else:
        ids, x = load_embeddings(args.cohort)
    if args.norm == "as" and args.top_k > len(x):
        raise DataError(f"{args.cohort}: --top-k {args.top_k} exceeds cohort size {len(x)}")
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


def write_scores(
    path: str | os.PathLike, enrolls: Sequence[str], tests: Sequence[str], scores: np.ndarray
) -> None:
    """Write ``enroll test score`` lines atomically (9 significant digits: float32-exact)."""
    block = 1 << 20
    with atomic_write(path) as f:
        for start in range(0, len(scores), block):
            stop = start + block
            f.write(
                "".join(
                    f"{e} {t} {s:.9g}\n"
                    for e, t, s in zip(
                        enrolls[start:stop], tests[start:stop], scores[start:stop].tolist()
                    )
                )
            )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
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
    backend = get_backend(args)

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
    _log(f"{len(enrolls)} trials over {len(all_ids)} embeddings")

    scores = backend.score_pairs(enroll_x, test_x, enroll_idx, test_idx)
    if args.norm != "none":
        cohort_ids, cohort_raw = _cohort(args)
        cohort = _prepare(backend, cohort_raw, cohort_ids, args.cohort)
        try:
            scores = score_norm(
                backend,
                scores,
                enroll_x,
                test_x,
                enroll_idx,
                test_idx,
                cohort,
                args.norm,
                args.top_k,
                enroll_ids,
                test_ids,
            )
        except ValueError as e:
            raise DataError(f"{args.cohort}: {e}") from None
    write_scores(args.output, enrolls, tests, scores)
    _log(f"wrote {args.output} ({args.backend}, norm {args.norm}) in {time.time() - start:.1f}s")


if __name__ == "__main__":
    try:
        main()
    except DataError as e:
        sys.exit(f"error: {e}")
