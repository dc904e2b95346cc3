"""NT-Xent with an additive margin on the positive pair (NT-Xent-AM) and its variants; the
additive-angular-margin softmax (AAM, ArcFace) of the classifier.

For L2-normalised anchors a_i, positives p_i and negatives n_ij, with scale s = 1/T:

    loss_i = -log( P_i / (P_i + sum_j e^{s cos(a_i, n_ij)}) ),  P_i = e^{s (cos(a_i, p_i) - m)}

``m = 0`` is plain NT-Xent. Every variant is a choice of anchors, candidates and which
candidate is the positive; the margin and the cross-entropy are shared.

Every loss here computes its products and its cross-entropy in float32, also under bf16
autocast (:func:`sslsv.devices.full_precision`), and builds its masks by comparisons on the
device: a training step never waits for a GPU because of a loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sslsv.devices import at_least_float32, full_precision


def margin_logits_loss(
    cos: torch.Tensor,
    positive: torch.Tensor,
    scale: float,
    margin: float,
    mask: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy over scaled cosines with ``margin`` subtracted at each row's positive.

    ``cos``: (A, C) cosine similarities of A anchors to C candidates; ``positive``: (A,) the
    positive's column per row; ``mask``: (A, C) True where a candidate is excluded (the
    anchor itself). Returns (mean loss, top-1 accuracy of the positive, without margin).
    """
    rows = torch.arange(cos.shape[0], device=cos.device)
    accuracy_logits = cos if mask is None else cos.masked_fill(mask, float("-inf"))
    accuracy = (accuracy_logits.argmax(dim=1) == positive).float().mean()
    logits = cos.clone()
    logits[rows, positive] -= margin
    logits = logits * scale
    if mask is not None:
        logits = logits.masked_fill(mask, float("-inf"))
    return F.cross_entropy(logits, positive), accuracy.detach()


def nt_xent_am(
    z1: torch.Tensor,
    z2: torch.Tensor,
    scale: float = 30.0,
    margin: float = 0.1,
    symmetric: bool = True,
    offset: int = 0,
    z1_all: torch.Tensor | None = None,
    z2_all: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """NT-Xent-AM of the local anchors ``z1``, ``z2`` (N, D) against a candidate batch:
    (mean loss, top-1 accuracy of the positives without margin), both 0-dim tensors.

    Candidates are ``z1_all``, ``z2_all`` (the global batch gathered over processes, with
    gradients) or, by default, the local batch itself; ``offset`` is the index of the first
    local row within them. Symmetric: both views are anchors against both views (2N - 2
    negatives each). Asymmetric: view-1 anchors against view-2 candidates only (N - 1).
    """
    with full_precision(z1.device.type):
        z1, z2 = (
            F.normalize(at_least_float32(z1), dim=-1),
            F.normalize(at_least_float32(z2), dim=-1),
        )
        z1_all = z1 if z1_all is None else F.normalize(at_least_float32(z1_all), dim=-1)
        z2_all = z2 if z2_all is None else F.normalize(at_least_float32(z2_all), dim=-1)
        n, total = z1.shape[0], z1_all.shape[0]
        local = torch.arange(n, device=z1.device) + offset
        if not symmetric:
            return margin_logits_loss(z1 @ z2_all.T, local, scale, margin, None)
        anchors = torch.cat([z1, z2])
        candidates = torch.cat([z1_all, z2_all])
        cos = anchors @ candidates.T
        # Row i of view 1 has its positive at total + i (view 2); row i of view 2 at i.
        positive = torch.cat([local + total, local])
        self_column = torch.cat([local, local + total])
        # A comparison, not `mask[rows, self_column] = True`: assigning a Python scalar
        # through indices copies it to the device, a synchronisation at every step.
        columns = torch.arange(2 * total, device=z1.device)
        mask = columns[None, :] == self_column[:, None]
        return margin_logits_loss(cos, positive, scale, margin, mask)


def margin_at(progress: float, margin: float, warmup: float) -> float:
    """Margin after ``progress`` (0-1) of training, ramped linearly over ``warmup``."""
    if warmup <= 0:
        return margin
    return margin * min(1.0, max(0.0, progress) / warmup)


def aam_logits(
    cos: torch.Tensor, labels: torch.Tensor, scale: float, margin: float
) -> torch.Tensor:
    """Additive angular margin (ArcFace) logits: ``s cos(theta_y + m)`` at each row's label,
    ``s cos(theta_j)`` elsewhere.

    Where ``theta_y + m`` would pass pi, ``cos`` stops decreasing; there the target logit is
    ``s (cos(theta_y) - m sin(m))`` instead (the usual continuation, also WeSpeaker's), so
    the logit keeps falling as the angle grows. ``cos``: (B, C) cosines to the class centres.
    """
    target = cos.gather(1, labels[:, None]).clamp(-1.0, 1.0)
    sin = torch.sqrt((1.0 - target * target).clamp_min(1e-12))
    with_margin = target * math.cos(margin) - sin * math.sin(margin)
    with_margin = torch.where(
        target > math.cos(math.pi - margin), with_margin, target - margin * math.sin(margin)
    )
    return (cos.scatter(1, labels[:, None], with_margin)) * scale


def class_cosines(cos: torch.Tensor, subcenters: int) -> torch.Tensor:
    """(B, C * subcenters) cosines to the centres -> (B, C) cosines to the classes, each its
    nearest centre's, in at least float32."""
    cos = at_least_float32(cos)
    return cos.unflatten(1, (-1, subcenters)).amax(dim=2) if subcenters > 1 else cos


def aam_softmax_with_accuracy(
    cos: torch.Tensor,
    labels: torch.Tensor,
    scale: float = 30.0,
    margin: float = 0.2,
    subcenters: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean AAM-softmax cross-entropy and top-1 accuracy (without margin) of ``cos``:
    (B, C * subcenters) cosines of embeddings to the class centres, the ``subcenters``
    centres of class c in columns ``c * subcenters ... (c + 1) * subcenters - 1``; a class's
    cosine is that of its nearest centre (sub-centre ArcFace, robust to noisy labels)."""
    with full_precision(cos.device.type):
        cos = class_cosines(cos, subcenters)
        accuracy = (cos.argmax(dim=1) == labels).float().mean()
        loss = F.cross_entropy(aam_logits(cos, labels, scale, margin), labels)
    return loss, accuracy.detach()


def aam_softmax_rows(
    cos: torch.Tensor,
    labels: torch.Tensor,
    scale: float = 30.0,
    margin: float = 0.2,
    subcenters: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row of ``cos`` (as :func:`aam_softmax_with_accuracy`): the AAM-softmax
    cross-entropy (B,), the predicted class (B,) and its softmax probability without margin
    (B,), the confidence that label correction reads (:mod:`sslsv.methods.gating`)."""
    with full_precision(cos.device.type):
        cos = class_cosines(cos, subcenters)
        losses = F.cross_entropy(aam_logits(cos, labels, scale, margin), labels, reduction="none")
        confidence, prediction = F.softmax(cos.detach() * scale, dim=1).max(dim=1)
    return losses, prediction, confidence


def dino_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    center: torch.Tensor,
    student_temperature: float,
    teacher_temperature: float,
) -> torch.Tensor:
    """DINO's cross-entropy between teacher and student crops (Caron et al., 2021).

    ``student``: (S, B, K) head outputs of the S crops of B utterances, the teacher's crops
    first; ``teacher``: (T, B, K) the teacher's outputs of those T crops; ``center``: (K,).
    For every pair of a teacher crop t and a different student crop s,
    ``H(t, s) = -sum_k q_tk log p_sk`` with ``q = softmax((teacher - center) / T_t)`` and
    ``p = softmax(student / T_s)``; the loss is the mean of H over the batch and over the
    ``T * S - T`` pairs.
    """
    crops_t, batch = teacher.shape[0], teacher.shape[1]
    with full_precision(student.device.type):
        q = F.softmax((at_least_float32(teacher) - center) / teacher_temperature, dim=-1)
        log_p = F.log_softmax(at_least_float32(student) / student_temperature, dim=-1)
        cross = -torch.einsum("tbk,sbk->ts", q, log_p) / batch  # (T, S) mean over the batch
        # Teacher crop t is student crop t: eye on the device (no scalar copied to it).
        same = torch.eye(crops_t, cross.shape[1], dtype=torch.bool, device=cross.device)
        return cross.masked_fill(same, 0.0).sum() / (cross.numel() - crops_t)
