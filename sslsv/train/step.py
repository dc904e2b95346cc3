"""One training step: waveform crops on the device -> augmentation (whole batch) -> log-mels
(optionally masked) -> the method's loss -> an optimizer step.

Random choices come from generators seeded by (seed, epoch, step) and are drawn for the
global batch, each process taking its rows: the augmentation does not depend on how the
batch is split over processes, and a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from sslsv import distributed
from sslsv.augment.build import build_augmenter
from sslsv.augment.specmask import apply_masks, masking_enabled, sample_masks
from sslsv.config.schema import Config
from sslsv.devices import upload
from sslsv.methods import Method, Metrics, StepInfo
from sslsv.train.dataset import crops_to_device


def step_seed(seed: int, epoch: int, step: int) -> int:
    """The seed of a step's augmentation choices (drawn for the global batch, so it has no
    rank term): distinct for every (seed, epoch, step)."""
    return ((seed * 1_000_003 + epoch) * 1_000_003 + step) * 1_009 % (2**63 - 1)


class TrainStep:
    """The step of a trainer: its augmenter, spec masks, precision and optimizer.

    ``crops``: (crops, samples) per crop length of the method's crop plan. ``forward`` is
    what the step calls with the features: the method, or its DDP wrapper (set by the
    trainer once the method's state is final)."""

    def __init__(
        self,
        cfg: Config,
        method: Method,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        crops: list[tuple[int, int]],
        steps_per_epoch: int,
    ) -> None:
        self.cfg = cfg
        self.method = method
        self.forward: nn.Module = method
        self.optimizer = optimizer
        self.device = device
        self.steps_per_epoch = steps_per_epoch
        self.rank, self.world = distributed.rank(), distributed.world_size()
        rate = cfg.features.sample_rate
        self.augmenter = build_augmenter(cfg.augment, rate, device, crops[0][1])
        if self.augmenter is not None:
            for _, samples in crops[1:]:
                self.augmenter.prepare(device, samples)
        self.spec_masking = masking_enabled(cfg.augment)

    def __call__(
        self,
        crops: torch.Tensor | list[torch.Tensor],
        epoch: int,
        step: int,
        labels: torch.Tensor | None = None,
        indices: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Metrics]:
        """One optimizer step on (B, views, L) waveform crops (or a list of them, one per
        crop length: multi-crop), with their (B,) class indices (-1 for methods without
        labels) and training-set indices; returns (loss, metrics): the global-batch mean
        loss, a 0-dim device tensor, and the method's metrics by name, each a 0-dim device
        tensor (global-batch mean) or a Python float (a schedule's value, e.g. the margin)."""
        tc = self.cfg.train
        groups = [crops] if isinstance(crops, torch.Tensor) else list(crops)
        groups = [crops_to_device(g, self.device) for g in groups]  # int16 -> float32 there
        if labels is not None:
            labels = upload(labels, self.device)
        if indices is not None:
            indices = upload(indices, self.device)
        global_step = epoch * self.steps_per_epoch + step
        total_steps = tc.epochs * self.steps_per_epoch
        info = StepInfo(global_step / total_steps, epoch, global_step, indices)
        # One generator per step for the waveforms and one for the masks, drawn group
        # after group.
        augment_generator = torch.Generator().manual_seed(step_seed(tc.seed, epoch, step))
        mask_generator = torch.Generator().manual_seed(
            (step_seed(tc.seed, epoch, step) + 1) % (2**63 - 1)
        )
        autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if tc.precision == "bf16"
            else contextlib.nullcontext()
        )
        with autocast:
            feats = [self.features(g, augment_generator, mask_generator) for g in groups]
            feats = feats[0] if isinstance(crops, torch.Tensor) or len(feats) == 1 else feats
            loss, metrics = self.forward(feats, labels, info)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        # Logged values are global-batch means (the local loss is this process's share): the
        # loss and the method's tensor metrics in one all-reduce; floats (schedules) as they are.
        names = [k for k, v in metrics.items() if isinstance(v, torch.Tensor)]
        logged = distributed.all_reduce_mean(
            torch.stack([loss.detach().float(), *(metrics[k].detach().float() for k in names)])
        )
        return logged[0], {**metrics, **dict(zip(names, logged[1:]))}

    def features(
        self,
        waves: torch.Tensor,
        augment_generator: torch.Generator,
        mask_generator: torch.Generator,
    ) -> torch.Tensor:
        """(B, views, L) waveforms on the device -> augmented, masked (B, views, n_mels, T)."""
        batch, views, length = waves.shape
        flat = waves.reshape(batch * views, length)
        if self.augmenter is not None:
            rows = flat.shape[0]
            params = self.augmenter.sample_params(rows * self.world, length, augment_generator)
            flat = self.augmenter.apply(flat, params.rows(self.rank * rows, (self.rank + 1) * rows))
        feats = self.method.model.fbank(flat)
        if self.spec_masking:
            # Drawn for the global batch, like the waveform augmentation's choices.
            rows, n_mels, frames = feats.shape
            masks = sample_masks(
                rows * self.world, n_mels, frames, self.cfg.augment, mask_generator
            )
            feats = apply_masks(feats, masks.rows(self.rank * rows, (self.rank + 1) * rows))
        return feats.reshape(batch, views, *feats.shape[1:])
