"""Behaviour of the LBI lifter, its building blocks and the 2D-only baseline (seeded, small, CPU)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from lbi_ros.config import ConfigError, from_dict, load_yaml, save_yaml, to_dict, with_overrides
from lbi_ros.model import ENCODERS, ModelConfig, build_model, count_parameters, set_fused_attention
from lbi_ros.model.afsm import TokenSelector
from lbi_ros.model.encoder import InvertedResidualNet
from lbi_ros.model.layers import Attention, PoseGuidedLayer
from lbi_ros.model.position import SineCosineEncoding2d, patch_centres, sincos_reference
from lbi_ros.runtime.io_spec import IOSpecError, build_io_spec, example_inputs

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "config" / "model"
J = 17


def make_inputs(config: ModelConfig, batch: int, seed: int = 0, missing_fraction: float = 0.15) -> dict:
    """Contract-conforming torch inputs (image_crop None for the 2D-only lifters)."""
    spec = build_io_spec(config)
    feeds = example_inputs(spec, batch, seed=seed, missing_fraction=missing_fraction)
    out: dict = {"image_crop": None}
    out.update({k: torch.from_numpy(v) for k, v in feeds.items()})
    return out


def total_loss(output) -> torch.Tensor:
    loss = output.joints_3d.square().sum() + output.joints_logvar.sum()
    if output.joints_3d_coarse is not None:
        loss = loss + output.joints_3d_coarse.square().sum()
    return loss


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# --- shapes -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 3, 8])
@pytest.mark.parametrize("kind", ["lbi", "lift2d"])
def test_output_shapes(kind: str, batch: int) -> None:
    config = ModelConfig(kind=kind)
    model = build_model(config).eval()
    with torch.no_grad():
        out = model(**make_inputs(config, batch))
    assert out.joints_3d.shape == (batch, J, 3)
    assert out.joints_logvar.shape == (batch, J)
    assert torch.all(out.joints_3d[:, 0] == 0), "pelvis row must be exactly zero"
    assert torch.all((out.joints_logvar >= config.logvar_min) & (out.joints_logvar <= config.logvar_max))
    if kind == "lbi":
        assert out.joints_3d_coarse.shape == (batch, J, 3)
        assert torch.all(out.joints_3d_coarse[:, 0] == 0)
        assert model.num_patches == 192 and model.num_keep == 58
    else:
        assert out.joints_3d_coarse is None


# --- gradients --------------------------------------------------------------------------------------
VARIANTS = {
    "default": {},
    "no_image": {"use_image": False},
    "no_pgtl": {"pgtl": False},
    "keep_all": {"keep_ratio": 1.0},
    "no_stage2": {"stage2": False},
    "rest_token": {"rest_token": True},
    "confidence_input": {"use_confidence": True},
    "lift2d": {"kind": "lift2d"},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_parameter_receives_a_gradient(variant: str) -> None:
    config = ModelConfig(drop_path=0.0, **VARIANTS[variant])
    model = build_model(config).train()
    total_loss(model(**make_inputs(config, 4, missing_fraction=0.3))).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, f"no gradient for {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    if variant == "no_stage2":
        assert model.stage2 is None and not list(model.stage2_parameters())


def test_stage2_switch_refined_equals_coarse() -> None:
    config = ModelConfig(stage2=False)
    out = build_model(config).eval()(**make_inputs(config, 2))
    assert torch.equal(out.joints_3d, out.joints_3d_coarse)


# --- attention --------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_keys", [None, 58])
def test_fused_and_math_attention_agree(num_keys: int | None) -> None:
    attn = Attention(128, 4, qkv_bias=True, num_queries=J, num_keys=num_keys).eval()
    for p in attn.parameters():  # non-zero biases too
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(3, J, 128)
    context = torch.randn(3, num_keys, 128) if num_keys else None
    attn.fused = True
    fused, no_map = attn(x, context)
    attn.fused = False
    math, weights = attn(x, context)
    assert no_map is None
    assert weights.shape == (3, 4, J, num_keys or J)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, J))
    assert (fused - math).abs().max() < 1e-5


def test_whole_model_fused_and_math_agree() -> None:
    config = ModelConfig()
    model = build_model(config).eval()
    inputs = make_inputs(config, 3)
    with torch.no_grad():
        fused = model(**inputs)
        set_fused_attention(model, False)
        math = model(**inputs)
    for a, b in zip(fused, math, strict=True):
        assert (a - b).abs().max() < 1e-5


# --- AFSM -------------------------------------------------------------------------------------------
def test_afsm_keeps_exactly_k_highest_scoring_patches() -> None:
    B, H, HW, d, K = 4, 4, 192, 16, 58
    patches = torch.randn(B, HW, d)
    attention = torch.randn(B, H, J, HW).softmax(-1)
    kept, index = TokenSelector(HW, K, d)(patches, attention)
    assert kept.shape == (B, K, d) and index.shape == (B, K)
    score = attention.mean(dim=(1, 2))
    for b in range(B):
        assert len(set(index[b].tolist())) == K
        chosen = torch.zeros(HW, dtype=torch.bool)
        chosen[index[b]] = True
        assert score[b, chosen].min() >= score[b, ~chosen].max()
        assert torch.all(score[b, index[b]][:-1] >= score[b, index[b]][1:]), "sorted=True"
        torch.testing.assert_close(kept[b], patches[b, index[b]])


def test_rest_token_is_score_weighted_mean_of_pruned() -> None:
    B, HW, d, K = 2, 12, 8, 4
    patches, attention = torch.randn(B, HW, d), torch.randn(B, 2, J, HW).softmax(-1)
    kept, index = TokenSelector(HW, K, d, rest_token=True)(patches, attention)
    assert kept.shape == (B, K + 1, d)
    score = attention.mean(dim=(1, 2))
    for b in range(B):
        pruned = torch.ones(HW, dtype=torch.bool)
        pruned[index[b]] = False
        w = score[b, pruned]
        torch.testing.assert_close(kept[b, -1], (w[:, None] * patches[b, pruned]).sum(0) / w.sum())


def _capture_stage2_context(model, inputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(enhanced patches after the PGTL, last stage-1 attention map, context seen by stage 2)."""
    seen = {}
    hooks = [
        model.stage1[1].register_forward_hook(lambda m, a, out: seen.__setitem__("enhanced", out[1])),
        model.stage1[-1].register_forward_hook(lambda m, a, out: seen.__setitem__("attention", out[2])),
        model.stage2[0].register_forward_pre_hook(lambda m, a: seen.__setitem__("context", a[1])),
    ]
    with torch.no_grad():
        model(**inputs)
    for h in hooks:
        h.remove()
    return seen["enhanced"], seen["attention"], seen["context"]


def test_stage2_reads_top_k_enhanced_patches() -> None:
    config = ModelConfig()
    model = build_model(config).eval()
    enhanced, attention, context = _capture_stage2_context(model, make_inputs(config, 3))
    assert context.shape == (3, 58, config.dim)
    index = attention.mean(dim=(1, 2)).topk(58, dim=1).indices
    torch.testing.assert_close(context, torch.gather(enhanced, 1, index[..., None].expand(-1, -1, config.dim)))


def test_keep_ratio_one_means_stage2_sees_every_patch() -> None:
    config = ModelConfig(keep_ratio=1.0)
    model = build_model(config).eval()
    assert model.selector is None and model.num_keep == model.num_patches == 192
    enhanced, _, context = _capture_stage2_context(model, make_inputs(config, 2))
    assert context.shape == (2, 192, config.dim)
    torch.testing.assert_close(context, enhanced)


# --- PGTL -------------------------------------------------------------------------------------------
def test_pgtl_leaves_unattended_patch_unchanged() -> None:
    d, HW, ignored = 32, 24, 5
    layer = PoseGuidedLayer(d, 4, 2.0, num_joints=J, num_patches=HW).eval()
    for p in layer.parameters():
        torch.nn.init.normal_(p, std=0.2)
    original = layer.dual_attn.attention_logits
    bias = torch.zeros(HW)
    bias[ignored] = -1e4  # no keypoint (in any head) attends to this patch
    layer.dual_attn.attention_logits = lambda q, k: original(q, k) + bias
    x, patches = torch.randn(2, J, d), torch.randn(2, HW, d)
    with torch.no_grad():
        _, enhanced, attention = layer(x, patches)
    change = (enhanced - patches).norm(dim=-1)  # (B, HW)
    assert attention[..., ignored].max() < 1e-6
    assert change[:, ignored].max() < 1e-5
    others = torch.cat([change[:, :ignored], change[:, ignored + 1:]], dim=1)
    assert others.min() > 1e-3, "attended patches should be updated"


def test_pgtl_update_scales_with_column_mass() -> None:
    """Patch i's update is W_oI (A^T V_J)_i: linear in its column of A, zero when the column is zero."""
    d, HW = 32, 24
    layer = PoseGuidedLayer(d, 1, 2.0, num_joints=J, num_patches=HW).eval()
    for p in layer.parameters():  # large weights: a peaked map, so column masses differ a lot
        torch.nn.init.normal_(p, std=0.3)
    x, patches = torch.randn(1, J, d), torch.randn(1, HW, d)
    with torch.no_grad():
        _, enhanced, attention = layer(x, patches)
    mass = attention[0, 0].sum(0)  # (HW,) column masses, they add up to J
    torch.testing.assert_close(mass.sum(), torch.tensor(float(J)))
    change = (enhanced - patches).norm(dim=-1)[0]
    assert torch.corrcoef(torch.stack([mass, change]))[0, 1] > 0.5


# --- missing joints ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["lbi", "lift2d"])
def test_missing_joints_give_finite_outputs_and_ignore_coordinates(kind: str) -> None:
    config = ModelConfig(kind=kind)
    model = build_model(config).eval()
    inputs = make_inputs(config, 3, missing_fraction=0.0)
    inputs["keypoints_crop"][0, 5] = 0.0  # one missing joint, zero coordinates
    inputs["keypoints_crop"][1, :, 2] = 0.0  # every joint missing
    with torch.no_grad():
        out = model(**inputs)
        assert all(torch.isfinite(t).all() for t in out if t is not None)
        garbage = {k: v.clone() if v is not None else None for k, v in inputs.items()}
        garbage["keypoints_crop"][0, 5, :2] = float("nan")
        garbage["keypoints_cam"][0, 5] = 123.0
        again = model(**garbage)
    for a, b in zip(out, again, strict=True):
        if a is not None:
            torch.testing.assert_close(a, b)


def test_missing_joint_with_nan_coordinates_keeps_gradients_finite() -> None:
    config = ModelConfig(drop_path=0.0, use_confidence=True)
    model = build_model(config).train()
    inputs = make_inputs(config, 2)
    inputs["keypoints_crop"][0, 3] = torch.tensor([float("nan"), float("nan"), 0.0])
    total_loss(model(**inputs)).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# --- training behaviour -----------------------------------------------------------------------------
def test_overfits_a_fixed_batch() -> None:
    config = ModelConfig(crop_height=64, crop_width=48, dim=64, num_heads=2, drop_path=0.0)
    model = build_model(config).train()
    inputs = make_inputs(config, 32, seed=1)
    target = torch.randn(32, J, 3, generator=torch.Generator().manual_seed(2)) * 0.2
    target = target - target[:, :1]
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    first, losses = None, []
    for _ in range(300):
        out = model(**inputs)
        loss = sum((p - target).square().sum(-1).mean() for p in (out.joints_3d, out.joints_3d_coarse))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        first = first if first is not None else loss.item()
        losses.append(loss.item())
        if first / loss.item() >= 10:
            break
    assert first / min(losses) >= 10, f"loss only fell {first:.4f} -> {min(losses):.4f}"


def test_freeze_stage1_trains_only_stage2() -> None:
    config = ModelConfig(drop_path=0.0)
    model = build_model(config)
    stage1 = {id(p) for p in model.stage1_parameters()}
    stage2 = {id(p) for p in model.stage2_parameters()}
    assert not stage1 & stage2 and stage1 | stage2 == {id(p) for p in model.parameters()}
    assert {id(p) for p in model.encoder_parameters()} <= stage1
    model.freeze_stage1()
    model.train()
    assert not model.stage1.training and not model.patch_embed.encoder.training
    assert model.stage2.training
    out = model(**make_inputs(config, 2))
    assert not out.joints_3d_coarse.requires_grad  # stage 1 ran under no_grad
    total_loss(out).backward()
    assert all(p.grad is None for p in model.stage1_parameters())
    assert all(p.grad is not None for p in model.stage2_parameters())


# --- sizes ------------------------------------------------------------------------------------------
def test_model_size_budget_and_baseline_parity() -> None:
    full = build_model(load_yaml(ModelConfig, CONFIG_DIR / "lbi.yaml"))
    lift2d = build_model(load_yaml(ModelConfig, CONFIG_DIR / "lift2d.yaml"))
    n_full, n_2d = count_parameters(full), count_parameters(lift2d)
    assert n_full <= 5_000_000
    assert 0.9 <= n_2d / n_full <= 1.1, (n_full, n_2d)


def test_flops_per_person_within_budget() -> None:
    from lbi_ros.benchmarks.model_bench import gflops_per_person

    config = ModelConfig()
    feeds = example_inputs(build_io_spec(config), 2)
    assert 0.05 < gflops_per_person(build_model(config), feeds) <= 0.5


# --- positional encoding ----------------------------------------------------------------------------
def test_keypoint_at_patch_centre_gets_that_patch_encoding() -> None:
    pe = SineCosineEncoding2d(128, 16, 12)
    centres = patch_centres(16, 12)  # (192, 2)
    torch.testing.assert_close(pe(centres), pe.patch_encoding[0])
    x, y = centres[37].tolist()
    torch.testing.assert_close(pe.patch_encoding[0, 37], sincos_reference(x, y, 128, 16, 12), atol=1e-5, rtol=0)


# --- encoder registry -------------------------------------------------------------------------------
def test_custom_encoder_plugs_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ENCODERS, "tiny_test", lambda c: InvertedResidualNet([(8, 2), (16, 2)], stem_channels=8))
    config = ModelConfig(encoder="tiny_test")
    model = build_model(config)
    assert model.num_patches == 192  # 128x96 at stride 8
    assert model(**make_inputs(config, 2)).joints_3d.shape == (2, J, 3)


def test_encoder_grid_mismatch_is_reported() -> None:
    with pytest.raises(ValueError, match="unknown encoder"):
        build_model(ModelConfig(encoder="nope"))
    with pytest.raises(ValueError, match="not divisible"):
        build_model(ModelConfig(crop_height=100))


# --- config -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["lbi.yaml", "lift2d.yaml"])
def test_config_yaml_round_trip(name: str, tmp_path: Path) -> None:
    config = load_yaml(ModelConfig, CONFIG_DIR / name)
    save_yaml(config, tmp_path / "out.yaml")
    assert load_yaml(ModelConfig, tmp_path / "out.yaml") == config
    assert from_dict(ModelConfig, to_dict(config)) == config


def test_default_yaml_equals_dataclass_defaults() -> None:
    assert load_yaml(ModelConfig, CONFIG_DIR / "lbi.yaml") == ModelConfig()


def test_config_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ConfigError, match="depth_stage3"):
        from_dict(ModelConfig, {"depth_stage3": 2})
    with pytest.raises(ConfigError):
        from_dict(ModelConfig, {"kind": "videopose"})
    bad = [{"dim": 130}, {"keep_ratio": 0.0}, {"pgtl_layer": 2}, {"rest_token": True, "keep_ratio": 1.0},
           {"logvar_min": 5.0}, {"drop_path": 1.0}]
    for values in bad:
        with pytest.raises(ConfigError):
            from_dict(ModelConfig, values)
    assert with_overrides(ModelConfig(), ["keep_ratio=1.0"]).keep_ratio == 1.0


# --- I/O contract -----------------------------------------------------------------------------------
def test_io_spec_names_and_validation() -> None:
    spec = build_io_spec(ModelConfig(), include_coarse=True)
    assert spec.input_names == ("image_crop", "keypoints_crop", "keypoints_cam", "crop_cam")
    assert spec.output_names == ("joints_3d", "joints_logvar", "joints_3d_coarse")
    assert build_io_spec(ModelConfig(kind="lift2d")).input_names == ("keypoints_crop", "keypoints_cam", "crop_cam")
    assert build_io_spec(ModelConfig(use_image=False)).input_names[0] == "keypoints_crop"
    feeds = example_inputs(spec, 3)
    assert spec.check_inputs(feeds) == 3
    with pytest.raises(IOSpecError, match="axis 2"):
        spec.check_inputs({**feeds, "image_crop": feeds["image_crop"][:, :, :64]})
    with pytest.raises(IOSpecError, match="missing"):
        spec.check_inputs({k: v for k, v in feeds.items() if k != "crop_cam"})
    with pytest.raises(IOSpecError, match="coarse"):
        build_io_spec(ModelConfig(kind="lift2d"), include_coarse=True)
    assert list(spec.bind_outputs([1, 2, 3])) == list(spec.output_names)


# --- import hygiene ---------------------------------------------------------------------------------
def test_model_and_runtime_import_with_rclpy_blocked() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["rclpy"] = None  # any `import rclpy` now raises ImportError
        import lbi_ros.model.config, lbi_ros.runtime.io_spec
        assert "torch" not in sys.modules, "the config and the I/O contract must not need torch"
        import lbi_ros.model, lbi_ros.runtime.onnx_export, lbi_ros.benchmarks.model_bench
        from lbi_ros.model import build_model, ModelConfig
        build_model(ModelConfig())
        assert "onnxruntime" not in sys.modules
        """
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
