"""The trainer: one function, :func:`train`, for 1 CPU, 1 GPU or N processes under ``torchrun`` (DDP).

Schedule (docs/method.md §2.5-2.9), counted in optimiser steps:

* phase 1: encoder + token embeddings + stage 1, loss on the coarse head (``joints_3d_coarse``);
* phase 2: :meth:`LBILifter.freeze_stage1`, then stage 2 + refined head + uncertainty head, loss on
  ``joints_3d`` (+ Gaussian NLL on ``joints_logvar``), with the learning-rate schedule restarted;
* a single phase for the 2D-only baseline and the stage-1-only ablation (all parameters, ``joints_3d``).

Each phase: AdamW, linear warm-up, cosine decay to ``lr * min_lr_ratio``, global-norm clipping, bf16 autocast
on CUDA. Checkpoints (``OUT/last.safetensors`` + the resolved config; optimiser state and RNG states in
``OUT/last.state.pt``) every ``log.checkpoint_minutes``; a run restarted with the same ``out_dir`` resumes
exactly where the checkpoint was taken (same data, same RNG, same optimiser state; under DDP a mid-phase
checkpoint, written by rank 0 alone, restores rank 0's RNG on every rank, so drop-path draws of the other
ranks differ after such a resume). Validation goes through
:func:`lbi_ros.evaluation.evaluate_model` and is appended with the elapsed wall time to ``OUT/metrics.jsonl``
(the learning curve).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lbi_ros.checkpoint import load_weights_into, read_checkpoint, save_checkpoint
from lbi_ros.config import save_yaml, to_dict
from lbi_ros.evaluation import EvalSet, evaluate_model, rendered_eval_set
from lbi_ros.model import build_model
from lbi_ros.preprocess import INPUT_NAMES
from lbi_ros.training.config import TrainConfig
from lbi_ros.training.data import make_loader
from lbi_ros.training.losses import pose_loss

log = logging.getLogger(__name__)

LAST_WEIGHTS, LAST_STATE, FINAL_WEIGHTS = "last.safetensors", "last.state.pt", "final.safetensors"


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    step: int
    last_loss: float
    """Total loss of the last step run in this call (NaN when no step ran)."""
    validation: dict[str, Any] | None
    elapsed_s: float


@dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: torch.device) -> _Dist:
    """DDP when launched by torchrun (WORLD_SIZE > 1): NCCL on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        name = f"cuda:{os.environ['LOCAL_RANK']}"
    return torch.device(name)


def lr_factor(step_in_phase: int, phase_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Linear warm-up over ``warmup_steps`` then cosine decay to ``min_ratio`` at the phase end."""
    if warmup_steps and step_in_phase < warmup_steps:
        return (step_in_phase + 1) / warmup_steps
    span = max(phase_steps - warmup_steps, 1)
    progress = min(max(step_in_phase - warmup_steps, 0) / span, 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _phase_of(step: int, config: TrainConfig) -> int:
    return 1 if step < config.schedule.phase1_steps else 2


def _phase_bounds(phase: int, config: TrainConfig) -> tuple[int, int]:
    s = config.schedule
    return (0, s.phase1_steps) if phase == 1 else (s.phase1_steps, s.total_steps)


def setup_phase(model: nn.Module, phase: int, config: TrainConfig) -> tuple[list[dict[str, Any]], str, bool]:
    """Freeze/unfreeze for ``phase``; return (AdamW param groups, trained head, use the NLL term).

    Head ``coarse`` reads ``joints_3d_coarse``; ``refined`` reads ``joints_3d``.
    """
    opt = config.optim
    if config.model.kind == "lift2d":
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr_scale": 1.0}], "refined", True
    two_phase = config.num_phases == 2
    if opt.freeze_encoder:
        model.freeze_encoder()
    if phase == 1:
        for p in model.stage2_parameters():  # trained in phase 2; unused (no gradient) until then
            p.requires_grad_(False)
        encoder_ids = {id(p) for p in model.encoder_parameters()}
        rest = [p for p in model.stage1_parameters() if p.requires_grad and id(p) not in encoder_ids]
        encoder = [p for p in model.encoder_parameters() if p.requires_grad]
        groups = [{"params": rest, "lr_scale": 1.0}]
        if encoder:
            groups.append({"params": encoder, "lr_scale": opt.encoder_lr_scale})
        return groups, ("coarse" if two_phase else "refined"), not two_phase
    model.freeze_stage1()
    params = list(model.stage2_parameters())
    for p in params:
        p.requires_grad_(True)
    return [{"params": params, "lr_scale": 1.0}], "refined", True


def _make_optimizer(groups: list[dict[str, Any]], config: TrainConfig) -> torch.optim.AdamW:
    o = config.optim
    for g in groups:
        g["lr"] = o.lr * g["lr_scale"]
    return torch.optim.AdamW(groups, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _open_tensorboard(out_dir: Path, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        log.info("tensorboard is not installed: scalars go to metrics.jsonl only")
        return None
    return SummaryWriter(str(out_dir / "tb"))


def _save(out_dir: Path, model: nn.Module, config: TrainConfig, step: int, optimizer: torch.optim.Optimizer,
          elapsed: float, rng_states: list[torch.Tensor], validation: dict[str, Any] | None) -> None:
    extra = {"train_config": to_dict(config), "step": step, "phase": _phase_of(max(step - 1, 0), config),
             "elapsed_s": elapsed, "validation": _scalars(validation)}
    save_checkpoint(out_dir / LAST_WEIGHTS, model, config.model, extra)
    state = {"step": step, "opt_phase": _phase_of(max(step - 1, 0), config), "optimizer": optimizer.state_dict(),
             "torch_rng": rng_states, "elapsed_s": elapsed}
    tmp = out_dir / (LAST_STATE + ".tmp")
    torch.save(state, tmp)
    tmp.replace(out_dir / LAST_STATE)


def _scalars(metrics: dict[str, Any] | None) -> dict[str, float] | None:
    if metrics is None:
        return None
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def _gather_rng(dist_info: _Dist) -> list[torch.Tensor]:
    state = torch.get_rng_state()
    if dist_info.world == 1:
        return [state]
    import torch.distributed as dist

    states: list[Any] = [None] * dist_info.world
    dist.all_gather_object(states, state)
    return states


def _h36m(config: TrainConfig, split: str) -> Any:
    from lbi_ros.datasets.h36m import Human36MDataset

    h = config.h36m
    return Human36MDataset(h if split == "train" else replace(h, subjects=config.validation.h36m_subjects, stride=1))


def build_validation_set(config: TrainConfig) -> EvalSet:
    v = config.validation
    if config.source == "h36m":
        from lbi_ros.evaluation import benchmark_eval_set

        dataset = _h36m(config, "test")
        pick = sorted({int(i) for i in np.linspace(0, len(dataset) - 1, min(v.num_samples, len(dataset)))})
        return benchmark_eval_set("h36m:" + ",".join(config.validation.h36m_subjects), [dataset[i] for i in pick], ("action", "subject"))
    return rendered_eval_set(config.data.cache_dir, v.split if config.data.cache_dir else None, v.num_samples,
                             v.seed, config.data)


def train(config: TrainConfig, resume: bool = True, stop_after: int | None = None,
          validation_set: EvalSet | None = None) -> TrainResult:
    """Run (or resume) the training ``config`` describes; returns where it stopped.

    ``stop_after``: stop (with a checkpoint) once this many steps are done, as if interrupted; a later call
    resumes. ``validation_set``: reuse a prebuilt set instead of rendering ``config.validation``'s.
    """
    device = _device(config.device)
    dist_info = _init_distributed(device)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    out_dir = Path(config.log.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(config.seed)
    model = build_model(config.model).to(device)
    start_step, elapsed0, state = 0, 0.0, None
    if resume and (out_dir / LAST_STATE).is_file() and (out_dir / LAST_WEIGHTS).is_file():
        ckpt = read_checkpoint(out_dir / LAST_WEIGHTS)
        if ckpt.model_config != config.model:
            raise ValueError(f"{out_dir} holds a run of another model config; use a new log.out_dir")
        model.load_state_dict(ckpt.state_dict, strict=True)
        state = torch.load(out_dir / LAST_STATE, map_location="cpu", weights_only=True)
        start_step, elapsed0 = int(state["step"]), float(state["elapsed_s"])
        log.info("resuming %s at step %d (%.1f min trained)", out_dir, start_step, elapsed0 / 60)
    elif config.init_weights:  # fine-tuning start
        from lbi_ros.weights import resolve_checkpoint

        load_weights_into(model, resolve_checkpoint(config.init_weights), config.model)
    if dist_info.is_main:
        save_yaml(config, out_dir / "config.yaml")
    torch.manual_seed(config.seed + 1 + dist_info.rank)

    train_set = _h36m(config, "train") if config.source == "h36m" else None
    total = config.schedule.total_steps
    end = min(total, stop_after) if stop_after is not None else total
    val_set = validation_set
    if dist_info.is_main and val_set is None and (config.validation.every_steps or end == total):
        val_set = build_validation_set(config)
    writer = _open_tensorboard(out_dir, config.log.tensorboard) if dist_info.is_main else None
    metrics_path = out_dir / "metrics.jsonl"
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else contextlib.nullcontext())

    step, last_loss, validation = start_step, float("nan"), None
    t_start = time.perf_counter()

    def elapsed() -> float:
        return elapsed0 + time.perf_counter() - t_start

    validated_at = -1

    def validate(head: str) -> dict[str, Any] | None:
        nonlocal validated_at
        if not dist_info.is_main or val_set is None or validated_at == step:
            return validation
        validated_at = step
        metrics, predicted = evaluate_model(model, val_set, config.validation.batch_size,
                                            "coarse" if head == "coarse" else "refined", device)
        record = {"step": step, "elapsed_s": elapsed(), "phase": _phase_of(max(step - 1, 0), config),
                  **{f"val/{k}": v for k, v in _scalars(metrics).items()}}
        append_jsonl(metrics_path, record)
        if writer is not None:
            for k, v in record.items():
                if k.startswith("val/"):
                    writer.add_scalar(k, v, step)
        log.info("step %d: val MPJPE %.1f mm, depth %.1f mm (%s head)", step, metrics["mpjpe_mm"],
                 metrics["depth_mpjpe_mm"], head)
        return metrics

    state_to_load = state
    while step < end:
        phase = _phase_of(step, config)
        p_start, p_end = _phase_bounds(phase, config)
        groups, head, use_nll = setup_phase(model, phase, config)
        optimizer = _make_optimizer(groups, config)
        if state_to_load is not None:
            if state_to_load["opt_phase"] == phase and step > p_start:
                optimizer.load_state_dict(state_to_load["optimizer"])
            rng = state_to_load["torch_rng"]
            torch.set_rng_state(rng[dist_info.rank] if dist_info.rank < len(rng) else rng[0])
            state_to_load = None
        net: nn.Module = model
        if dist_info.world > 1:
            net = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        model.train()
        phase_end = min(p_end, end)
        loader = make_loader(config.data, step, phase_end, config.optim.batch_size, config.num_workers,
                             config.render_images, dist_info.rank, dist_info.world, train_set)
        bar = _progress(config, dist_info, step, total, phase)
        trainable = [p for g in groups for p in g["params"]]
        last_ckpt, t_window, n_window = time.perf_counter(), time.perf_counter(), 0
        for batch in loader:
            factor = lr_factor(step - p_start, p_end - p_start, config.schedule.warmup_steps,
                               config.optim.min_lr_ratio)
            for g in optimizer.param_groups:
                g["lr"] = config.optim.lr * g["lr_scale"] * factor
            feeds = {k: batch[k].to(device, non_blocking=True) for k in INPUT_NAMES}
            target = batch["joints_3d"].to(device)
            with autocast:
                out = net(**feeds)
            pred = out.joints_3d_coarse if head == "coarse" else out.joints_3d
            loss, parts = pose_loss(config.loss, pred.float(), target,
                                    out.joints_logvar.float() if use_nll else None)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.optim.grad_clip:
                parts["grad_norm"] = float(nn.utils.clip_grad_norm_(trainable, config.optim.grad_clip))
            optimizer.step()
            step += 1
            n_window += target.shape[0] * dist_info.world
            last_loss = parts["loss/total"]
            if not dist_info.is_main:
                continue
            if step % config.log.log_every == 0 or step == phase_end:
                now = time.perf_counter()
                sps = n_window / max(now - t_window, 1e-9)
                t_window, n_window = now, 0
                record = {"step": step, "phase": phase, "elapsed_s": elapsed(),
                          "lr": optimizer.param_groups[0]["lr"], "samples_per_s": sps, **parts}
                append_jsonl(metrics_path, record)
                if writer is not None:
                    for k, v in record.items():
                        if k not in ("step",):
                            writer.add_scalar(f"train/{k}" if "/" not in k else k, v, step)
                if bar is not None:
                    bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{record['lr']:.2e}", sps=f"{sps:.0f}")
            if bar is not None:
                bar.update(1)
            if config.validation.every_steps and step % config.validation.every_steps == 0 and step < total:
                validation = validate(head)
            if config.log.figure_every and step % config.log.figure_every == 0 and val_set is not None:
                _skeleton_figure(model, val_set, head, out_dir, step, writer)
            if (time.perf_counter() - last_ckpt) / 60 >= config.log.checkpoint_minutes:
                _save(out_dir, model, config, step, optimizer, elapsed(), _gather_rng_main(dist_info),
                      validation)
                last_ckpt = time.perf_counter()
        if bar is not None:
            bar.close()
        if step == p_end and dist_info.is_main and step < total:
            validation = validate(head)  # the end of phase 1
        rng_states = _gather_rng(dist_info)
        if dist_info.is_main:
            _save(out_dir, model, config, step, optimizer, elapsed(), rng_states, validation)

    if step >= total and dist_info.is_main:
        validation = validate("refined")
        save_checkpoint(out_dir / FINAL_WEIGHTS, model, config.model,
                        {"train_config": to_dict(config), "step": step, "elapsed_s": elapsed(),
                         "validation": _scalars(validation)})
        _learning_curve(out_dir)
    if writer is not None:
        writer.close()
    return TrainResult(out_dir, step, last_loss, validation, elapsed())


def _gather_rng_main(dist_info: _Dist) -> list[torch.Tensor]:
    """Mid-phase checkpoints are written by rank 0 alone (no collective): its own RNG state for all ranks."""
    return [torch.get_rng_state()] * dist_info.world


def _progress(config: TrainConfig, dist_info: _Dist, step: int, total: int, phase: int) -> Any:
    if not (config.log.progress and dist_info.is_main):
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=step, desc=f"phase {phase}", unit="step", dynamic_ncols=True)


def _skeleton_figure(model: nn.Module, val_set: EvalSet, head: str, out_dir: Path, step: int, writer: Any) -> None:
    from lbi_ros.evaluation.report import skeleton_figure

    subset = replace(val_set, inputs={k: v[:4] for k, v in val_set.inputs.items()}, joints_3d=val_set.joints_3d[:4])
    from lbi_ros.evaluation import predict

    predicted, _ = predict(model, subset, output="coarse" if head == "coarse" else "refined",
                           device=next(model.parameters()).device)
    fig = skeleton_figure(predicted, subset.joints_3d, title=f"step {step} ({head} head)")
    (out_dir / "figures").mkdir(exist_ok=True)
    fig.savefig(out_dir / "figures" / f"step_{step:07d}.png", dpi=80)
    if writer is not None:
        writer.add_figure("val/skeletons", fig, step)
    import matplotlib.pyplot as plt

    plt.close(fig)


def _learning_curve(out_dir: Path) -> None:
    from lbi_ros.evaluation.report import plot_learning_curve

    plot_learning_curve([out_dir / "metrics.jsonl"], out_dir / "learning_curve.png")
