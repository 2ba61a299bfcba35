"""Issue 18: the shared square crop, patch-centre agreement, the gated LBI's warm start, the feature cache,
the cached training stream and the image-reliance conditions."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from lbi_ros.geometry import Intrinsics
from lbi_ros.model import build_model
from lbi_ros.model.config import ModelConfig
from lbi_ros.model.position import patch_centres, receptive_field_centres
from lbi_ros.pose2d.roi import crop_affine, person_roi_from_box, person_roi_from_keypoints
from lbi_ros.preprocess import CropBox, compute_crop_box

from .conftest import require_module, require_pose_models

# A gated model on the scratch CNN (no model file needed): stride 8 on a 64 px square -> 8x8 patches.
SMALL = ModelConfig(kind="lbi_gated", encoder="irnet_s8", image_size=64, dim=32, num_heads=4,
                    depth_lift2d=4, gated_after=(0, 1, 2), patch_centres="receptive_field")


@pytest.fixture
def needs_blazepose() -> None:
    """The BlazePose files: skip without them on a developer machine, fail under CI."""
    require_pose_models()


def _inputs(b: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    kc = torch.rand(b, 17, 3, generator=g) * 2 - 1
    kc[..., 2] = 0.9
    kc[0, 5] = 0.0  # a missing joint
    return {"keypoints_crop": kc, "keypoints_cam": torch.randn(b, 17, 2, generator=g) * 0.1,
            "crop_cam": torch.randn(b, 4, generator=g) * 0.1}


# --- shared crop rule -----------------------------------------------------------------------------------
def test_person_roi_is_the_square_the_renderer_draws():
    from lbi_ros.training.square_crops import square_from_crop

    box = CropBox(310.0, 220.0, 150.0, 200.0)
    roi = person_roi_from_box(box.cx, box.cy, box.h)
    square = CropBox(box.cx, box.cy, box.h, box.h)
    fwd, _ = crop_affine(roi, 256)
    np.testing.assert_allclose(fwd, square.affine(256, 256), atol=1e-9)
    k = Intrinsics(1000.0, 1000.0, 640.0, 360.0)
    got, region = square_from_crop(box.crop_intrinsics(k, 128, 96), (0.0, 0.0, 95.0, 127.0), 128, 96)
    want = square.crop_intrinsics(k, 256, 256)
    np.testing.assert_allclose([got.fx, got.fy, got.cx, got.cy], [want.fx, want.fy, want.cx, want.cy], atol=1e-9)
    # a keypoint's box-crop coordinates (x, y) are (x * w/h, y) in the square
    u, v = 350.0, 180.0
    x, y = 2 * (u - box.cx) / box.w, 2 * (v - box.cy) / box.h
    p = fwd @ np.array([u, v, 1.0])
    np.testing.assert_allclose((p + 0.5) / 128 - 1, [x * box.w / box.h, y], atol=1e-9)


def test_person_roi_from_keypoints_uses_the_box_rule():
    kp = np.zeros((17, 3))
    kp[:, 0] = np.linspace(100, 140, 17)
    kp[:, 1] = np.linspace(50, 250, 17)
    kp[:, 2] = 0.9
    box = compute_crop_box(kp)
    roi = person_roi_from_keypoints(kp)
    assert (roi.center_u, roi.center_v, roi.size_px, roi.rotation_rad) == (box.cx, box.cy, box.h, 0.0)
    assert person_roi_from_keypoints(np.zeros((17, 3))) is None


# --- patch centres ----------------------------------------------------------------------------------------
def test_receptive_field_centres_generalise_the_grid():
    torch.testing.assert_close(receptive_field_centres(16, 12, 8, 3.5), patch_centres(16, 12))
    # irnet_s8: symmetric padding centres cell i on pixel 8 i, i.e. 3.5 px before the grid centre 8 i + 3.5
    rf = receptive_field_centres(16, 12, 8, 0.0)
    np.testing.assert_allclose((rf - patch_centres(16, 12))[:, 0].numpy() * 48, -3.5, atol=1e-5)


def test_irnet_receptive_field_matches_its_padding():
    from lbi_ros.model.encoder import build_encoder

    enc = build_encoder(ModelConfig()).eval()
    assert enc.patch_offset_px == 0.0
    # an impulse at pixel (8 i, 8 j) reaches output cell (i, j) through the kernel centre of every layer
    for module in enc.modules():  # positive weights: the response peaks where the receptive field centres
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.constant_(module.weight, 0.05)  # small: no ReLU6 saturation
    x = torch.full((1, 3, 128, 96), 1e-4, requires_grad=True)  # tiny: the ReLU6s stay linear
    enc(x)[0, :, 7, 5].sum().backward()
    g = x.grad.abs().sum((0, 1))
    cy = float((g.sum(1) * torch.arange(128)).sum() / g.sum())
    cx = float((g.sum(0) * torch.arange(96)).sum() / g.sum())
    assert abs(cy - 56) < 0.5 and abs(cx - 40) < 0.5


def test_shipped_models_keep_the_centres_they_were_trained_with():
    """The from-scratch LBI was trained with the old grid centres; the gated default with the fixed ones."""
    from lbi_ros.checkpoint import read_checkpoint
    from lbi_ros.weights import resolve_checkpoint

    assert read_checkpoint(resolve_checkpoint("lbi-scratch")).model_config.patch_centres == "grid"
    assert read_checkpoint(resolve_checkpoint("default")).model_config.patch_centres == "receptive_field"


# --- gated model ------------------------------------------------------------------------------------------
def test_gated_model_starts_exactly_at_the_2d_only_lifter():
    torch.manual_seed(0)
    base = build_model(replace(SMALL, kind="lift2d")).eval()
    gated = build_model(SMALL).eval()
    gated.load_lift2d(base.state_dict())
    inputs = _inputs()
    with torch.no_grad():
        want = base(None, **inputs)
        got = gated(torch.randn(3, 3, 64, 64), **inputs)
        got_features = gated.forward_features(torch.randn(3, 64, 8, 8) * 5, **inputs)
    assert torch.equal(got.joints_3d, want.joints_3d) and torch.equal(got.joints_logvar, want.joints_logvar)
    assert torch.equal(got_features.joints_3d, want.joints_3d)


def test_gated_model_reads_the_image_once_gates_open_and_every_part_trains():
    torch.manual_seed(0)
    gated = build_model(SMALL).train()
    for block in gated.blocks:
        torch.nn.init.constant_(block.gate_attn, 0.5)
        torch.nn.init.constant_(block.gate_mlp, 0.5)
    inputs = _inputs()
    feats = torch.randn(3, 64, 8, 8)
    out = gated.forward_features(feats, **inputs)
    (out.joints_3d.square().sum() + out.joints_logvar.sum()).backward()
    missing = [n for n, p in gated.named_parameters()
               if p.requires_grad and not n.startswith("backbone") and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing, missing
    gated.eval()
    with torch.no_grad():
        a = gated.forward_features(feats, **inputs).joints_3d
        b = gated.forward_features(feats.flip(0), **inputs).joints_3d
    assert not torch.allclose(a, b)
    assert gated.selector is not None and gated.blocks[-1].attn.num_keys == gated.num_keep


def test_gated_checkpoint_round_trip(tmp_path):
    from lbi_ros.checkpoint import load_model, save_checkpoint

    model = build_model(SMALL).eval()
    path = save_checkpoint(tmp_path / "g.safetensors", model, SMALL)
    loaded, ckpt = load_model(path)
    assert ckpt.model_config == SMALL
    inputs = _inputs()
    img = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(img, **inputs).joints_3d, model(img, **inputs).joints_3d)


@pytest.mark.usefixtures("needs_blazepose")
def test_blazepose_backbone_is_frozen_and_matches_its_net():
    from lbi_ros.model.encoder import ENCODERS
    from lbi_ros.pose2d.blazepose import load_landmark_net

    tap = ENCODERS["blazepose_add_8"](ModelConfig())
    assert all(not p.requires_grad for p in tap.parameters()) and tap.stride == 32 and tap.out_channels == 144
    rgb = torch.rand(2, 256, 256, 3)
    crop = (rgb.permute(0, 3, 1, 2) - tap.mean) / tap.std
    with torch.no_grad():
        torch.testing.assert_close(tap(crop), load_landmark_net(("add_8",))(rgb)["add_8"], atol=1e-3, rtol=1e-4)


# --- feature cache and cached stream ------------------------------------------------------------------
@pytest.mark.usefixtures("needs_blazepose")
def test_feature_cache_reloads_bit_exactly_equals_fresh_features_and_resumes(tmp_path):
    from lbi_ros.synth.dataset import SyntheticDataConfig
    from lbi_ros.training.feature_cache import PoolSpec, build_pool, encode_squares, load_pool, make_encoder
    from lbi_ros.training.square_crops import SquareCropDataset

    spec = PoolSpec("t", "train", SyntheticDataConfig(), num_samples=6, seed=3, chunk=4)
    directory = build_pool(spec, tmp_path, progress=False, batch=3)
    arrays, rows, _ = load_pool(directory)
    assert rows.tolist() == list(range(6))
    first = {k: np.array(v) for k, v in arrays.items()}
    # fresh: render sample 4 again and encode it alone
    sample = SquareCropDataset(replace(spec.data, seed=3, samples_per_epoch=6))[4]
    fresh = encode_squares(make_encoder(spec.taps), sample["image_square"][None])
    for tap in spec.taps:
        assert np.array_equal(first[f"feat_{tap}"][4], fresh[tap][0].astype(np.float16))
    np.testing.assert_array_equal(first["joints_3d"][4], sample["joints_3d"])
    # resume: a chunk whose marker is missing is rebuilt, bit-identically
    (directory / "done" / "1").unlink()
    arrays["feat_add_8"]._mmap.close() if hasattr(arrays["feat_add_8"], "_mmap") else None
    with open(directory / "feat_add_8.npy", "r+b") as f:  # corrupt the unfinished chunk's rows
        f.seek(-100, 2)
        f.write(b"\x00" * 100)
    build_pool(spec, tmp_path, progress=False, batch=3)
    again, rows, _ = load_pool(directory)
    for k, v in first.items():
        assert np.array_equal(np.asarray(again[k]), v), k


def _fake_pool(tmp_path, n: int = 10) -> str:
    """A finished pool without rendering: random features, a consistent pose/camera/box per row."""
    from lbi_ros.synth.dataset import SyntheticDataConfig
    from lbi_ros.training.feature_cache import PoolSpec, init_pool

    spec = PoolSpec("fake", "eval", SyntheticDataConfig(), num_samples=n, chunk=4)
    directory = init_pool(spec, tmp_path)
    rng = np.random.default_rng(0)
    arrays = {p.stem: np.load(p, mmap_mode="r+") for p in directory.glob("*.npy")}
    arrays["feat_add_8"][:] = rng.standard_normal(arrays["feat_add_8"].shape).astype(np.float16)
    gt = rng.uniform(200, 400, size=(n, 17, 2))
    arrays["keypoints_gt_px"][:] = gt
    arrays["keypoints_px"][:, :, :2] = gt
    arrays["keypoints_px"][:, :, 2] = 0.9
    arrays["image_size"][:] = (640, 480)
    arrays["intrinsics"][:] = (500, 500, 320, 240)
    arrays["box"][:] = (300, 300, 150, 200)
    arrays["keypoints_crop"][:] = rng.uniform(-1, 1, size=(n, 17, 3))
    arrays["joints_3d"][:] = rng.standard_normal((n, 17, 3)) * 0.2
    for a in arrays.values():
        a.flush()
    for c in range(spec.num_chunks):
        (directory / "done" / str(c)).write_text("")
    return str(directory)


def test_cached_stream_is_a_function_of_the_step_and_redraws_noise_each_epoch(tmp_path):
    from lbi_ros.synth.noise2d import Noise2DConfig
    from lbi_ros.training.cached_data import CachedFeatureStream

    pool = _fake_pool(tmp_path)
    a = CachedFeatureStream(pool, "add_8", Noise2DConfig(), seed=1)
    b = CachedFeatureStream(pool, "add_8", Noise2DConfig(), seed=1)
    for step in (3, 0, 7):  # any order: a batch depends on the step only
        x, y = a.batch(step, 4), b.batch(step, 4)
        assert torch.equal(x.features, y.features) and torch.equal(x.keypoints_crop, y.keypoints_crop)
    assert a.epoch_rows[0] == 10
    # the same row in two epochs: same features and target, new noise
    e0 = a.noisy_keypoints(2, 0)
    e1 = a.noisy_keypoints(2, 1)
    assert not np.array_equal(e0, e1)


def test_shuffled_and_blank_images_change_the_crops(tmp_path):
    from lbi_ros.evaluation.reliance import derangement, with_images
    from lbi_ros.evaluation.sets import EvalSet
    from lbi_ros.training.cached_data import eval_batches

    index = derangement(50, seed=0)
    assert sorted(index.tolist()) == list(range(50)) and not np.any(index == np.arange(50))
    crops = np.random.default_rng(0).standard_normal((5, 3, 8, 6)).astype(np.float32)
    inputs = {"image_crop": crops, "keypoints_crop": np.zeros((5, 17, 3), np.float32),
              "keypoints_cam": np.zeros((5, 17, 2), np.float32), "crop_cam": np.zeros((5, 4), np.float32)}
    eval_set = EvalSet("x", inputs, np.zeros((5, 17, 3)))
    shuffled = with_images(eval_set, "shuffled").inputs["image_crop"]
    for i in range(5):  # every sample now shows another sample's crop
        assert not np.array_equal(shuffled[i], crops[i])
        assert any(np.array_equal(shuffled[i], crops[j]) for j in range(5))
    blank = with_images(eval_set, "blank").inputs["image_crop"]
    assert np.allclose(blank, blank[0, :, :1, :1]) and with_images(eval_set, "real") is eval_set
    np.testing.assert_array_equal(with_images(eval_set, "shuffled").inputs["keypoints_crop"], inputs["keypoints_crop"])
    # the cached-feature path applies the same derangement to the features
    pool = _fake_pool(tmp_path)
    real = torch.cat([b.features for b in eval_batches(pool, "add_8", batch_size=4)])
    shuf = torch.cat([b.features for b in eval_batches(pool, "add_8", batch_size=4, images="shuffled")])
    assert all(not torch.equal(real[i], shuf[i]) for i in range(real.shape[0]))


def test_cached_stream_replays_recorded_epoch_sizes(tmp_path):
    from lbi_ros.synth.noise2d import Noise2DConfig
    from lbi_ros.training.cached_data import CachedFeatureStream

    pool = _fake_pool(tmp_path)
    stream = CachedFeatureStream(pool, "add_8", Noise2DConfig(), seed=2, epoch_rows={0: 4, 1: 6})
    assert [stream._row(g)[0] for g in range(4)] == [0, 0, 0, 0]  # epoch 0 holds 4 rows
    assert sorted(stream._row(g)[1] for g in range(4)) == [0, 1, 2, 3]
    assert sorted(stream._row(g)[1] for g in range(4, 10)) == list(range(6))  # epoch 1: the recorded 6
    assert stream._row(10)[0] == 2 and stream.epoch_rows[2] == 10  # a new epoch takes the finished prefix
    replay = CachedFeatureStream(pool, "add_8", Noise2DConfig(), seed=2, epoch_rows=dict(stream.epoch_rows))
    assert torch.equal(replay.batch(2, 4).keypoints_crop, stream.batch(2, 4).keypoints_crop)


def test_gated_model_exports_to_onnx_with_parity(tmp_path):
    require_module("onnxruntime")
    from lbi_ros.runtime.onnx_export import check_onnx_parity, export_onnx

    torch.manual_seed(0)
    model = build_model(SMALL).eval()
    for block in model.blocks:  # open the gates so the image path is in the compared numbers
        torch.nn.init.constant_(block.gate_attn, 0.3)
        torch.nn.init.constant_(block.gate_mlp, 0.3)
    spec = export_onnx(model, tmp_path / "g.onnx")
    assert [t.shape[2:] for t in spec.inputs if t.name == "image_crop"] == [(64, 64)]
    assert check_onnx_parity(model, tmp_path / "g.onnx") < 1e-4
