"""sensor_msgs/Image -> RGB: every supported encoding, and every lie a driver can tell is rejected."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import requires_ros

pytestmark = requires_ros


@pytest.fixture(scope="module")
def conv():
    from lbi_ros.ros import image_conversion

    return image_conversion


def make(encoding: str, pixels: np.ndarray, step: int | None = None, bigendian: bool = False):
    from sensor_msgs.msg import Image

    msg = Image(encoding=encoding, height=pixels.shape[0], width=pixels.shape[1], is_bigendian=int(bigendian))
    row = pixels.reshape(pixels.shape[0], -1).view(np.uint8)
    msg.step = step or row.shape[1]
    if msg.step > row.shape[1]:
        row = np.concatenate([row, np.zeros((row.shape[0], msg.step - row.shape[1]), np.uint8)], axis=1)
    msg.data = np.ascontiguousarray(row).tobytes()
    return msg


RGB = np.random.default_rng(0).integers(0, 255, (6, 5, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding, pixels", [
    ("rgb8", RGB), ("bgr8", RGB[:, :, ::-1]), ("8UC3", RGB[:, :, ::-1]),
    ("rgba8", np.dstack([RGB, np.full(RGB.shape[:2], 255, np.uint8)])),
    ("bgra8", np.dstack([RGB[:, :, ::-1], np.zeros(RGB.shape[:2], np.uint8)])),
])
def test_colour_encodings(conv, encoding, pixels):
    out = conv.image_to_rgb(make(encoding, np.ascontiguousarray(pixels)))
    np.testing.assert_array_equal(out, RGB)


def test_padded_rows_and_mono(conv):
    np.testing.assert_array_equal(conv.image_to_rgb(make("rgb8", RGB, step=20)), RGB)
    mono = RGB[:, :, 0].copy()
    out = conv.image_to_rgb(make("mono8", mono))
    assert out.shape == (6, 5, 3) and np.all(out[:, :, 1] == mono)


@pytest.mark.parametrize("bigendian", [False, True])
def test_mono16_both_byte_orders(conv, bigendian):
    depth = np.arange(30, dtype=np.uint16).reshape(6, 5) * 1000
    wire = depth.astype(">u2" if bigendian else "<u2")
    out = conv.image_to_rgb(make("mono16", wire, bigendian=bigendian))
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255 and np.all(np.diff(out[:, :, 0].ravel().astype(int)) >= 0)


@pytest.mark.parametrize("encoding, pixels, order", [
    ("rgb8", RGB, "rgb"), ("bgr8", RGB[:, :, ::-1], "bgr"), ("8UC3", RGB[:, :, ::-1], "bgr")])
@pytest.mark.parametrize("step", [None, 20], ids=["packed", "padded"])
def test_three_channel_pixels_are_a_view_of_the_message(conv, encoding, pixels, order, step):
    """The node crops straight from the message's buffer: no full-frame copy, the channel order said."""
    msg = make(encoding, np.ascontiguousarray(pixels), step=step)
    view, got_order = conv.image_pixels(msg)
    assert got_order == order and np.shares_memory(view, np.frombuffer(msg.data, np.uint8))
    np.testing.assert_array_equal(conv.to_rgb(view, got_order), RGB)
    np.testing.assert_array_equal(conv.image_to_rgb(msg), RGB)


def test_other_encodings_give_the_pixels_of_image_to_rgb(conv):
    alpha = np.zeros(RGB.shape[:2], np.uint8)
    for msg in (make("rgba8", np.dstack([RGB, alpha])), make("bgra8", np.dstack([RGB[:, :, ::-1], alpha]), step=24),
                make("mono8", RGB[:, :, 0].copy()), make("mono16", np.arange(30, dtype=np.uint16).reshape(6, 5) * 1000)):
        np.testing.assert_array_equal(conv.to_rgb(*conv.image_pixels(msg)), conv.image_to_rgb(msg))
    png = conv.rgb_to_compressed(SMOOTH, fmt="png")
    bgr, order = conv.message_pixels(png)
    assert order == "bgr"
    np.testing.assert_array_equal(conv.to_rgb(bgr, order), SMOOTH)


def test_frame_path_crops_are_the_same_for_rgb8_bgr8_and_padded_rows(conv, oracle_onnx, monkeypatch):
    """The node's frame path cuts the crops from the message's own pixels (BGR swapped per crop): the model
    inputs equal those of the RGB frame handed to the pipeline directly."""
    from sensor_msgs.msg import CameraInfo
    from std_msgs.msg import Header

    import lbi_ros.pipeline
    from lbi_ros.input_checks import InputLimits, PersonKeypoints, StampPolicy
    from lbi_ros.msg import Person2D, Person2DArray
    from lbi_ros.pipeline import LiftingPipeline
    from lbi_ros.ros.frame_processor import FrameProcessor
    from lbi_ros.runtime.factory import create_backend
    from lbi_ros.skeleton import H36M17

    from .node_harness import ROOT, SIZE, K, keypoints_at

    seen: list = []
    prepare = lbi_ros.pipeline.prepare_inputs
    monkeypatch.setattr(lbi_ros.pipeline, "prepare_inputs", lambda *a, **k: (seen.append(b := prepare(*a, **k)), b)[1])
    pipeline = LiftingPipeline(create_backend(oracle_onnx, "onnxruntime"))
    processor = FrameProcessor(pipeline, InputLimits(), StampPolicy(max_age_s=0, max_ahead_s=0))
    info = CameraInfo(header=Header(frame_id="cam"), width=SIZE[0], height=SIZE[1],
                      k=[K.fx, 0.0, K.cx, 0.0, K.fy, K.cy, 0.0, 0.0, 1.0])
    assert processor.cameras.update(info) is None
    rgb = np.random.default_rng(1).integers(0, 255, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
    uv = keypoints_at(ROOT)
    people = [Person2D(id="p", score=0.9, u=uv[:, 0].tolist(), v=uv[:, 1].tolist(), confidence=[0.9] * 17)]
    crops = []
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    messages = [make("rgb8", rgb), make("bgr8", bgr), make("rgb8", rgb, step=SIZE[0] * 3 + 7),
                make("bgr8", bgr, step=SIZE[0] * 3 + 1)]
    for sec, msg in enumerate(messages, start=1):
        header = Header(frame_id="cam")
        header.stamp.sec = sec
        msg.header = header
        keypoints = Person2DArray(header=header, skeleton="h36m17", joint_names=list(H36M17.joint_names),
                                  people=people)
        result = processor.process(msg, keypoints, now_ns=0)
        assert result.people is not None and len(result.people) == 1, result.problems
        crops.append(seen[-1].inputs.image_crop)
    pipeline.lift(rgb, K, [PersonKeypoints("p", 0.9, np.column_stack([uv, np.full(17, 0.9)]))])  # the RGB reference
    for crop in crops:
        np.testing.assert_array_equal(crop, seen[-1].inputs.image_crop)


def test_round_trip(conv):
    np.testing.assert_array_equal(conv.image_to_rgb(conv.rgb_to_image(RGB)), RGB)
    np.testing.assert_array_equal(conv.image_to_rgb(conv.rgb_to_image(RGB, encoding="bgr8")), RGB)


@pytest.mark.parametrize("mutate, reason", [
    (lambda m: setattr(m, "encoding", "yuv422"), "unsupported_encoding"),
    (lambda m: setattr(m, "encoding", "32FC1"), "unsupported_encoding"),
    (lambda m: setattr(m, "step", 3), "bad_step"),
    (lambda m: setattr(m, "data", m.data[:-1]), "bad_data_length"),
    (lambda m: setattr(m, "height", 7), "bad_data_length"),
    (lambda m: (setattr(m, "height", 0), setattr(m, "width", 0)), "image_too_small"),
    (lambda m: (setattr(m, "height", 1), setattr(m, "width", 1)), "image_too_small"),
    (lambda m: (setattr(m, "height", 4320), setattr(m, "width", 8193)), "image_too_large"),
])
def test_lies_are_rejected_with_a_reason(conv, mutate, reason):
    msg = make("rgb8", RGB)
    mutate(msg)
    with pytest.raises(conv.ImageError) as info:
        conv.image_to_rgb(msg)
    assert info.value.reason == reason


# -- sensor_msgs/CompressedImage (image_transport "compressed") -------------------------------------------
_U, _V = np.meshgrid(np.arange(64) * 4, np.arange(48) * 5)
SMOOTH = np.dstack([_U, _V, np.full((48, 64), 128)]).astype(np.uint8)  # jpeg-friendly gradients, channels differ


@pytest.mark.parametrize("fmt, tolerance", [("png", 0), ("jpeg", 8)])
def test_compressed_round_trip(conv, fmt, tolerance):
    msg = conv.rgb_to_compressed(SMOOTH, fmt=fmt)
    assert msg.format == f"rgb8; {fmt} compressed bgr8"  # what image_transport's compressed publisher writes
    rgb = conv.message_to_rgb(msg)
    assert rgb.shape == SMOOTH.shape and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - SMOOTH).mean() <= tolerance  # channel order kept: an RGB/BGR swap is ~100


def test_compressed_bare_format_and_grey(conv):
    import cv2
    from sensor_msgs.msg import CompressedImage

    grey = SMOOTH[:, :, 0]
    msg = CompressedImage(format="png")
    msg.data = cv2.imencode(".png", grey)[1].tobytes()
    np.testing.assert_array_equal(conv.compressed_to_rgb(msg), np.repeat(grey[:, :, None], 3, axis=2))


@pytest.mark.parametrize("fmt, data, reason", [
    ("jpeg", b"\xff\xd8 not really a jpeg", "undecodable_image"),
    ("png", b"", "undecodable_image"),
    ("jpeg", None, "undecodable_image"),  # a truncated jpeg
    ("16UC1; compressedDepth png", None, "unsupported_encoding"),
    ("theora", b"\x00" * 16, "unsupported_encoding"),
])
def test_undecodable_compressed_is_an_image_error(conv, fmt, data, reason):
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage(format=fmt)
    msg.data = data if data is not None else bytes(conv.rgb_to_compressed(SMOOTH).data)[:200]
    with pytest.raises(conv.ImageError) as info:
        conv.message_to_rgb(msg)
    assert info.value.reason == reason


def test_compressed_image_above_the_size_limit(conv):
    msg = conv.rgb_to_compressed(np.zeros((4, 40, 3), np.uint8), fmt="png")
    with pytest.raises(conv.ImageError) as info:
        conv.compressed_to_rgb(msg, max_side=32)
    assert info.value.reason == "image_too_large"
