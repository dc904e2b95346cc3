"""SSL training loop: single process or torchrun/DDP, CPU or CUDA, exact resume.

Per step: raw waveform crops -> device -> augmentation (whole batch) -> log-mels (optionally
masked) -> method.
Random choices come from generators seeded by (seed, epoch, step, rank), so a resumed run
repeats an uninterrupted one; checkpoints also hold optimizer, scheduler, queue and RNG state.

Before any training (and before any file of the experiment is written) the data is checked:
the dataset, the sampler, the augmentation sets and every utterance's audio header. A
SIGTERM, SIGINT or SIGUSR1 stops training at a step boundary with a checkpoint
(:mod:`sslsv.train.signals`).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

from sslsv import distributed
from sslsv.augment.build import build_augmenter
from sslsv.augment.specmask import apply_masks, masking_enabled, sample_masks
from sslsv.config.load import config_to_dict, save_config
from sslsv.config.schema import Config
from sslsv.devices import enable_tf32, upload
from sslsv.errors import ConfigError, DataError, UserError
from sslsv.fileio import atomic_write
from sslsv.losses import margin_at
from sslsv.methods import StepInfo, build_method, crop_plan, method_class, needs_labels
from sslsv.models.embedding import EmbeddingModel
from sslsv.train import checkpoint, signals
from sslsv.train.dataset import (
    CropDataset,
    GlobalBatchSampler,
    check_training_audio,
    crops_to_device,
    loader_prefetch,
)
from sslsv.train.seed import class_means, start_from_model
from sslsv.train.validation import Validator

log = logging.getLogger(__name__)

#: Utterance ids a non-finite-loss error names; a bigger batch is listed in full in a file.
SHOWN_UTTS = 16


class NonFiniteLossError(UserError, FloatingPointError):
    """The loss became NaN or infinite: bad audio in the batch, or a too high learning
    rate. A UserError (one line, exit status 1): a setting or the data needs changing."""


def _step_seed(seed: int, epoch: int, step: int) -> int:
    """The seed of a step's augmentation choices (drawn for the global batch, so it has no
    rank term): distinct for every (seed, epoch, step)."""
    return ((seed * 1_000_003 + epoch) * 1_000_003 + step) * 1_009 % (2**63 - 1)


def _model_state(method: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k[len("model.") :]: v for k, v in method.state_dict().items() if k.startswith("model.")}


class Trainer:
    def __init__(
        self,
        cfg: Config,
        train_dir: str | Path,
        exp_dir: str | Path,
        device: str = "cpu",
        init_model: str | Path | None = None,
        init_embeddings: str | Path | None = None,
    ) -> None:
        """``init_model``: a model file (``final.pt``) whose encoder, when it is the same
        encoder with the same front end, is the starting point instead of a random one
        (the second stage's classifier starts from its seed model); then a classifier's
        centres start at its classes' mean embeddings from ``init_embeddings`` (the seed's
        embeddings of the training utterances), when given."""
        self.cfg = cfg
        self.exp_dir = Path(exp_dir)
        self.ckpt_dir = self.exp_dir / "checkpoints"
        self.device = distributed.init_from_env(device)
        self.rank, self.world = distributed.rank(), distributed.world_size()
        tc = cfg.train
        if tc.deterministic:
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if self.device.type == "cuda":
            enable_tf32()  # the losses' products opt out (sslsv.devices.full_precision)
        rate = cfg.features.sample_rate  # every reader resamples to it
        method_cls = method_class(cfg)
        # (crops, samples) per crop length: one group, or DINO's global and local crops.
        self.crops = [(n, round(seconds * rate)) for n, seconds in crop_plan(method_cls, cfg)]
        self.dataset = CropDataset(train_dir, self.crops, tc.seed, rate, needs_labels(method_cls))
        self.dataset.exclude(self._check_audio())
        if needs_labels(method_cls) and len(self.dataset.classes) < 2:
            raise DataError(
                f"{train_dir}/utt2spk: method.name {cfg.method.name!r} needs at least 2 classes "
                f"(speakers), got {len(self.dataset.classes)}"
            )
        torch.manual_seed(tc.seed)
        model = EmbeddingModel(cfg)
        seeded = init_model is not None and start_from_model(model, cfg, Path(init_model))
        self.method = build_method(cfg, model, len(self.dataset.classes))
        if seeded and init_embeddings is not None and hasattr(self.method, "init_centres"):
            self.method.init_centres(class_means(self.dataset, Path(init_embeddings)))
            log.info("class centres initialised from the mean embeddings of %s", init_embeddings)
        self.method = self.method.to(self.device)
        if tc.channels_last:
            # 4-D weights only; activations follow the first convolution's layout.
            self.method.to(memory_format=torch.channels_last)
        # The untrained encoder, scored beside the trained one to show what training adds;
        # kept (a copy: resuming loads trained weights into these tensors) and written with
        # config.yaml once every check has passed (write_experiment_files).
        self._init_state = None
        if self.rank == 0:
            self._init_state = {k: v.clone() for k, v in _model_state(self.method).items()}
        if self.world > 1 and tc.sync_batchnorm:
            # Not torch.nn.SyncBatchNorm, on GPUs too: it indexes its gathered statistics
            # with a boolean mask (a host synchronisation in every layer of every step), and
            # torch.compile breaks its graph at each one. GlobalBatchNorm computes the same
            # statistics with one all-reduce, and compiles.
            self.method = distributed.convert_to_global_batchnorm(self.method)
        params = [p for p in self.method.parameters() if p.requires_grad]
        if not params:
            raise ConfigError(
                f"encoder.name {cfg.encoder.name!r} with method.name {cfg.method.name!r} has "
                "no trainable weights: fit it with steps/fit_stats.sh (sslsv.bin.fit_stats)"
            )
        self.optimizer = torch.optim.Adam(
            params, lr=tc.lr, weight_decay=tc.weight_decay, fused=self.device.type == "cuda"
        )
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=tc.lr_decay_every, gamma=tc.lr_decay
        )
        self.sampler = GlobalBatchSampler(
            len(self.dataset), tc.batch_size, tc.seed, self.rank, self.world
        )
        self.steps_per_epoch = self.sampler.steps_per_epoch()
        # Workers pass batches through shared memory: prefetch only as deep as a budget
        # allows (DINO's int16 batch of 256 is 131 MB: 8 workers x 1 fit 1 GiB).
        prefetch = None
        if tc.num_workers > 0:
            batch_bytes = tc.batch_size // self.world * self.dataset.item_bytes()
            prefetch = loader_prefetch(batch_bytes, tc.num_workers)
        self.loader = DataLoader(
            self.dataset,
            batch_sampler=self.sampler,
            num_workers=tc.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=tc.num_workers > 0,
            prefetch_factor=prefetch,
            # Stopping is the main process's decision (it then ends the workers).
            worker_init_fn=signals.ignore_stop_signals if tc.num_workers > 0 else None,
        )
        self.augmenter = build_augmenter(cfg.augment, rate, self.device, self.crops[0][1])
        if self.augmenter is not None:
            for _, samples in self.crops[1:]:
                self.augmenter.prepare(self.device, samples)
        self.spec_masking = masking_enabled(cfg.augment)
        # Rank 0 validates (the others wait at a barrier); built now, so that a bad
        # validation data dir or trial list fails before the first step.
        self.validator = None
        if tc.validation.data_dir and self.rank == 0:
            self.validator = Validator(cfg, self.device)
            log.info("%s", self.validator.describe())
        self.best: tuple[float, int] | None = None  # (lowest validation EER, its epoch)
        self.epoch, self.step = 0, 0  # position: next step to run
        self._stop: signals.StopRequest | None = None
        self._resume()
        # What the step calls: the method itself, or its DDP wrapper (gradient all-reduce).
        self.method_step = self.method
        if self.world > 1:
            self.method_step = distributed.data_parallel(self.method, self.device)
        if tc.compile:
            for module in self.method.modules():
                if isinstance(module, EmbeddingModel):  # DINO: student and teacher
                    module.encoder.compile()
        self.writer = None
        if self.rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.exp_dir / "tensorboard"))

    def _check_audio(self) -> list[str]:
        """Rank 0 reads every audio header (:func:`check_training_audio`) and tells the other
        ranks what to leave out, or the error: one check, not one per process, and every rank
        trains on the same list."""
        result: tuple[str, object] = ("ok", [])
        if self.rank == 0:
            try:
                bad = check_training_audio(self.dataset.sources, self.exp_dir / "bad_audio.txt")
                result = ("ok", bad)
            except DataError as e:
                result = ("error", str(e))
            except BaseException as e:
                if self.world > 1:  # the other ranks must not wait for an answer forever
                    dist.broadcast_object_list([("crash", repr(e))], src=0)
                raise
        if self.world > 1:
            box = [result]
            dist.broadcast_object_list(box, src=0)
            result = box[0]
        kind, value = result
        if kind == "error":
            raise DataError(value)
        if kind == "crash":
            raise RuntimeError(f"rank 0 failed while checking the training audio: {value}")
        return value

    def write_experiment_files(self, config_path: Path | None = None) -> None:
        """Rank 0: write ``init.pt`` and ``config.yaml`` (default ``EXP_DIR/config.yaml``)
        together, once the data and config have passed every check (the trainer is built).

        Written earlier, a first attempt that fails (a bad data dir) would leave an init.pt
        that a second attempt with another encoder keeps beside its own final.pt. config.yaml
        is written last: an init.pt without it (a kill between the two, or such a leftover)
        is rewritten.
        """
        if self.rank != 0:
            return
        config_path = config_path or self.exp_dir / "config.yaml"
        init = self.exp_dir / "init.pt"
        if not config_path.exists() or not init.exists():
            checkpoint.save_atomic(
                checkpoint.model_payload(config_to_dict(self.cfg), self._init_state), init
            )
        save_config(self.cfg, config_path)

    def close(self) -> None:
        """Free the DDP wrapper; call before destroying the process group. Freed after it,
        DDP would drop the last reference to a gloo group while holding the GIL, and the
        group's destructor joins gloo threads that may need the GIL: a deadlock (in 2 of 26
        two-process test runs before this order was enforced)."""
        self.method_step = self.method
        if self.writer is not None:
            self.writer.close()
        gc.collect()

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        # The CUDA generator of this process's device only, so that the checkpoint resumes
        # on any number of processes (every rank restores it on its own device; the draws
        # that matter come from seeded generators, and a shuffle drawn on the device is
        # broadcast from rank 0).
        rng_cuda = [torch.cuda.get_rng_state(self.device)] if self.device.type == "cuda" else []
        return {
            "config": config_to_dict(self.cfg),
            "model": _model_state(self.method),
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "best_validation": list(self.best) if self.best else [],
            "world_size": self.world,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": rng_cuda,
        }

    def _resume(self) -> None:
        state = checkpoint.load_latest(self.ckpt_dir, self.steps_per_epoch)
        if state is None:
            return
        self.method.load_state_dict(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step = state["epoch"], state["step"]
        best = state.get("best_validation")
        self.best = (float(best[0]), int(best[1])) if best else None
        torch.set_rng_state(state["rng_cpu"])
        if state["rng_cuda"] and self.device.type == "cuda":
            # Rank 0's device state, saved by a run of any size (one state per visible GPU in
            # checkpoints written before; the first is rank 0's device).
            torch.cuda.set_rng_state(state["rng_cuda"][0], self.device)

    def save(self, epoch_end: bool) -> Path | None:
        """Rank 0: write the training state at the current position; returns its path."""
        if self.rank != 0:
            return None
        if epoch_end:
            name = f"epoch-{self.epoch:04d}.pt"
        else:
            name = f"step-{self.epoch * self.steps_per_epoch + self.step:09d}.pt"
        checkpoint.save_atomic(self.state_dict(), self.ckpt_dir / name)
        keep = max(self.cfg.train.keep_checkpoints, self.cfg.train.average_last)
        checkpoint.prune(self.ckpt_dir, self.steps_per_epoch, keep)
        return self.ckpt_dir / name

    def _global_step(self) -> int:
        return self.epoch * self.steps_per_epoch + self.step

    def _agreed_stop(self) -> str | None:
        """The name of the signal that stops training, or None; with several processes a
        collective (call it at the same point on every rank): all stop at the same step,
        whichever of them got the signal."""
        local = self._stop.signum if self._stop else None
        if self.world == 1:
            return signals.signal_name(local)
        flags = torch.tensor([float(local == s) for s in signals.STOP_SIGNALS])
        flags = distributed.all_reduce_mean(flags.to(self.device)).tolist()
        return next((s.name for s, f in zip(signals.STOP_SIGNALS, flags) if f > 0), None)

    def _stopped(self, signal_name: str, path: Path | None, log_file) -> signals.TrainingStopped:
        """After the stop checkpoint: say where training stopped, leave the stop marker, and
        only then let every rank go (torchrun ends the others as soon as one exits)."""
        received = self._stop.received_at if self._stop else None
        when = (
            f"received after global step {received}"
            if received is not None
            else "received by another process"
        )
        done = self.step or self.steps_per_epoch
        epoch = self.epoch if self.step else self.epoch - 1
        line = (
            f"stopped on {signal_name} ({when}) after step {done}/{self.steps_per_epoch} of "
            f"epoch {epoch + 1}/{self.cfg.train.epochs} (global step {self._global_step()}); "
            f"checkpoint {path}; exit status {signals.EXIT_STOPPED}: rerun to resume"
        )
        if self.rank == 0:
            log.warning("%s", line)
            if log_file:
                log_file.write(line + "\n")
                log_file.flush()
            with atomic_write(signals.stop_marker(self.exp_dir)) as f:
                f.write(line + "\n")
        distributed.barrier()
        return signals.TrainingStopped(line, signal_name, path)

    # -- training ------------------------------------------------------------------------
    def train_step(
        self,
        crops: torch.Tensor | list[torch.Tensor],
        epoch: int,
        step: int,
        labels: torch.Tensor | None = None,
        indices: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
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
        margin = margin_at(
            global_step / total_steps, self.cfg.loss.margin, self.cfg.loss.margin_warmup
        )
        info = StepInfo(global_step / total_steps, epoch, global_step, indices)
        # Choices are drawn for the global batch and each process takes its rows, so the
        # augmentation does not depend on how the batch is split over processes; one
        # generator per step, drawn group after group.
        augment_generator = torch.Generator().manual_seed(_step_seed(tc.seed, epoch, step))
        mask_generator = torch.Generator().manual_seed(
            (_step_seed(tc.seed, epoch, step) + 1) % (2**63 - 1)
        )
        autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if tc.precision == "bf16"
            else contextlib.nullcontext()
        )
        with autocast:
            feats = [self._features(g, augment_generator, mask_generator) for g in groups]
            feats = feats[0] if isinstance(crops, torch.Tensor) or len(feats) == 1 else feats
            loss, metrics = self.method_step(feats, margin, labels, info)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        # Logged values are global-batch means (the local loss is this process's share); one
        # all-reduce for both.
        logged = distributed.all_reduce_mean(torch.stack([loss.detach(), metrics["accuracy"]]))
        return logged[0], {"accuracy": logged[1], "margin": margin}

    def _features(
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

    def fit(self) -> None:
        """Train to ``train.epochs``, then write ``final.pt``.

        Raises :class:`signals.TrainingStopped` after a stop checkpoint when a SIGTERM,
        SIGINT or SIGUSR1 arrives before the last epoch ends (one that arrives later lets the
        run finish: only final.pt is left to write).
        """
        tc = self.cfg.train
        log_file = None
        if self.rank == 0:
            (self.exp_dir / "log").mkdir(parents=True, exist_ok=True)
            log_file = open(self.exp_dir / "log" / "train.log", "a", encoding="utf-8")
        with signals.StopRequest(self._global_step) as self._stop:
            try:
                while self.epoch < tc.epochs:
                    stop = self._run_epoch(log_file)
                    if stop:
                        raise self._stopped(*stop, log_file)
            finally:
                self._stop = None
                if log_file:
                    log_file.close()
                if self.writer:
                    self.writer.close()
            if self.rank == 0:
                final = self.exp_dir / "final.pt"
                if tc.validation.select_best and self.best is not None:
                    # best.pt holds the model payload already: final.pt is a copy of it.
                    log.info(
                        "final model: epoch %d, the lowest validation EER (%.2f%%); chosen "
                        "with the labels of the validation speakers",
                        self.best[1],
                        self.best[0],
                    )
                    checkpoint.save_atomic(checkpoint.load_safe(self.exp_dir / "best.pt"), final)
                else:
                    averaged = checkpoint.average_epoch_models(
                        self.ckpt_dir, self.steps_per_epoch, tc.average_last, upto_epoch=tc.epochs
                    )
                    checkpoint.save_atomic(
                        checkpoint.model_payload(config_to_dict(self.cfg), averaged), final
                    )
            distributed.barrier()

    def _non_finite(self, value: float, epoch: int, step: int) -> NonFiniteLossError:
        """The error for a non-finite loss, naming the utterances of its global batch."""
        utts = [self.dataset.utts[i] for i in self.sampler.global_batch_indices(epoch, step)]
        shown = " ".join(utts[:SHOWN_UTTS])
        if len(utts) > SHOWN_UTTS:
            listing = self.exp_dir / "log" / "non_finite_batch.txt"
            if self.rank == 0:
                with atomic_write(listing) as f:
                    f.writelines(u + "\n" for u in utts)
            shown += f" ... ({len(utts) - SHOWN_UTTS} more; all {len(utts)} in {listing})"
        return NonFiniteLossError(
            f"loss is {value} at epoch {epoch + 1} step {step} (global step "
            f"{epoch * self.steps_per_epoch + step}), nothing saved after it; the batch's "
            f"utterances: {shown}; check their audio, or lower train.lr"
        )

    def _validate(self) -> str | None:
        """After an epoch where validation is due: rank 0 embeds and scores the validation
        trials (the other ranks wait), logs EER and minDCF to TensorBoard, keeps the best
        model in ``best.pt`` when ``select_best``; returns the line for train.log."""
        vc = self.cfg.train.validation
        due = self.epoch % vc.every_epochs == 0 or self.epoch >= self.cfg.train.epochs
        if not vc.data_dir or not due:
            return None
        line = None
        if self.rank == 0:
            result = self.validator.run(self.method.model)
            line = (
                f"validation epoch {self.epoch} EER {result['eer']:.2f}% "
                f"minDCF(p={self.validator.p_target:g}) {result['min_dcf']:.4f} "
                f"time {result['seconds']:.1f}s"
            )
            if self.writer:
                step = self.epoch * self.steps_per_epoch
                self.writer.add_scalar("validation/eer", result["eer"], step)
                self.writer.add_scalar("validation/min_dcf", result["min_dcf"], step)
            if self.best is None or result["eer"] < self.best[0]:
                self.best = (result["eer"], self.epoch)
                if vc.select_best:
                    checkpoint.save_atomic(
                        checkpoint.model_payload(
                            config_to_dict(self.cfg), _model_state(self.method)
                        ),
                        self.exp_dir / "best.pt",
                    )
        distributed.barrier()
        return line

    def _run_epoch(self, log_file) -> tuple[str, Path | None] | None:
        """One epoch from the current position; returns (signal name, checkpoint) when a
        signal stopped it (after writing that checkpoint), else None."""
        tc = self.cfg.train
        epoch = self.epoch
        self.method.train()
        self.sampler.set_position(epoch, self.step)
        start_time, utts, loss_sum, acc_sum, count = time.time(), 0, 0.0, 0.0, 0
        bar = tqdm(
            total=self.steps_per_epoch,
            initial=self.step,
            desc=f"epoch {epoch + 1}/{tc.epochs}",
            disable=self.rank != 0,
            dynamic_ncols=True,
            # In a log file (no terminal) a line every 30 s is plenty.
            mininterval=0.1 if sys.stderr.isatty() else 30.0,
        )
        # Losses stay on the device until read in groups of ``log_every`` steps: reading one
        # waits for the device to finish, so reading every step would leave a GPU idle while
        # the host prepares the next step.
        pending: list[tuple[int, torch.Tensor, torch.Tensor, float]] = []

        def read_pending() -> None:
            nonlocal loss_sum, acc_sum, count
            if not pending:
                return
            values = torch.stack([torch.stack(p[1:3]) for p in pending]).tolist()
            for (step, *_), (loss_value, acc_value) in zip(pending, values):
                if not math.isfinite(loss_value):
                    raise self._non_finite(loss_value, epoch, step)
                loss_sum, acc_sum, count = loss_sum + loss_value, acc_sum + acc_value, count + 1
            window = len(values)
            loss_mean = sum(v[0] for v in values) / window
            speed = utts / max(time.time() - start_time, 1e-9)
            bar.set_postfix(loss=f"{loss_mean:.3f}", utt_s=f"{speed:.0f}", refresh=False)
            if self.writer:
                global_step = epoch * self.steps_per_epoch + pending[-1][0]
                self.writer.add_scalar("train/loss", loss_mean, global_step)
                self.writer.add_scalar(
                    "train/accuracy", sum(v[1] for v in values) / window, global_step
                )
                self.writer.add_scalar("train/margin", pending[-1][3], global_step)
                self.writer.add_scalar(
                    "train/lr", self.optimizer.param_groups[0]["lr"], global_step
                )
                self.writer.add_scalar("train/utts_per_second", speed, global_step)
            pending.clear()

        stop, path, announced = None, None, False
        for crops, labels, indices in self.loader:
            step = self.step
            loss, metrics = self.train_step(crops, epoch, step, labels, indices)
            pending.append((step, loss, metrics["accuracy"], metrics["margin"]))
            self.step += 1
            utts += tc.batch_size
            every = tc.checkpoint_every_steps
            mid_epoch = self.step < self.steps_per_epoch
            save_now = every and self.step % every == 0 and mid_epoch
            read_now = save_now or len(pending) >= tc.log_every
            # One process looks at its signal flag (a Python attribute) after every step.
            # Several must stop at the same step: they agree by an all-reduce where the host
            # waits for the device anyway (reading the losses), so within log_every steps.
            if mid_epoch and (self.world == 1 or read_now):
                stop = self._agreed_stop()
            elif self._stop and self._stop.signum is not None and not announced:
                announced = True
                log.info(
                    "rank %d: %s received after step %d of epoch %d; all ranks stop within "
                    "%d steps (train.log_every)",
                    self.rank, signals.signal_name(self._stop.signum), step + 1, epoch + 1,
                    tc.log_every,
                )  # fmt: skip
            if read_now or stop:
                read_pending()  # also before a checkpoint: never save after a non-finite loss
            if save_now or stop:
                path = self.save(epoch_end=False)
            bar.update(1)
            if stop:
                bar.close()
                return stop, path
        read_pending()
        bar.close()
        self.epoch, self.step = epoch + 1, 0
        self.scheduler.step()
        # Validation before the checkpoint, so that the checkpoint holds its result (best).
        validation = self._validate()
        epoch_checkpoint = self.epoch % tc.checkpoint_every == 0 or self.epoch == tc.epochs
        if epoch_checkpoint:
            path = self.save(epoch_end=True)
        if log_file:
            elapsed = time.time() - start_time
            lr = self.optimizer.param_groups[0]["lr"]
            line = (
                f"epoch {self.epoch} loss {loss_sum / max(count, 1):.4f} "
                f"accuracy {acc_sum / max(count, 1):.4f} lr {lr:.3g} "
                f"utts/s {utts / max(elapsed, 1e-9):.1f} time {elapsed:.1f}s"
            )
            log_file.write(line + "\n")
            if validation:
                log_file.write(validation + "\n")
            log_file.flush()
            log.info(line)
            if validation:
                log.info(validation)
        # After the last epoch only final.pt is left: finish rather than stop.
        if self.epoch < tc.epochs:
            stop = self._agreed_stop()
            if stop:
                if not epoch_checkpoint:
                    # None is due here (train.checkpoint_every): a step checkpoint at the
                    # next epoch's start instead, which the averaging into final.pt does
                    # not see, so that the result is the uninterrupted one.
                    path = self.save(epoch_end=False)
                return stop, path
        return None
