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
