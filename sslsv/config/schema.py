"""What an experiment config is: one typed dataclass per section, with its defaults.

Enumerated values are ``Literal`` types and numerical ranges are :func:`checked` fields,
so a section states what it accepts next to each key; :mod:`sslsv.config.load` reads YAML
into these classes and checks all of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Precision = Literal["fp32", "bf16"]
ScoreNorm = Literal["none", "z", "t", "s", "as"]
Linkage = Literal["average", "complete", "single", "ward"]


def checked(
    default: Any = dataclasses.MISSING,
    *,
    factory: Callable[[], Any] | None = None,
    minimum: float | None = None,
    above: float | None = None,
    below: float | None = None,
    maximum: float | None = None,
) -> Any:
    """A dataclass field whose value (or each item of a list value) must lie in a range,
    checked at load: ``minimum <= x``, ``above < x``, ``x < below``, ``x <= maximum``."""
    bounds = {"minimum": minimum, "above": above, "below": below, "maximum": maximum}
    meta = {"bounds": {k: v for k, v in bounds.items() if v is not None}}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def path_field(default: str = "") -> Any:
    """A dataclass field that names a file or folder: a relative path resolves, at load,
    against the recipe directory of the config (so a run from any directory is the same)."""
    return field(default=default, metadata={"path": True})


@dataclass
class FeaturesConfig:
    """Log-mel front end (the paper's: 40 bins, 25 ms Hamming, 10 ms hop, 512-point FFT)."""

    # Every reader resamples to this rate: crops, durations and the front end all follow it.
    sample_rate: int = checked(16000, minimum=1000)
    n_mels: int = checked(40, minimum=1)
    n_fft: int = checked(512, minimum=2)
    win_length: int = checked(400, minimum=1)
    hop_length: int = checked(160, minimum=1)
    f_min: float = checked(20.0, minimum=0)
    f_max: float = checked(7600.0, above=0)
    log_offset: float = checked(1e-6, above=0)


@dataclass
class EncoderConfig:
    """An encoder from the registry (``sslsv.models``) and its constructor arguments."""

    name: str = "fast_resnet34"
    args: dict[str, Any] = field(default_factory=dict)


#: The method a config without ``method.name`` trains (and :class:`Config`'s default).
DEFAULT_METHOD = "simclr"


@dataclass
class MethodConfig:
    """The ``method`` section: ``name`` picks a training method of the registry
    (:mod:`sslsv.methods`), and the section holds that method's own config dataclass (its
    ``config_class``, a subclass of this one, defined beside the method): ``simclr``,
    ``moco`` (two views, no labels), ``dino`` (multi-crop self-distillation, no labels),
    ``classifier`` (one view, AAM-softmax over the data dir's ``utt2spk``), or a plugin's.
    Defined here rather than beside :class:`sslsv.methods.Method` so that reading a config
    section does not import torch."""

    name: str


def _default_method() -> MethodConfig:
    # Imported when called: the method configs live beside their methods (torch).
    from sslsv.methods import METHODS

    return METHODS[DEFAULT_METHOD].config_class()


#: MUSAN-style defaults per noise category name: (snr_db, num_sources).
MUSAN_DEFAULTS: dict[str, tuple[list[float], list[int]]] = {
    "noise": ([0.0, 15.0], [1, 1]),
    "speech": ([13.0, 20.0], [3, 7]),
    "music": ([5.0, 15.0], [1, 1]),
}


@dataclass
class NoiseCategoryConfig:
    """One noise category: a data dir of clips, an SNR range (dB), the number of clips summed
    (babble) and a weight (categories are picked in proportion). Unset ``snr_db`` and
    ``num_sources`` take the defaults of the category's name (:data:`MUSAN_DEFAULTS`)."""

    data_dir: str = path_field()
    snr_db: list[float] | None = None
    num_sources: list[int] | None = checked(None, minimum=1)
    weight: float = checked(1.0, above=0)


@dataclass
class AugmentConfig:
    """Augmentation of each crop: reverberation, then additive noise (waveforms), then
    optionally masks on the log-mels."""

    enabled: bool = True
    rir_dir: str = path_field()
    rir_prob: float = checked(0.5, minimum=0, maximum=1)
    noise_prob: float = checked(0.8, minimum=0, maximum=1)
    noise: dict[str, NoiseCategoryConfig] = field(default_factory=dict)
    # Cap on seconds of noise audio held in memory per category (0: none).
    max_noise_seconds: float = checked(3600.0, minimum=0)
    # SpecAugment-style masks on each crop's log-mels (0 masks: none): bands of up to
    # spec_freq_width bins and spans of up to spec_time_width frames (sslsv.augment.specmask).
    spec_freq_masks: int = checked(0, minimum=0)
    spec_freq_width: int = checked(8, minimum=1)
    spec_time_masks: int = checked(0, minimum=0)
    spec_time_width: int = checked(20, minimum=1)


@dataclass
class ValidationConfig:
    """EER and minDCF on held-out speakers during training (train.log, TensorBoard).

    ``data_dir`` empty: no validation. Choosing ``final.pt`` by it (``select_best``) uses
    the held-out speakers' labels, a form of supervision, unless ``label_free``: off by
    default."""

    data_dir: str = path_field()
    trials: str = path_field()  # default: <data_dir>/trials
    every_epochs: int = checked(1, minimum=1)
    crop_seconds: float = checked(0.0, minimum=0)  # 0: whole utterances
    num_crops: int = checked(1, minimum=1)
    max_trials: int = checked(0, minimum=0)  # a seeded subset (0: all trials)
    select_best: bool = False  # final.pt: the validated epoch with the lowest EER
    # True: no labels at all. The measure is the split-utterance EER of data_dir's audio
    # (sslsv.selection: the two halves of an utterance against other utterances'), which
    # never reads its utt2spk or trials; select_best then chooses final.pt without labels.
    label_free: bool = False
    split_crop_seconds: float = checked(2.0, above=0)  # label_free: a crop per half
    max_utts: int = checked(0, minimum=0)  # label_free: a seeded subset (0: all)


@dataclass
class TrainConfig:
    epochs: int = checked(150, minimum=1)
    batch_size: int = checked(256, minimum=2)  # global, whatever the number of processes
    crop_seconds: float = checked(2.0, above=0)
    lr: float = checked(1e-3, above=0)
    weight_decay: float = checked(0.0, minimum=0)
    lr_decay: float = checked(0.95, above=0, maximum=1)
    lr_decay_every: int = checked(5, minimum=1)  # epochs
    num_workers: int = checked(4, minimum=0)
    seed: int = 0
    precision: Precision = "fp32"
    compile: bool = False
    channels_last: bool = False  # NHWC layout for 2-D convolutions (ResNets; tensor cores)
    deterministic: bool = False
    sync_batchnorm: bool = True
    checkpoint_every: int = checked(1, minimum=1)  # epochs
    # Also mid-epoch (0: no); resumes continue at that step.
    checkpoint_every_steps: int = checked(0, minimum=0)
    keep_checkpoints: int = checked(5, minimum=1)
    average_last: int = checked(1, minimum=1)  # average the last N epoch checkpoints: final.pt
    log_every: int = checked(10, minimum=1)  # steps: loss read from the device, bar, TensorBoard
    validation: ValidationConfig = field(default_factory=ValidationConfig)


@dataclass
class ExtractConfig:
    """Extraction. ``crop_seconds: 0`` embeds each utterance whole, one at a time; otherwise an
    utterance is ``num_crops`` evenly spaced crops (the reference sslsv protocol), and the
    crops of ``batch_size // num_crops`` utterances (at least one) share a forward pass."""

    crop_seconds: float = checked(0.0, minimum=0)
    num_crops: int = checked(6, minimum=1)
    batch_size: int = checked(256, minimum=1)
    num_workers: int = checked(4, minimum=0)  # DataLoader readers per CUDA job; CPU: in-process

    def describe(self) -> str:
        """The embedding protocol in words, for logs and RESULTS."""
        if self.crop_seconds == 0:
            return "whole utterances"
        return f"mean of {self.num_crops} crops of {self.crop_seconds:g} s"


@dataclass
class ScoringConfig:
    """Scoring and calibration. ``backend`` is a back end of the registry (:mod:`sslsv.backend`,
    checked at load), which uses some of the keys below. ``cosine`` (plain or minus the
    training mean) and per-utterance cohorts are label-free; ``plda`` (and LDA) and
    ``cohort_speaker_means`` use the training set's speaker labels."""

    backend: str = "cosine"
    # cosine: subtract the mean training embedding. Off: the recipes score by plain cosine
    # (on LibriSpeech the mean cost a third of the EER, issue 12: 18.8% against 14.5%); the
    # voxceleb recipe's SSL rows turn it on (egs/voxceleb/conf/base.yaml).
    subtract_mean: bool = False
    lda_dim: int = checked(0, minimum=0)  # plda: LDA dimension before PLDA (0: none)
    whiten: bool = False  # plda: whiten before LDA/PLDA
    plda_iters: int = checked(10, minimum=0)
    norm: ScoreNorm = "none"  # cohort: the training set's embeddings
    top_k: int = checked(300, minimum=1)  # as-norm: cohort scores per side
    cohort_speaker_means: bool = False
    p_target: list[float] = checked(factory=lambda: [0.01], above=0, below=1)


@dataclass
class PseudoLabelConfig:
    """The second stage's clustering (:mod:`sslsv.cluster`): k-means of the L2-normalised
    training-set embeddings into ``kmeans_clusters``, then optionally agglomerative merging
    of the centroids to ``merge_to`` clusters or up to a cosine distance
    ``merge_threshold`` (0 for both: no merging). Utterances of clusters smaller than
    ``min_cluster_size`` are left out of the pseudo-labelled data dir."""

    kmeans_clusters: int = checked(1000, minimum=2)
    kmeans_iters: int = checked(30, minimum=1)
    # torch: sslsv.kmeans, on sslsv.bin.cluster's --device (a GPU at VoxCeleb2 size);
    # sklearn: scikit-learn's Lloyd, CPU only. One algorithm (docs/clustering_bench.md).
    kmeans_backend: Literal["torch", "sklearn"] = "torch"
    merge_to: int = checked(0, minimum=0)
    merge_threshold: float = checked(0.0, minimum=0, maximum=2)
    linkage: Linkage = "average"
    min_cluster_size: int = checked(2, minimum=1)
    seed: int = 0
    # The classifier starts from the seed model's encoder when both have the same encoder.
    init_from_seed: bool = True


@dataclass
class Config:
    experiment: str = "simclr_ntxent_am"
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    # An instance of the named method's config class (MethodConfig is their base).
    method: MethodConfig = field(default_factory=_default_method)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    pseudo_label: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)
