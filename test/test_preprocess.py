"""The shared preprocessing path: box rule, warp, normalisation, model-input contract."""

from __future__ import annotations

import numpy as np
import pytest

from lbi_ros.geometry import Intrinsics, project
from lbi_ros.preprocess import (
    INPUT_NAMES,
    CropBox,
    CropConfig,
    ModelInputs,
    compute_crop_box,
    denormalize_image,
    encode_keypoints,
    encode_person,
    normalize_image,
    prepare_inputs,
    warp_crop,
)
from lbi_ros.skeleton import COCO17

CFG = CropConfig()
K = Intrinsics(fx=600.0, fy=600.0, cx=320.0, cy=240.0)


def _standing_keypoints() -> np.ndarray:
    kp = np.zeros((17, 3))
    kp[:, 0] = np.linspace(300, 340, 17)
    kp[:, 1] = np.linspace(100, 400, 17)
    kp[:, 2] = 0.9
    return kp


def test_box_rule_aspect_padding_centre() -> None:
    kp = _standing_keypoints()
    box = compute_crop_box(kp, CFG)
    assert box is not None
    assert box.w / box.h == pytest.approx(CFG.width / CFG.height)
    assert box.h == pytest.approx(300 * 1.25)  # tall person: height sets the box
    assert (box.cx, box.cy) == pytest.approx((320, 250))
    wide = kp.copy()
    wide[:, 0] = np.linspace(0, 400, 17)
    wide[:, 1] = 250
    b2 = compute_crop_box(wide, CFG)
    assert b2.w == pytest.approx(400 * 1.25)  # wide person: width sets the box


def test_box_rule_ignores_missing_and_guards_size() -> None:
    kp = _standing_keypoints()
    kp[:16, 2] = 0.0  # only one visible joint
    box = compute_crop_box(kp, CFG)
    assert box.h == pytest.approx(CFG.min_box_height_px) and (box.cx, box.cy) == pytest.approx(kp[16, :2])
    kp[:, 2] = 0.0
    assert compute_crop_box(kp, CFG) is None
    kp2 = _standing_keypoints()
    kp2[0, :2] = [5000, 5000]
    kp2[0, 2] = CFG.min_confidence  # at the threshold: missing
    assert compute_crop_box(kp2, CFG).h < 1000
    with pytest.raises(ValueError, match=r"\(J, 3\)"):
        compute_crop_box(np.zeros((17, 2)), CFG)


def test_crop_pixels_and_intrinsics_agree_with_the_warp() -> None:
    """A smooth pattern sampled by cv2.warpAffine equals the pattern evaluated at the predicted locations."""
    h, w = 480, 640
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    pattern = lambda u, v: 128 + 60 * np.sin(u / 23.0) + 60 * np.cos(v / 17.0)  # noqa: E731
    image = np.repeat(pattern(xx, yy)[..., None], 3, 2).round().astype(np.uint8)
    box = CropBox(cx=300.3, cy=250.7, w=150.0, h=200.0)
    crop = warp_crop(image, box, CFG).astype(np.float64)
    # crop pixel (i, j) centre maps back to image coordinates cx + (i + 0.5 - W/2) * w / W
    i = np.arange(CFG.width)
    j = np.arange(CFG.height)
    u = box.cx + (i + 0.5 - CFG.width / 2) * box.w / CFG.width
    v = box.cy + (j + 0.5 - CFG.height / 2) * box.h / CFG.height
    expected = pattern(u[None, :], v[:, None])
    assert np.abs(crop[..., 0] - expected).mean() < 1.5  # bilinear + rounding
    # the forward map, and rendering with crop intrinsics, put a 3D point on the same crop pixel
    point = np.array([[0.1, 0.05, 3.0]])
    px = project(point, K)
    via_warp = box.to_crop_pixels(px, CFG.height, CFG.width)
    via_intr = project(point, box.crop_intrinsics(K, CFG.height, CFG.width))
    assert np.allclose(via_warp, via_intr)


def test_encode_keypoints_contract() -> None:
    kp = _standing_keypoints()
    kp[5, 2] = 0.0  # missing
    box = compute_crop_box(kp, CFG)
    kc, kcam, ccam = encode_keypoints(kp, box, K, CFG)
    assert kc.dtype == np.float32 and kc.shape == (17, 3) and kcam.shape == (17, 2) and ccam.shape == (4,)
    assert np.all(kc[5] == 0) and np.all(kcam[5] == 0)
    assert np.allclose(kc[0, :2], [2 * (kp[0, 0] - box.cx) / box.w, 2 * (kp[0, 1] - box.cy) / box.h])
    # equivalently u_crop / (W/2) - 1 with u_crop measured from the crop's left edge
    u_edge = box.to_crop_pixels(kp[:, :2], CFG.height, CFG.width)[:, 0] + 0.5
    assert np.allclose(kc[kp[:, 2] > 0, 0], (u_edge / (CFG.width / 2) - 1)[kp[:, 2] > 0], atol=1e-6)
    assert np.allclose(kc[0, 2], 0.9)
    assert np.allclose(kcam[0], [(kp[0, 0] - K.cx) / K.fx, (kp[0, 1] - K.cy) / K.fy])
    assert np.allclose(ccam, [(box.cx - K.cx) / K.fx, (box.cy - K.cy) / K.fy, box.w / K.fx, box.h / K.fy])
    assert np.abs(kc[kp[:, 2] > 0, :2]).max() <= 1 / 1.25 + 1e-6  # padded box: joints inside +-0.8


def test_normalisation_round_trip() -> None:
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (CFG.height, CFG.width, 3), dtype=np.uint8)
    x = normalize_image(crop, CFG)
    assert x.shape == (3, CFG.height, CFG.width) and x.dtype == np.float32 and x.flags.c_contiguous
    ref = ((crop / 255.0 - np.array(CFG.mean)) / np.array(CFG.std)).transpose(2, 0, 1)
    assert np.allclose(x, ref, atol=1e-5)
    assert np.array_equal(denormalize_image(x, CFG), crop)
    with pytest.raises(ValueError, match="crop must be"):
        normalize_image(crop[:10], CFG)


def test_model_inputs_validation_and_concat() -> None:
    kp = _standing_keypoints()
    box = compute_crop_box(kp, CFG)
    one = encode_person(np.zeros((CFG.height, CFG.width, 3), np.uint8), kp, box, K, CFG)
    both = ModelInputs.concat([one, one])
    assert len(both) == 2 and tuple(both.as_dict()) == INPUT_NAMES
    assert all(v.dtype == np.float32 for v in both.as_dict().values())
    assert len(both.select([1])) == 1
    with pytest.raises(ValueError, match="keypoints_cam"):
        ModelInputs(one.image_crop, one.keypoints_crop, one.keypoints_crop, one.crop_cam)
    with pytest.raises(ValueError, match="float32"):
        ModelInputs(one.image_crop.astype(np.float64), one.keypoints_crop, one.keypoints_cam, one.crop_cam)
    tensors = both.to_torch()
    assert tuple(tensors["image_crop"].shape) == (2, 3, CFG.height, CFG.width)


def test_prepare_inputs_from_coco_detections_bgr() -> None:
    image = np.zeros((480, 640, 3), np.uint8)
    image[..., 0] = 255  # pure blue in BGR
    coco = np.zeros((3, 17, 3))
    rng = np.random.default_rng(1)
    coco[:, :, 0] = rng.uniform(200, 400, (3, 17))
    coco[:, :, 1] = rng.uniform(100, 400, (3, 17))
    coco[:, :, 2] = 0.8
    coco[1, :, 2] = 0.0  # person 1: nothing visible -> skipped
    out = prepare_inputs(image, coco, K, CFG, joint_set="coco17", color_order="bgr")
    assert out.person_index.tolist() == [0, 2] and len(out.inputs) == 2 and len(out.boxes) == 2
    assert out.keypoints_px.shape == (2, 17, 3)
    rgb = denormalize_image(out.inputs.image_crop[0], CFG)
    centre = rgb[CFG.height // 2, CFG.width // 2]
    assert centre[2] == 255 and centre[0] == 0  # blue ended up in the B channel of RGB
    nose = COCO17.index("nose")
    assert out.keypoints_px[0, 9, 2] == pytest.approx(0.8) and nose == 0  # neck_nose synthesized
    empty = prepare_inputs(image, coco[1:2], K, CFG, joint_set="coco17")
    assert empty.inputs is None and empty.person_index.size == 0


def test_crop_config_validation_and_jitter() -> None:
    with pytest.raises(ValueError, match="padding"):
        CropConfig(padding=0.9)
    with pytest.raises(ValueError, match="invalid crop box"):
        CropBox(0, 0, 0, 10)
    box = CropBox(100, 100, 75, 100)
    rng = np.random.default_rng(0)
    for _ in range(20):
        j = box.jittered(rng, 0.1, 0.05)
        assert 0.9 <= j.h / box.h <= 1.1 and abs(j.cx - box.cx) <= 0.05 * box.w
        assert j.w / j.h == pytest.approx(0.75)
    assert np.allclose(CropBox.from_array(box.as_array()).as_array(), box.as_array())


# -- distorted cameras -----------------------------------------------------------------------------------------
LENSES = {  # strong lenses: 50-200 px of displacement in the corners of a 640 x 480 image at f = 300 px
    "plumb_bob": (-0.35, 0.12, 0.001, -0.002, 0.0),
    "rational_polynomial": (-0.3, 0.08, 0.0, 0.0, 0.0, 0.02, 0.0, 0.0),
    "equidistant": (0.05, -0.02, 0.005, 0.0),
}
WIDE = Intrinsics(300.0, 300.0, 319.5, 239.5)


def _scene(rays: np.ndarray) -> np.ndarray:
    """A smooth colour pattern painted on the camera's rays ((..., 2) normalised) -> (..., 3) float, 0..255.

    Periods of ~0.2 in ray units (~60 px) keep bilinear resampling error small, so what remains of a crop
    difference is geometry."""
    x, y = rays[..., 0], rays[..., 1]
    return np.stack([127.5 + 100 * np.sin(2 * np.pi * x / 0.21 + p) * np.cos(2 * np.pi * y / 0.17 - p)
                     for p in (0.0, 1.0, 2.0)], -1)


def _distorted_render(lens, size=(640, 480)) -> np.ndarray:
    """The raw image a camera with ``lens`` takes of :func:`_scene`: each raw pixel shows its undistorted ray."""
    u, v = np.meshgrid(np.arange(size[0], dtype=np.float64), np.arange(size[1], dtype=np.float64))
    ideal = lens.undistort(np.stack([u, v], -1), WIDE)
    rays = np.stack([(ideal[..., 0] - WIDE.cx) / WIDE.fx, (ideal[..., 1] - WIDE.cy) / WIDE.fy], -1)
    return np.clip(_scene(rays) + 0.5, 0, 255).astype(np.uint8)


def _pinhole_crop(box: CropBox) -> np.ndarray:
    """What a pinhole camera with the crop's intrinsics sees: the scene at each crop pixel's ray, exactly."""
    crop_k = box.crop_intrinsics(WIDE, CFG.height, CFG.width)
    j, i = np.meshgrid(np.arange(CFG.width, dtype=np.float64), np.arange(CFG.height, dtype=np.float64))
    return _scene(np.stack([(j - crop_k.cx) / crop_k.fx, (i - crop_k.cy) / crop_k.fy], -1))


@pytest.mark.parametrize("model", sorted(LENSES))
def test_distorted_camera_crop_matches_the_pinhole_crop(model) -> None:
    """Cropping through the lens gives the crop a pinhole camera would (what training renders); cutting the
    box out of the raw image does not. Metric: mean absolute difference over the crop's pixels and
    channels, in 8-bit grey levels (measured: raw cut ~50, through the lens ~0.3)."""
    from lbi_ros.lens import LensDistortion, lens_sampling_map

    lens = LensDistortion(model, LENSES[model])
    raw = _distorted_render(lens)
    box = CropBox(470.0, 330.0, 150.0, 200.0)  # off-centre, where the lens bends most
    reference = _pinhole_crop(box)
    through_lens = warp_crop(raw, box, CFG, lens=lens, intrinsics=WIDE).astype(np.float64)
    raw_cut = warp_crop(raw, box, CFG).astype(np.float64)
    error_before, error_after = np.abs(raw_cut - reference).mean(), np.abs(through_lens - reference).mean()
    print(f"{model}: crop error (mean abs, grey levels) raw cut {error_before:.2f}, through the lens {error_after:.2f}")
    assert error_before > 30.0, error_before  # the distortion matters for this box
    assert error_after < 1.0 and np.percentile(np.abs(through_lens - reference), 99) < 3.0, error_after
    # the sampling map is cached per (crop box = crop intrinsics, camera, lens) and not writable
    view = box.crop_intrinsics(WIDE, CFG.height, CFG.width)
    map_x = lens_sampling_map(view, (CFG.height, CFG.width), WIDE, lens, (640, 480))[0]
    assert lens_sampling_map(view, (CFG.height, CFG.width), WIDE, lens, (640, 480))[0] is map_x
    with pytest.raises(ValueError):
        map_x[0, 0] = 1.0
    bgr = warp_crop(raw[..., ::-1].copy(), box, CFG, "bgr", lens=lens, intrinsics=WIDE)
    assert np.array_equal(bgr, through_lens.astype(np.uint8))


@pytest.mark.parametrize("model", sorted(LENSES))
def test_lens_sampling_map_fill_matches_projecting_every_pixel(model) -> None:
    """The map is projected exactly on a grid and filled bilinearly in between (25 ms -> ~3 ms for a 256 x 256
    crop): within 0.2 raw px of projecting every pixel, and black at exactly the same pixels, for a crop inside
    the image, a zoomed-in one, and one across the edge of the field where the polynomial folds back."""
    from lbi_ros.lens import LensDistortion, _field_radius, lens_sampling_map

    lens = LensDistortion(model, LENSES[model])
    for view, size in ((Intrinsics(200.0, 200.0, 100.0, 128.0), (256, 256)),
                       (Intrinsics(500.0, 500.0, 128.0, 128.0), (256, 256)),
                       (Intrinsics(150.0, 150.0, -250.0, 160.0), (256, 256)),
                       (Intrinsics(60.0, 60.0, 40.0, 60.0), (128, 96))):
        j, i = np.meshgrid(np.arange(size[1], dtype=np.float64), np.arange(size[0], dtype=np.float64))
        rays = np.stack([(j - view.cx) / view.fx, (i - view.cy) / view.fy], -1)
        exact = lens.distort(rays, WIDE)
        outside = np.hypot(rays[..., 0], rays[..., 1]) > _field_radius(WIDE, lens, (640, 480))
        map_x, map_y = lens_sampling_map(view, size, WIDE, lens, (640, 480))
        assert np.array_equal(map_x < 0, outside) and np.all(map_x[outside] == -1.0)
        error = np.hypot(map_x - exact[..., 0], map_y - exact[..., 1])[~outside]
        assert error.size == 0 or error.max() < 0.2, (view, error.max())


def test_lens_crop_outside_the_field_of_view_is_black() -> None:
    """Rays the camera never saw are black, not the fold-back of the polynomial (nor image content)."""
    from lbi_ros.lens import LensDistortion

    lens = LensDistortion("plumb_bob", LENSES["plumb_bob"])
    raw = np.full((480, 640, 3), 200, np.uint8)
    far = CropBox(319.5 + 3.0 * WIDE.fx, 239.5, 150.0, 200.0)  # rays at x/z ~ 3: 70 degrees off-axis
    assert not warp_crop(raw, far, CFG, lens=lens, intrinsics=WIDE).any()
    with pytest.raises(ValueError, match="intrinsics"):
        warp_crop(raw, far, CFG, lens=lens)


def test_lens_model_validation_and_round_trip() -> None:
    from lbi_ros.lens import LensDistortion

    with pytest.raises(ValueError, match="not supported"):
        LensDistortion("kannala_brandt_9", (0.1,) * 9)
    with pytest.raises(ValueError, match="coefficients"):
        LensDistortion("plumb_bob", (0.1, 0.01, 0.001))
    rng = np.random.default_rng(0)
    pixels = rng.uniform([0, 0], [640, 480], (200, 2))
    for model, d in LENSES.items():
        lens = LensDistortion(model, d)
        ideal = lens.undistort(pixels, WIDE)
        back = lens.distort(np.stack([(ideal[:, 0] - WIDE.cx) / WIDE.fx, (ideal[:, 1] - WIDE.cy) / WIDE.fy], -1), WIDE)
        assert np.abs(back - pixels).max() < 0.25, model  # corners of a k1 = -0.35 lens included


def test_prepare_inputs_with_a_lens_uses_the_lens_crop() -> None:
    from lbi_ros.lens import LensDistortion

    lens = LensDistortion("plumb_bob", LENSES["plumb_bob"])
    raw = _distorted_render(lens)
    kp = _standing_keypoints()
    kp[:, 0] += 150  # right of the centre
    out = prepare_inputs(raw, kp, WIDE, CFG, lens=lens)
    expected = normalize_image(warp_crop(raw, out.boxes[0], CFG, lens=lens, intrinsics=WIDE), CFG)
    np.testing.assert_array_equal(out.inputs.image_crop[0], expected)
    assert not np.array_equal(prepare_inputs(raw, kp, WIDE, CFG).inputs.image_crop, out.inputs.image_crop)
