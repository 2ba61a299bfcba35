"""``TrainConfig``: everything a training run needs, as nested frozen dataclasses loaded from YAML.

``config/train/lbi.yaml`` is the shipped-weights run. Load with :func:`load_train_config` (strict: an
unknown key is an error naming the allowed ones; dotted ``key=value`` overrides as on the command line).
The resolved config is written next to every checkpoint, so a run can be reproduced and resumed from it.

Schedule (docs/method.md §2.9): the run is counted in optimiser **steps** (a step = ``optim.batch_size`` samples per
process), not epochs, because the synthetic data are unbounded and the budget is wall time. Phase 1 trains the
encoder + stage 1 on the coarse head for ``schedule.phase1_steps``; then stage 1 is frozen and phase 2 trains
stage 2 (refined head + uncertainty) for ``schedule.phase2_steps``, with the learning-rate schedule restarted.
The 2D-only baseline (``model.kind: lift2d``) and the stage-1-only ablation (``model.stage2: false``) run a
single phase (``phase2_steps`` must then be 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lbi_ros.config import ConfigError, load_yaml
from lbi_ros.datasets.h36m import H36MConfig
from lbi_ros.model.config import ModelConfig
from lbi_ros.synth.dataset import SyntheticDataConfig


@dataclass(frozen=True)
class OptimConfig:
    """AdamW; ``lr`` is the peak after warm-up; the encoder may learn at ``encoder_lr_scale`` x lr (§2.9)."""

    batch_size: int = 64
    lr: float = 1e-3
    min_lr_ratio: float = 0.02
    """Cosine decay ends at ``lr * min_lr_ratio``."""
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    """Max global gradient norm; 0 disables clipping."""
    encoder_lr_scale: float = 1.0
    freeze_encoder: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"lr must be > 0 and min_lr_ratio in [0, 1], got {self.lr}, {self.min_lr_ratio}")
        if self.grad_clip < 0 or self.weight_decay < 0 or self.encoder_lr_scale < 0:
            raise ValueError("grad_clip, weight_decay and encoder_lr_scale must be >= 0")


@dataclass(frozen=True)
class ScheduleConfig:
    """Steps per phase and linear warm-up steps (at the start of each phase)."""

    phase1_steps: int = 1000
    phase2_steps: int = 1000
    warmup_steps: int = 100

    def __post_init__(self) -> None:
        if self.phase1_steps < 1 or self.phase2_steps < 0 or self.warmup_steps < 0:
            raise ValueError(
                f"need phase1_steps >= 1, phase2_steps >= 0, warmup_steps >= 0; got {self.phase1_steps}, "
                f"{self.phase2_steps}, {self.warmup_steps}"
            )

    @property
    def total_steps(self) -> int:
        return self.phase1_steps + self.phase2_steps


@dataclass(frozen=True)
class LossConfig:
    """Pose loss on root-relative joints in metres (§2.8) plus optional terms.

    * ``pose``: ``mpjpe`` (mean per-joint L2, the default) or ``mse`` (squared L2, the paper's wording);
    * ``nll_weight``: Gaussian NLL of the per-joint log-variance (isotropic, per coordinate), computed on the
      detached error so it calibrates the uncertainty without pulling the pose;
    * ``bone_weight``: mean absolute bone-length error (m), 0 = off.
    """

    pose: Literal["mpjpe", "mse"] = "mpjpe"
    nll_weight: float = 0.01
    bone_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.nll_weight < 0 or self.bone_weight < 0:
            raise ValueError("loss weights must be >= 0")


@dataclass(frozen=True)
class ValidationConfig:
    """Held-out check during training, through :func:`lbi_ros.evaluation.evaluate_model`.

    The set is rendered once (fixed ``seed``) from ``cache_dir``'s ``split`` (default: the training data's
    cache; empty cache = procedural poses) and reused, so validation numbers are comparable across a run.
    """

    every_steps: int = 500
    num_samples: int = 1000
    """Rendered samples, or (Human3.6M) test frames taken evenly over S9/S11."""
    split: Literal["train", "val", "test"] = "val"
    seed: int = 12345
    batch_size: int = 128
    h36m_subjects: tuple[str, ...] = ("S9", "S11")
    """Validation subjects when ``source`` is ``h36m``."""

    def __post_init__(self) -> None:
        if self.every_steps < 0 or self.num_samples < 1:
            raise ValueError("every_steps must be >= 0 (0 = only at the end) and num_samples >= 1")


@dataclass(frozen=True)
class LogConfig:
    out_dir: str = "runs/lbi"
    log_every: int = 20
    """Scalars to TensorBoard / metrics.jsonl every this many steps."""
    figure_every: int = 1000
    """Predicted-vs-true skeleton figure every this many steps (TensorBoard and PNG); 0 = off."""
    checkpoint_minutes: float = 5.0
    progress: bool = True
    tensorboard: bool = True
    """Only when ``tensorboard`` is importable (an optional dependency)."""


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    source: Literal["synthetic", "h36m"] = "synthetic"
    """``synthetic``: rendered mocap/procedural samples (``data``); ``h36m``: Human3.6M (``h36m``: training
    subjects; validation on S9/S11 of the same files)."""
    data: SyntheticDataConfig = field(default_factory=SyntheticDataConfig)
    h36m: H36MConfig | None = None
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    log: LogConfig = field(default_factory=LogConfig)
    seed: int = 0
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    num_threads: int = 0
    """torch intra-op threads per process; 0 = leave torch's default."""
    num_workers: int = 0
    """DataLoader worker processes rendering samples; 0 = render in the training process."""
    init_weights: str = ""
    """Start from these weights instead of random ones (fine-tuning): a checkpoint path or ``default`` /
    ``baseline-2d`` (the shipped weights); its model config must equal ``model``. Ignored when resuming."""
    render_images: bool = True
    """False skips rendering (blank crops): only for models that do not read the image (lift2d)."""

    def __post_init__(self) -> None:
        single_phase = self.model.kind == "lift2d" or not self.model.stage2
        if single_phase and self.schedule.phase2_steps:
            raise ValueError(
                f"this model trains in a single phase (kind={self.model.kind}, stage2={self.model.stage2}): "
                f"set schedule.phase2_steps to 0, got {self.schedule.phase2_steps}"
            )
        if not self.render_images and self.model.has_image:
            raise ValueError("render_images=false needs a model without an image branch")
        if self.source == "h36m" and self.h36m is None:
            raise ValueError("source 'h36m' needs an h36m section (data_3d, data_2d, cameras, ...)")
        if self.num_threads < 0 or self.num_workers < 0:
            raise ValueError("num_threads and num_workers must be >= 0")

    @property
    def num_phases(self) -> int:
        return 2 if self.schedule.phase2_steps else 1


def load_train_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read ``path`` (YAML) into a :class:`TrainConfig` after dotted overrides; raises ConfigError."""
    config = load_yaml(TrainConfig, path, overrides)
    if not isinstance(config, TrainConfig):  # pragma: no cover - load_yaml returns the class asked for
        raise ConfigError(f"{path} did not load as a TrainConfig")
    return config
