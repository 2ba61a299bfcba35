"""Train a lifter from a feature-cache pool: the gated LBI or its matched 2D-only lifter, on identical batches.

Why a trainer of its own: :mod:`lbi_ros.training.trainer` renders every sample and runs the encoder each
step (two-phase LBI schedule); here the backbone is frozen and cached, so one phase suffices and a step
costs only the transformer. Both kinds of a matched pair warm-start from the same 2D-only weights
(``init``), read the same batches (:class:`CachedFeatureStream`, a function of pool, seed and step) and
take the same number of optimiser steps with the same schedule; the keypoint path of both gets ``lr``, the
gated model's image path ``lr * image_lr_scale``.

Outputs in ``out_dir``: ``last.safetensors`` + ``state.pt`` (optimiser, step, RNG: an interrupted run
resumes exactly), ``best.safetensors`` (lowest mean val MPJPE over the val pools: selection on val),
``log.jsonl`` (train loss, samples/s, val metrics).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from lbi_ros.model.config import ModelConfig
from lbi_ros.synth.noise2d import Noise2DConfig
from lbi_ros.training.config import LossConfig
from lbi_ros.training.trainer import append_jsonl, lr_factor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedTrainConfig:
    """One run. Paths are set on the command line (``pool_dir=... out_dir=...``)."""

    kind: Literal["lbi_gated", "lift2d"] = "lbi_gated"
    pool_dir: str = ""
    val_pools: tuple[str, ...] = ()
    out_dir: str = ""
    tap: str = "add_8"
    init: str = "lift2d-base"
    """Checkpoint whose (2D-only) weights start the keypoint path; '' = fresh weights."""
    gated_after: tuple[int, ...] = (1, 3, 5)
    keep_ratio: float = 0.3
    pgtl: bool = True
    """Gated-model structure (:class:`ModelConfig` fields); the rest is the ``init`` checkpoint's."""
    noise: Noise2DConfig = field(default_factory=Noise2DConfig)
    val_noise: Literal["stored", "train"] = "stored"
    """Validate on the pools' stored keypoints (``lbi eval``'s default noise) or on fixed keypoints drawn
    with ``noise`` (selection under the training noise, e.g. detector-like)."""
    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-4
    image_lr_scale: float = 3.0
    weight_decay: float = 0.01
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    num_rows: int = 0
    """At most this many pool rows (0 = all). Each epoch takes the pool's finished prefix when it starts (the
    pool may still be building); the per-epoch sizes are saved, so a resume replays the same rows."""
    epoch_rows_from: str = ""
    """A run directory whose recorded per-epoch pool sizes this run replays (match a partner trained while
    the pool was still growing); '' = take each epoch's finished prefix."""
    val_every: int = 250
    checkpoint_minutes: float = 3.0
    threads: int = 1
    loss: LossConfig = field(default_factory=LossConfig)


def build_pair_model(config: CachedTrainConfig) -> tuple[torch.nn.Module, ModelConfig]:
    """The model of ``config.kind``, warm-started from ``config.init`` (a 2D-only checkpoint)."""
    from lbi_ros.checkpoint import read_checkpoint
    from lbi_ros.model import build_model
    from lbi_ros.weights import resolve_checkpoint

    init = read_checkpoint(resolve_checkpoint(config.init)) if config.init else None
    base = init.model_config if init is not None else ModelConfig(kind="lift2d")
    if base.kind != "lift2d":
        raise ValueError(f"init {config.init!r} must be a 2D-only (lift2d) checkpoint, got {base.kind!r}")
    if config.kind == "lift2d":
        model_config = base
    else:
        model_config = replace(base, kind="lbi_gated", encoder=f"blazepose_{config.tap}",
                               patch_centres="receptive_field", gated_after=config.gated_after,
                               keep_ratio=config.keep_ratio, pgtl=config.pgtl)
    model = build_model(model_config)
    if init is not None:
        (model.load_lift2d if config.kind == "lbi_gated" else model.load_state_dict)(init.state_dict)
    return model, model_config


def predict(model: torch.nn.Module, batch: Any) -> Any:
    """Forward a :class:`FeatureBatch` through either kind (the 2D-only lifter ignores the features)."""
    if hasattr(model, "forward_features"):
        return model.forward_features(batch.features, **batch.model_inputs())
    return model(None, **batch.model_inputs())


@torch.no_grad()
def evaluate_pool(model: torch.nn.Module, batches: list) -> dict[str, float]:
    """MPJPE / P-MPJPE / depth error (mm) over fixed batches (:mod:`lbi_ros.metrics`, as ``lbi eval``)."""
    from lbi_ros.metrics import mpjpe, p_mpjpe

    was = model.training
    model.eval()
    pred, target = [], []
    for b in batches:
        pred.append(predict(model, b).joints_3d.numpy().astype(np.float64))
        target.append(b.joints_3d.numpy().astype(np.float64))
    model.train(was)
    p, t = np.concatenate(pred), np.concatenate(target)
    return {"mpjpe_mm": 1e3 * float(mpjpe(p, t)), "p_mpjpe_mm": 1e3 * float(p_mpjpe(p, t)),
            "depth_mm": 1e3 * float(np.abs(p[..., 2] - t[..., 2]).mean()), "n": int(p.shape[0])}


def train_cached(config: CachedTrainConfig, resume: bool = True, stop_after: int | None = None) -> dict[str, Any]:
    """Run (or resume) ``config``; returns the final record (step, val metrics, best step)."""
    from tqdm import tqdm

    from lbi_ros.checkpoint import save_checkpoint
    from lbi_ros.training.cached_data import CachedFeatureStream, eval_batches
    from lbi_ros.training.losses import pose_loss

    torch.set_num_threads(config.threads)
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    model, model_config = build_pair_model(config)
    model.train()
    if config.kind == "lbi_gated":
        image_ids = {id(p) for p in model.image_parameters()}
        lift = [p for p in model.lift.parameters()]
        groups = [{"params": lift, "lr_scale": 1.0},
                  {"params": model.image_parameters(), "lr_scale": config.image_lr_scale}]
        assert not image_ids & {id(p) for p in lift}
    else:
        groups = [{"params": list(model.parameters()), "lr_scale": 1.0}]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    step, best, epoch_rows = 0, (math.inf, -1), {}
    state_path = out / "state.pt"
    if config.epoch_rows_from:
        partner = torch.load(Path(config.epoch_rows_from) / "state.pt", weights_only=True)
        epoch_rows = {int(k): int(v) for k, v in json.loads(partner["epoch_rows"]).items()}
    if resume and state_path.is_file():
        state = torch.load(state_path, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        step, best = int(state["step"]), (float(state["best"][0]), int(state["best"][1]))
        epoch_rows = {int(k): int(v) for k, v in json.loads(state["epoch_rows"]).items()}
        log.info("resumed %s at step %d", out, step)
    stream = CachedFeatureStream(config.pool_dir, config.tap, config.noise, config.seed, config.num_rows or None,
                                 epoch_rows)
    val_noise = config.noise if config.val_noise == "train" else None
    vals = {Path(p).name.split("-")[0]: eval_batches(p, config.tap, noise=val_noise) for p in config.val_pools}
    meta = {"config": repr(config), "pool": config.pool_dir}
    (out / "run.json").write_text(json.dumps(meta, indent=1))

    def save(final: bool = False) -> None:
        extra = {"step": step, "kind": config.kind, "epoch_rows": stream.epoch_rows, "tap": config.tap}
        save_checkpoint(out / "last.safetensors", model, model_config, extra)
        tmp = out / "state.pt.tmp"
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                    "torch_rng": torch.get_rng_state(), "best": list(best),
                    "epoch_rows": json.dumps(stream.epoch_rows)}, tmp)
        tmp.replace(state_path)

    def validate() -> dict[str, Any]:
        nonlocal best
        record: dict[str, Any] = {"step": step}
        for name, batches in vals.items():
            record[name] = evaluate_pool(model, batches)
        if vals:
            score = float(np.mean([record[n]["mpjpe_mm"] for n in vals]))
            record["val_mean_mpjpe_mm"] = score
            if score < best[0]:
                best = (score, step)
                save_checkpoint(out / "best.safetensors", model, model_config,
                                {"step": step, "kind": config.kind, "val": record})
        append_jsonl(out / "log.jsonl", record)
        log.info("step %d val %s", step, {n: round(record[n]["mpjpe_mm"], 2) for n in vals})
        return record

    if step == 0 and vals:
        validate()
    bar = tqdm(total=config.steps, initial=step, desc=f"{config.kind}", unit="step", mininterval=10)
    last_save, t0, seen = time.monotonic(), time.monotonic(), 0
    t_data = 0.0
    end = config.steps if stop_after is None else min(config.steps, stop_after)
    while step < end:
        td = time.perf_counter()
        batch = stream.batch(step, config.batch_size)
        t_data += time.perf_counter() - td
        factor = lr_factor(step, config.steps, config.warmup_steps, config.min_lr_ratio)
        for g in optimizer.param_groups:
            g["lr"] = config.lr * g["lr_scale"] * factor
        output = predict(model, batch)
        loss, parts = pose_loss(config.loss, output.joints_3d, batch.joints_3d, output.joints_logvar)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        step += 1
        seen += config.batch_size
        bar.update(1)
        if step % 50 == 0:
            sps = seen / (time.monotonic() - t0)
            bar.set_postfix(loss=f"{parts['loss/total']:.4f}", sps=f"{sps:.0f}")
            append_jsonl(out / "log.jsonl", {"step": step, "train": parts, "samples_per_s": sps,
                                              "epoch_rows": stream.epoch_rows,
                                              "data_s_per_step": t_data / max(seen / config.batch_size, 1)})
        if vals and (step % config.val_every == 0 or step == config.steps):
            validate()
        if time.monotonic() - last_save > 60 * config.checkpoint_minutes or step == end:
            save()
            last_save = time.monotonic()
    bar.close()
    return {"step": step, "best_val_mean_mpjpe_mm": best[0], "best_step": best[1], "out_dir": str(out)}
