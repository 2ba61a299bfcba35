"""Training: config round trip, losses, schedule, a tiny two-phase run on procedural data, exact resume."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from lbi_ros.checkpoint import load_model, read_checkpoint
from lbi_ros.cli.main import main as cli_main
from lbi_ros.config import ConfigError, from_dict, save_yaml, to_dict
from lbi_ros.evaluation import rendered_eval_set
from lbi_ros.metrics import mpjpe
from lbi_ros.training.config import TrainConfig, load_train_config
from lbi_ros.training.losses import bone_length_loss, gaussian_nll, mpjpe_loss, pose_loss
from lbi_ros.training.trainer import FINAL_WEIGHTS, LAST_WEIGHTS, lr_factor, train

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config" / "train"
TINY_MODEL = {"dim": 32, "num_heads": 2, "depth_stage1": 2, "pgtl_layer": 0, "depth_stage2": 1, "drop_path": 0.1}


def tiny_config(out_dir: Path, phase1: int = 2, phase2: int = 2, **model: object) -> TrainConfig:
    return from_dict(TrainConfig, {
        "model": {**TINY_MODEL, **model},
        "data": {"samples_per_epoch": 64, "render": {"bank_size": 2, "bank_resolution": 64}},
        "optim": {"batch_size": 4, "lr": 1e-3},
        "schedule": {"phase1_steps": phase1, "phase2_steps": phase2, "warmup_steps": 1},
        "validation": {"every_steps": 0, "num_samples": 8, "batch_size": 8},
        "log": {"out_dir": str(out_dir), "log_every": 1, "figure_every": 0, "checkpoint_minutes": 100.0,
                "progress": False, "tensorboard": False},
        "num_threads": 1,
    })


@pytest.fixture(scope="module")
def val_set():
    return rendered_eval_set("", None, 8, seed=3)


def test_config_round_trip_and_unknown_keys(tmp_path: Path) -> None:
    config = load_train_config(CONFIG_DIR / "lbi.yaml", ["optim.lr=0.0005", "log.out_dir=/tmp/x"])
    assert config.optim.lr == 0.0005 and config.log.out_dir == "/tmp/x"
    save_yaml(config, tmp_path / "resolved.yaml")
    assert load_train_config(tmp_path / "resolved.yaml") == config
    with pytest.raises(ConfigError, match="optim.learning_rate"):
        from_dict(TrainConfig, {"optim": {"learning_rate": 1e-3}})
    with pytest.raises(ConfigError, match="unknown config key"):
        load_train_config(CONFIG_DIR / "lbi.yaml", ["schedule.epochs=3"])
    with pytest.raises(ConfigError, match="single phase"):
        from_dict(TrainConfig, {"model": {"kind": "lift2d"}, "schedule": {"phase2_steps": 5}})


def test_every_shipped_train_config_loads() -> None:
    from lbi_ros.config import load_yaml
    from lbi_ros.training.cached_trainer import CachedTrainConfig

    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        if path.name.startswith("eval_"):
            continue  # evaluation-only configs (a benchmark data config, not a TrainConfig)
        if path.name.startswith("gated_"):
            load_yaml(CachedTrainConfig, path)  # feature-cache runs (lbi train-cached, issue 18)
            continue
        load_train_config(path)


def test_losses_match_the_metrics_and_the_nll_optimum() -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.randn(5, 17, 3, generator=g)
    pred = target + 0.05 * torch.randn(5, 17, 3, generator=g)
    assert torch.allclose(mpjpe_loss(pred, target), mpjpe(pred, target), atol=1e-6)
    assert float(bone_length_loss(target, target)) == pytest.approx(0.0, abs=1e-5)
    sq = (pred - target).square().sum(-1)
    best = torch.log(sq / 3)  # d/dlv of 0.5 * (sq * exp(-lv) + 3 lv) = 0  ->  var = sq / 3
    assert float(gaussian_nll(pred, target, best)) < float(gaussian_nll(pred, target, best + 0.3))
    assert float(gaussian_nll(pred, target, best)) < float(gaussian_nll(pred, target, best - 0.3))
    total, parts = pose_loss(dataclasses.replace(TrainConfig().loss, bone_weight=1.0), pred, target, best)
    assert set(parts) == {"loss/mpjpe", "loss/nll", "loss/bone", "loss/total"}
    assert float(total) == pytest.approx(parts["loss/total"])


def test_lr_schedule_warms_up_then_decays() -> None:
    f = [lr_factor(s, 100, 10, 0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))
    assert f[-1] == pytest.approx(0.1, abs=0.01)


def test_two_phase_smoke_run_freezes_stage1_and_writes_a_loadable_checkpoint(tmp_path: Path, val_set) -> None:
    config = tiny_config(tmp_path / "run")
    result = train(config, validation_set=val_set)
    assert result.step == 4 and np.isfinite(result.last_loss)
    assert result.validation is not None and result.validation["num_samples"] == 8
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert any('"phase": 2' in line for line in lines)
    # the checkpoint rebuilds the model alone and carries the resolved training config
    model, ckpt = load_model(tmp_path / "run" / FINAL_WEIGHTS)
    assert ckpt.model_config == config.model and ckpt.extra["step"] == 4
    assert from_dict(TrainConfig, ckpt.extra["train_config"]) == config
    assert (tmp_path / "run" / "config.yaml").is_file()
    # phase 1 does not touch stage 2; phase 2 does not touch stage 1: compare with a fresh init
    torch.manual_seed(config.seed)
    from lbi_ros.model import build_model

    fresh = build_model(config.model).state_dict()
    trained = model.state_dict()
    assert not torch.equal(fresh["coarse_head.linear.weight"], trained["coarse_head.linear.weight"])
    assert not torch.equal(fresh["refined_head.linear.weight"], trained["refined_head.linear.weight"])


def test_phase2_leaves_stage1_untouched_and_phase1_leaves_stage2_untouched(tmp_path: Path, val_set) -> None:
    """Weight snapshots: after phase 1 (the run stopped at the phase boundary) and after phase 2. Every
    stage-1 tensor (encoder, token embeddings, stage-1 layers, coarse head; parameters and buffers such as
    BatchNorm statistics) is bit-identical across phase 2, every stage-2 parameter changed; phase 1 left
    stage 2 at its initial values."""
    from lbi_ros.model import build_model

    config = tiny_config(tmp_path / "run", phase1=2, phase2=3)
    torch.manual_seed(config.seed)
    model = build_model(config.model)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    stage1_ids = {id(t) for m in model._stage1_modules() for t in [*m.parameters(), *m.buffers()]}
    stage2_ids = {id(p) for p in model.stage2_parameters()}
    stage2_buffer_ids = {id(b) for m in model._stage2_modules() for b in m.buffers()}
    tensors = [(k, t) for k, t in [*model.named_parameters(), *model.named_buffers()] if k in initial]  # saved
    stage1 = {k for k, t in tensors if id(t) in stage1_ids}
    stage2 = {k for k, p in model.named_parameters() if id(p) in stage2_ids}  # trained in phase 2
    stage2_buffers = {k for k, t in tensors if id(t) in stage2_buffer_ids}
    assert stage1 and stage2 and not stage1 & (stage2 | stage2_buffers)
    assert stage1 | stage2 | stage2_buffers == {k for k, _ in tensors}, \
        "every tensor belongs to one stage: none can be trained in phase 2 by accident"

    assert train(config, stop_after=2, validation_set=val_set).step == 2
    after_phase1 = read_checkpoint(tmp_path / "run" / LAST_WEIGHTS).state_dict
    assert train(config, validation_set=val_set).step == 5
    after_phase2 = read_checkpoint(tmp_path / "run" / FINAL_WEIGHTS).state_dict

    changed_in_phase1 = [k for k in stage1 if not torch.equal(initial[k], after_phase1[k])]
    assert changed_in_phase1, "phase 1 trains stage 1"
    assert all(torch.equal(initial[k], after_phase1[k]) for k in stage2 | stage2_buffers), \
        "phase 1 left stage 2 as initialised"
    moved = sorted(k for k in stage1 if not torch.equal(after_phase1[k], after_phase2[k]))
    assert not moved, f"phase 2 changed stage-1 tensors: {moved}"
    still = sorted(k for k in stage2 if torch.equal(after_phase1[k], after_phase2[k]))
    assert not still, f"phase 2 did not train: {still}"


def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path: Path, val_set) -> None:
    straight = train(tiny_config(tmp_path / "a", phase1=3, phase2=2), validation_set=val_set)
    config_b = tiny_config(tmp_path / "b", phase1=3, phase2=2)
    first = train(config_b, stop_after=2, validation_set=val_set)  # interrupted inside phase 1
    assert first.step == 2 and not (tmp_path / "b" / FINAL_WEIGHTS).exists()
    resumed = train(config_b, validation_set=val_set)
    assert resumed.step == 5
    assert resumed.last_loss == straight.last_loss
    a = read_checkpoint(tmp_path / "a" / FINAL_WEIGHTS).state_dict
    b = read_checkpoint(tmp_path / "b" / FINAL_WEIGHTS).state_dict
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_single_phase_baseline_and_cli(tmp_path: Path, val_set) -> None:
    cfg = dataclasses.replace(tiny_config(tmp_path / "l2d", phase1=2, phase2=0, kind="lift2d", depth_lift2d=2),
                              render_images=False)
    path = tmp_path / "l2d.yaml"
    save_yaml(cfg, path)
    assert cli_main(["train", str(path), "validation.num_samples=4"]) == 0
    _, ckpt = load_model(tmp_path / "l2d" / FINAL_WEIGHTS)
    assert ckpt.model_config.kind == "lift2d" and ckpt.extra["train_config"]["render_images"] is False
    with pytest.raises(ConfigError, match="render_images"):
        from_dict(TrainConfig, {**to_dict(tiny_config(tmp_path)), "render_images": False})


def test_h36m_recipe_smoke_on_fixture_files(tmp_path: Path) -> None:
    """config/train/h36m.yaml with paths on the command line, on the VideoPose3D-format fixture."""
    from .test_data_h36m import write_fixture

    h = write_fixture(tmp_path)
    tiny = [f"model.{k}={v}" for k, v in TINY_MODEL.items()]
    overrides = [f"h36m.data_3d={h.data_3d}", f"h36m.data_2d={h.data_2d}", f"h36m.cameras={h.cameras}",
                 "h36m.subjects=[S1]", f"log.out_dir={tmp_path / 'run'}", "optim.batch_size=4", "num_workers=0",
                 "schedule.phase1_steps=1", "schedule.phase2_steps=1", "schedule.warmup_steps=0",
                 "validation.num_samples=6", "validation.h36m_subjects=[S9]", "log.progress=false", "log.figure_every=0", *tiny]
    config = load_train_config(CONFIG_DIR / "h36m.yaml", overrides)
    result = train(config)
    assert result.step == 2 and result.validation is not None
    assert result.validation["dataset"] == "h36m:S9" and result.validation["num_samples"] == 6


def test_fine_tuning_starts_from_the_given_weights_and_refuses_another_model(tmp_path: Path, val_set) -> None:
    base = tiny_config(tmp_path / "base", phase1=2, phase2=0, stage2=False)
    train(base, validation_set=val_set)
    start = read_checkpoint(tmp_path / "base" / FINAL_WEIGHTS).state_dict
    tuned_cfg = dataclasses.replace(tiny_config(tmp_path / "tuned", phase1=1, phase2=0, stage2=False),
                                    init_weights=str(tmp_path / "base" / FINAL_WEIGHTS))
    optim = dataclasses.replace(tuned_cfg.optim, lr=1e-9)  # a step this small leaves the start visible
    train(dataclasses.replace(tuned_cfg, optim=optim), validation_set=val_set)
    tuned = read_checkpoint(tmp_path / "tuned" / FINAL_WEIGHTS).state_dict
    # every learned weight moved by at most ~lr from the starting checkpoint (BatchNorm statistics move anyway)
    learned = [k for k in start if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert all(torch.allclose(tuned[k].float(), start[k].float(), atol=1e-5) for k in learned)
    other = dataclasses.replace(tiny_config(tmp_path / "other", phase1=1, phase2=0, stage2=False, dim=48),
                                init_weights=str(tmp_path / "base" / FINAL_WEIGHTS))
    with pytest.raises(ValueError, match="another model config"):
        train(other, validation_set=val_set)
