"""Loss-gated training with label correction: the second stage as the label-free systems
that reach supervised accuracy run it.

Pseudo-labels from clustering are partly wrong, and a classifier fits its wrong labels last:
their losses stay high (the memorisation effect). Loss-gated learning (Tao et al., ICASSP
2022) drops utterances whose loss is above a gate from the gradient; its dynamic version with
label correction (DLG-LC, Han et al., 2022) sets the gate each epoch where the two
components of a 1-D Gaussian mixture fitted to the epoch's losses are equally likely, and
gives an utterance above the gate whose prediction is confident the predicted class for the
following epochs. Miara, Lepage and Dehak (2024) run the same gate and correction over their
rounds.

:class:`LossGate` keeps, per training utterance, its current label and its last loss,
prediction and confidence. Every process writes the global batch's rows (gathered), so
every process holds the whole table, checkpoints from rank 0 are complete and the mixture
fitted at the end of an epoch is the same everywhere: the losses and the fit are global, and
a run resumes on any number of processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from sslsv import distributed
from sslsv.config.schema import checked

GateKind = Literal["none", "fixed", "gmm"]


@dataclass
class GateConfig:
    """Which utterances train: ``kind`` none (all), fixed (those whose loss is at most
    ``threshold``) or gmm (at most the crossing point of a two-component Gaussian mixture
    fitted to the previous epoch's losses, when the two components are apart: Ashman's D
    of at least ``min_separation``; else every utterance, the losses being one skewed mode
    rather than clean and wrong labels). The first ``start_epoch`` epochs train on every
    utterance (their losses are the first fit's)."""

    kind: GateKind = "none"
    threshold: float = checked(0.0, minimum=0)  # fixed: the largest loss that trains
    start_epoch: int = checked(1, minimum=0)
    min_separation: float = checked(2.0, minimum=0)  # gmm: Ashman's D of its components


@dataclass
class CorrectionConfig:
    """Label correction: at the end of an epoch, an utterance above the gate whose
    predicted class is not its label and has a softmax probability of at least
    ``confidence`` (``method.scale`` times the cosines, no margin) takes that class as its
    label. Needs a gate (``method.gate.kind`` fixed or gmm)."""

    enabled: bool = False
    confidence: float = checked(0.9, above=0, maximum=1)


@dataclass(frozen=True)
class Mixture:
    """A two-component 1-D Gaussian mixture, components in increasing order of mean."""

    weights: tuple[float, float]
    means: tuple[float, float]
    variances: tuple[float, float]
    log_likelihood: float  # mean per sample


def fit_two_gaussians(x: np.ndarray, iters: int = 200, tol: float = 1e-8) -> Mixture:
    """Maximum-likelihood two-component 1-D Gaussian mixture of ``x`` by EM, started from
    the lower and upper halves of the sorted data (deterministic)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size < 2:
        raise ValueError(f"a two-component mixture needs at least 2 values, got {x.size}")
    floor = 1e-6 * max(float(x.var()), 1e-12)  # keeps a component from collapsing on a point
    halves = np.array_split(np.sort(x), 2)
    weights = np.array([0.5, 0.5])
    means = np.array([h.mean() for h in halves])
    variances = np.array([max(h.var(), floor) for h in halves])
    previous = -np.inf
    log_likelihood = previous
    for _ in range(iters):
        # E step, in the log domain.
        log_p = (
            np.log(weights)
            - 0.5 * np.log(2 * np.pi * variances)
            - 0.5 * (x[:, None] - means) ** 2 / variances
        )
        top = log_p.max(axis=1, keepdims=True)
        log_norm = top + np.log(np.exp(log_p - top).sum(axis=1, keepdims=True))
        resp = np.exp(log_p - log_norm)
        log_likelihood = float(log_norm.mean())
        # M step.
        counts = resp.sum(axis=0) + 1e-12
        weights = counts / x.size
        means = (resp * x[:, None]).sum(axis=0) / counts
        variances = np.maximum((resp * (x[:, None] - means) ** 2).sum(axis=0) / counts, floor)
        if log_likelihood - previous < tol:
            break
        previous = log_likelihood
    order = np.argsort(means)
    return Mixture(
        tuple(float(w) for w in weights[order]),
        tuple(float(m) for m in means[order]),
        tuple(float(v) for v in variances[order]),
        log_likelihood,
    )


def separation(mixture: Mixture) -> float:
    """Ashman's D of the two components: sqrt(2) |m1 - m2| / sqrt(v1 + v2); above 2, the
    mixture is bimodal (the components' modes are apart)."""
    (m1, m2), (v1, v2) = mixture.means, mixture.variances
    return math.sqrt(2) * abs(m2 - m1) / math.sqrt(v1 + v2)


def crossing_point(mixture: Mixture) -> float:
    """The loss between the two means where both components are equally likely a
    posteriori (w1 N(x; m1, v1) = w2 N(x; m2, v2)); ``inf`` (no gate) when there is none
    there (one component dominates everywhere between the means)."""
    (w1, w2), (m1, m2), (v1, v2) = mixture.weights, mixture.means, mixture.variances
    # log w1 - log v1 / 2 - (x - m1)^2 / (2 v1) = the same for component 2: a x^2 + b x + c = 0
    a = 0.5 / v2 - 0.5 / v1
    b = m1 / v1 - m2 / v2
    c = 0.5 * m2**2 / v2 - 0.5 * m1**2 / v1 + math.log(w1 / w2) - 0.5 * math.log(v1 / v2)
    if abs(a) < 1e-12 * max(abs(b), 1e-12):
        roots = [-c / b] if b != 0 else []
    else:
        disc = b * b - 4 * a * c
        roots = [] if disc < 0 else [(-b + s * math.sqrt(disc)) / (2 * a) for s in (1, -1)]
    between = [r for r in roots if m1 <= r <= m2]
    return min(between) if between else math.inf


class LossGate(nn.Module):
    """The per-utterance tables of a gated classifier, in buffers (checkpoints keep them).

    ``labels``: the current class of every training utterance (-1 until the trainer gives
    them: :meth:`attach`); ``threshold``: the gate of this epoch (inf: every utterance
    trains); ``loss``, ``prediction``, ``confidence``, ``seen``: the last values of this
    epoch's steps, per utterance."""

    def __init__(self, gate: GateConfig, correction: CorrectionConfig) -> None:
        super().__init__()
        self.gate = gate
        self.correction = correction
        for name, dtype in [
            ("labels", torch.long),
            ("original", torch.long),
            ("loss", torch.float32),
            ("prediction", torch.long),
            ("confidence", torch.float32),
            ("seen", torch.bool),
        ]:
            self.register_buffer(name, torch.zeros(0, dtype=dtype))
        self.register_buffer("threshold", torch.tensor(math.inf))

    @property
    def enabled(self) -> bool:
        return self.gate.kind != "none"

    def attach(self, labels: torch.Tensor) -> None:
        """Size the tables for the training set: ``labels`` (N,) its class indices."""
        n = labels.shape[0]
        self.labels = labels.clone().long()
        self.original = labels.clone().long()
        self.loss = torch.zeros(n)
        self.prediction = torch.full((n,), -1, dtype=torch.long)
        self.confidence = torch.zeros(n)
        self.seen = torch.zeros(n, dtype=torch.bool)
        if self.gate.kind == "fixed" and self.gate.start_epoch == 0:
            self.threshold.fill_(self.gate.threshold)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # The tables' size is the training set's: take the checkpoint's shape.
        for name, _ in self.named_buffers(recurse=False):
            key = prefix + name
            if key in state_dict:
                setattr(self, name, torch.empty_like(state_dict[key], device=self.threshold.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def labels_of(self, indices: torch.Tensor) -> torch.Tensor:
        """The current (corrected) labels of the training-set rows ``indices``."""
        return self.labels[indices]

    def keep(self, losses: torch.Tensor) -> torch.Tensor:
        """(B,) bool: the rows whose loss passes this epoch's gate."""
        return losses.detach() <= self.threshold

    @torch.no_grad()
    def record(
        self,
        indices: torch.Tensor,
        losses: torch.Tensor,
        prediction: torch.Tensor,
        confidence: torch.Tensor,
    ) -> torch.Tensor:
        """Write the global batch's rows (gathered from every process); returns the global
        batch's number of rows that pass the gate (a 0-dim device tensor)."""
        indices = distributed.gather_no_grad(indices)
        losses = distributed.gather_no_grad(losses.detach().float())
        self.loss[indices] = losses
        self.prediction[indices] = distributed.gather_no_grad(prediction)
        self.confidence[indices] = distributed.gather_no_grad(confidence.detach().float())
        self.seen.index_fill_(0, indices, True)
        return self.keep(losses).sum()

    @torch.no_grad()
    def end_epoch(self, epoch: int) -> dict[str, float]:
        """After the steps of epoch ``epoch`` (0-based): the gate for the next epoch and the
        label correction; returns what the epoch's log line reports (one host read of the
        tables: once an epoch)."""
        seen = self.seen.cpu().numpy()
        losses = self.loss.cpu().numpy()[seen]
        report: dict[str, float] = {}
        if losses.size:
            report["kept"] = float((losses <= self.threshold.item()).mean())
        threshold = math.inf
        if epoch + 1 >= self.gate.start_epoch:
            if self.gate.kind == "fixed":
                threshold = self.gate.threshold
            elif self.gate.kind == "gmm" and losses.size >= 2:
                mixture = fit_two_gaussians(losses)
                report["clean_mean"], report["noisy_mean"] = mixture.means
                report["noisy_share"] = mixture.weights[1]
                report["separation"] = separation(mixture)
                if report["separation"] >= self.gate.min_separation:
                    threshold = crossing_point(mixture)
        report["next_threshold"] = threshold
        if self.correction.enabled and math.isfinite(threshold):
            report["corrected"] = float(self.correct(threshold))
        report["changed"] = float((self.labels != self.original).sum().item())
        self.threshold.fill_(threshold)
        self.seen.zero_()
        return report

    def correct(self, threshold: float) -> int:
        """Relabel the utterances of this epoch above ``threshold`` whose confident
        prediction is another class; returns how many."""
        change = (
            self.seen
            & (self.loss > threshold)
            & (self.confidence >= self.correction.confidence)
            & (self.prediction >= 0)
            & (self.prediction != self.labels)
        )
        self.labels[change] = self.prediction[change]
        return int(change.sum().item())
