"""Validation during training: EER and minDCF on held-out speakers (``train.validation``).

A :class:`Validator` is built once before training: it reads the validation data dir's
audio sources and its trial list, checks them (so a bad path fails at the start, not after
the first epoch) and, with ``max_trials > 0``, draws a seeded subset of the trials that
keeps both classes; only the utterances of the chosen trials are ever embedded. Each
:meth:`Validator.run` embeds them with the model in eval mode (the stage-3 engine,
:func:`sslsv.extraction.embed_data_dir`), scores the trials by plain cosine similarity (no
mean subtraction, no score normalisation) and returns the EER (percent) and minDCF.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from sslsv import selection
from sslsv.backend.scoring import cosine_scores
from sslsv.config.schema import Config, ExtractConfig
from sslsv.datadir.io import read_audio_sources, read_trials
from sslsv.errors import ConfigError, DataError
from sslsv.extraction import embed_data_dir
from sslsv.metrics import compute_eer, compute_min_dcf
from sslsv.models.embedding import EmbeddingModel

#: Seed of the ``max_trials`` subset: the same trials at every epoch and in every run.
SUBSET_SEED = 0


def subset_trials(
    trials: list[tuple[str, str, bool]], max_trials: int, seed: int = SUBSET_SEED
) -> list[tuple[str, str, bool]]:
    """A seeded subset of ``max_trials`` trials (all when ``max_trials`` is 0 or at least
    their number), in file order, with targets and non-targets in about their original
    proportion and at least one of each."""
    if max_trials <= 0 or max_trials >= len(trials):
        return list(trials)
    labels = np.array([t[2] for t in trials])
    targets, nontargets = np.flatnonzero(labels), np.flatnonzero(~labels)
    n_tar = round(max_trials * len(targets) / len(trials))
    n_tar = min(max(n_tar, 1, max_trials - len(nontargets)), max_trials - 1, len(targets))
    rng = np.random.default_rng(seed)
    chosen = np.concatenate(
        [
            rng.choice(targets, n_tar, replace=False),
            rng.choice(nontargets, max_trials - n_tar, replace=False),
        ]
    )
    return [trials[i] for i in np.sort(chosen)]


class Validator:
    """EER and minDCF of a model on the trials of ``cfg.train.validation``.

    Built once before training; raises a one-line :class:`DataError` (or
    :class:`ConfigError`) naming the file when the data dir, its audio sources or the trial
    list is missing or bad, or when a trial names an utterance that is not in the data dir.
    """

    def __init__(self, cfg: Config, device: torch.device) -> None:
        v = cfg.train.validation
        if not v.data_dir:
            raise ConfigError("train.validation.data_dir is empty: validation is off")
        self.label_free = v.label_free
        #: What ``select_best`` minimises: a key of :meth:`run`'s result.
        self.measure = "split_eer" if v.label_free else "eer"
        self.every_epochs = v.every_epochs
        self.device = torch.device(device)
        self.p_target = (cfg.scoring.p_target or [0.01])[0]
        if v.label_free:  # audio only: no trial list, no utt2spk
            self.data_dir = Path(v.data_dir)
            self.pairs = selection.read_split_pairs(
                v.data_dir, cfg.features.sample_rate, v.split_crop_seconds, v.max_utts
            )
            return
        if v.max_trials == 1:
            raise ConfigError("train.validation.max_trials must be 0 (all) or at least 2")
        self.data_dir = Path(v.data_dir)
        if not self.data_dir.is_dir():
            raise DataError(f"{self.data_dir}: validation data dir not found")
        self.trials_path = Path(v.trials) if v.trials else self.data_dir / "trials"
        self.options = ExtractConfig(
            crop_seconds=v.crop_seconds,
            num_crops=v.num_crops,
            batch_size=cfg.extract.batch_size,
            num_workers=0,
        )
        sources = read_audio_sources(self.data_dir)
        all_trials = read_trials(self.trials_path)
        for lineno, (enroll, test, _) in enumerate(all_trials, 1):
            for utt in (enroll, test):
                if utt not in sources:
                    raise DataError(
                        f"{self.trials_path}:{lineno}: utterance {utt!r} is not in {self.data_dir}"
                    )
        n_target = sum(t[2] for t in all_trials)
        if n_target == 0 or n_target == len(all_trials):
            raise DataError(
                f"{self.trials_path}: need both target and non-target trials, got "
                f"{n_target} target and {len(all_trials) - n_target} non-target"
            )
        self.total_trials = len(all_trials)
        self.trials = subset_trials(all_trials, v.max_trials)
        #: The utterances that the chosen trials use, in data-dir order.
        needed = {u for e, t, _ in self.trials for u in (e, t)}
        self.utts: list[str] = [u for u in sources if u in needed]
        index = {u: i for i, u in enumerate(self.utts)}
        self._enroll = np.array([index[e] for e, _, _ in self.trials], dtype=np.int64)
        self._test = np.array([index[t] for _, t, _ in self.trials], dtype=np.int64)
        self.labels = np.array([y for _, _, y in self.trials], dtype=bool)

    def embed(self, model: EmbeddingModel) -> np.ndarray:
        """(utterances, D) embeddings of :attr:`utts`, in that order, by ``model`` in eval
        mode under ``torch.inference_mode``; the model's train/eval mode is restored.

        Whole utterances (``crop_seconds`` 0, the default) run with cuDNN autotuning off,
        which the trainer turns on for its fixed-size training crops: every new utterance
        length would be tuned again. :func:`embed_data_dir` does it, restoring the setting;
        fixed-length crops keep it."""
        was_training = model.training
        out: dict[str, np.ndarray] = {}
        model.eval()
        try:
            with torch.inference_mode():
                embed_data_dir(
                    model,
                    self.data_dir,
                    False,
                    self.device,
                    out.__setitem__,
                    self.options,
                    utts=set(self.utts),
                )
        finally:
            model.train(was_training)
        return np.stack([out[u] for u in self.utts])

    def run(self, model: EmbeddingModel) -> dict[str, float]:
        """``{"eer": EER in percent (0-100), "min_dcf": normalised minDCF at p_target =
        cfg.scoring.p_target[0], "seconds": wall time of embedding and scoring}``; with
        ``label_free`` :func:`sslsv.selection.criterion`'s keys and "seconds".

        Scores are plain cosine similarities of the (L2-normalised) embeddings.
        """
        start = time.perf_counter()
        if self.label_free:
            result = selection.evaluate(model, self.pairs, self.device)
            return {**result, "seconds": time.perf_counter() - start}
        embeddings = self.embed(model)
        scores = cosine_scores(embeddings, embeddings, self._enroll, self._test)
        eer, _ = compute_eer(scores, self.labels)
        min_dcf, _ = compute_min_dcf(scores, self.labels, self.p_target)
        return {
            "eer": 100.0 * eer,
            "min_dcf": min_dcf,
            "seconds": time.perf_counter() - start,
        }

    def line(self, result: dict[str, float]) -> str:
        """A result in words, for train.log."""
        if self.label_free:
            return (
                f"split-utterance EER {result['split_eer']:.2f}% alignment "
                f"{result['alignment']:.4f} uniformity {result['uniformity']:.4f} (no labels) "
                f"time {result['seconds']:.1f}s"
            )
        return (
            f"EER {result['eer']:.2f}% minDCF(p={self.p_target:g}) {result['min_dcf']:.4f} "
            f"time {result['seconds']:.1f}s"
        )

    def describe(self) -> str:
        """The protocol in words, for the log."""
        if self.label_free:
            return (
                f"validation without labels: split-utterance EER of {len(self.pairs.utts):,} "
                f"utterances of {self.data_dir} (audio only), every {self.every_epochs} epoch(s)"
            )
        n_tar = int(self.labels.sum())
        subset = "" if len(self.trials) == self.total_trials else f" of {self.total_trials:,}"
        return (
            f"validation: {len(self.trials):,}{subset} trials ({n_tar:,} target, "
            f"{len(self.trials) - n_tar:,} non-target) of {self.trials_path}, "
            f"{len(self.utts):,} utterances of {self.data_dir}, {self.options.describe()}, "
            f"cosine; EER and minDCF(p={self.p_target:g}) every {self.every_epochs} epoch(s)"
        )
