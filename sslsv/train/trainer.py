"""The SSL trainer: single process or torchrun/DDP, CPU or CUDA, exact resume. It holds the
model, optimizer, data and state, and makes one step; :mod:`sslsv.train.loop` runs the
epochs and logs them.

The step (augmentation, log-mels, masks, method, optimizer) is :mod:`sslsv.train.step`;
its random choices come from generators seeded by (seed, epoch, step), so a resumed run
repeats an uninterrupted one; checkpoints also hold optimizer, scheduler, queue and RNG state.

Before any training (and before any file of the experiment is written) the data is checked:
the dataset, the sampler, the augmentation sets and every utterance's audio header. A
SIGTERM, SIGINT or SIGUSR1 stops training at a step boundary with a checkpoint
(:mod:`sslsv.train.signals`).
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from sslsv import distributed
from sslsv.config.load import config_to_dict, save_config
from sslsv.config.schema import Config
from sslsv.devices import enable_tf32
from sslsv.errors import ConfigError, DataError
from sslsv.fileio import write_table
from sslsv.methods import Metrics, build_method, method_class
from sslsv.models.embedding import EmbeddingModel
from sslsv.train import checkpoint, loop, signals
from sslsv.train.dataset import (
    CropDataset,
    GlobalBatchSampler,
    check_training_audio,
    loader_prefetch,
)
from sslsv.train.seed import class_means, start_from_model
from sslsv.train.step import TrainStep
from sslsv.train.validation import Validator

log = logging.getLogger(__name__)


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
        (the second stage starts from its seed model); then, given ``init_embeddings`` (the
        seed's embeddings of the training utterances), the method may start from each
        class's mean embedding (:meth:`Method.seed_from_class_means`)."""
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
        # (crops, samples) per crop length: one group, or several (multi-crop).
        self.crops = [(n, round(seconds * rate)) for n, seconds in method_cls.crop_plan(cfg)]
        self.dataset = CropDataset(train_dir, self.crops, tc.seed, rate, method_cls.needs_labels)
        self.dataset.exclude(self._check_audio())
        if method_cls.needs_labels and len(self.dataset.classes) < 2:
            raise DataError(
                f"{train_dir}/utt2spk: method.name {cfg.method.name!r} needs at least 2 classes "
                f"(speakers), got {len(self.dataset.classes)}"
            )
        torch.manual_seed(tc.seed)
        model = EmbeddingModel(cfg)
        seeded = init_model is not None and start_from_model(model, cfg, Path(init_model))
        self.method = build_method(cfg, model, len(self.dataset.classes))
        self.method.attach_training_set(
            torch.tensor([self.dataset.utt_labels.get(u, -1) for u in self.dataset.utts])
        )
        if seeded and init_embeddings is not None:
            means = class_means(self.dataset, Path(init_embeddings))
            if self.method.seed_from_class_means(means):
                log.info("method started from the class means of %s", init_embeddings)
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
        # allows (a multi-crop int16 batch of 256 is 131 MB: 8 workers x 1 fit 1 GiB).
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
        self.step_fn = TrainStep(
            cfg, self.method, self.optimizer, self.device, self.crops, self.steps_per_epoch
        )
        # Rank 0 validates (the others wait at a barrier); built now, so that a bad
        # validation data dir or trial list fails before the first step.
        self.validator = None
        if tc.validation.data_dir and self.rank == 0:
            self.validator = Validator(cfg, self.device)
            log.info("%s", self.validator.describe())
        self.best: tuple[float, int] | None = None  # (lowest validation EER, its epoch)
        self.epoch, self.step = 0, 0  # position: next step to run
        self._resume()
        if self.world > 1:  # the step calls the DDP wrapper (gradient all-reduce)
            self.step_fn.forward = distributed.data_parallel(self.method, self.device)
        if tc.compile:
            for module in self.method.embedding_models():
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
        self.step_fn.forward = self.method
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

    # -- training ------------------------------------------------------------------------
    def train_step(
        self,
        crops: torch.Tensor | list[torch.Tensor],
        epoch: int,
        step: int,
        labels: torch.Tensor | None = None,
        indices: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Metrics]:
        """One optimizer step at (epoch, step): :meth:`TrainStep.__call__`."""
        return self.step_fn(crops, epoch, step, labels, indices)

    def fit(self) -> None:
        """Train to ``train.epochs`` (:func:`loop.run_epochs`), then write ``final.pt``.

        Raises :class:`signals.TrainingStopped` after a stop checkpoint when a SIGTERM,
        SIGINT or SIGUSR1 arrives before the last epoch ends (one that arrives later lets the
        run finish: only final.pt is left to write).
        """
        log_file = None
        if self.rank == 0:
            (self.exp_dir / "log").mkdir(parents=True, exist_ok=True)
            log_file = open(self.exp_dir / "log" / "train.log", "a", encoding="utf-8")
        with signals.StopRequest(self._global_step) as stop_request:
            try:
                loop.run_epochs(self, stop_request, log_file)
            finally:
                if log_file:
                    log_file.close()
                if self.writer:
                    self.writer.close()
            if self.rank == 0:
                self.write_training_labels()
                checkpoint.write_final_model(
                    self.cfg, self.exp_dir, self.ckpt_dir, self.steps_per_epoch, self.best
                )
            distributed.barrier()

    def write_training_labels(self) -> None:
        """``EXP/utt2label``: each training utterance's class at the end of training, when
        the method changed them (label correction); written before final.pt, so that a
        final.pt has it. Classes keep the names of the training data dir's utt2spk."""
        labels = self.method.training_labels()
        if labels is None:
            return
        names = self.dataset.classes
        rows = [(u, names[int(c)]) for u, c in zip(self.dataset.utts, labels.tolist())]
        write_table(self.exp_dir / "utt2label", rows)

    def validate(self) -> str | None:
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
            line = f"validation epoch {self.epoch} {self.validator.line(result)}"
            if self.writer:
                step = self.epoch * self.steps_per_epoch
                for name, value in result.items():
                    if name != "seconds":
                        self.writer.add_scalar(f"validation/{name}", value, step)
            measure = result[self.validator.measure]
            if self.best is None or measure < self.best[0]:
                self.best = (measure, self.epoch)
                if vc.select_best:
                    checkpoint.save_atomic(
                        checkpoint.model_payload(
                            config_to_dict(self.cfg), _model_state(self.method)
                        ),
                        self.exp_dir / "best.pt",
                    )
        distributed.barrier()
        return line
