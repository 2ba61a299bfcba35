"""sensor_msgs/Image and CompressedImage <-> numpy without cv_bridge (not on PyPI, and its copy there is broken).

Every field from the wire is checked before the buffer is trusted: a camera driver that lies about
``step`` or the encoding must produce a clear :class:`ImageError`, never a garbled crop or a crash.
Reading is a zero-copy ``np.frombuffer`` view where the layout allows it (a 921 KB frame in ~0.03 ms);
writing uses ``tobytes()`` (assigning a numpy array to a ``uint8[]`` field element-wise takes ~95 ms).
The lifter only needs its person crops, so :func:`message_pixels` hands ``rgb8``, ``bgr8`` and ``8UC3`` frames
on as that view with their channel order, and the crops are swapped to RGB after cutting
(:func:`lbi_ros.preprocess.warp_crop`): a full-frame RGB copy of a 640x480 frame cost ~1.5-2.2 ms per frame
(a fancy-indexed channel reorder), and a negative-stride ``[..., ::-1]`` view makes OpenCV copy the whole
frame for every crop. Padded rows (``step`` > width x 3) stay a view too: OpenCV reads strided rows as they are.

``sensor_msgs/CompressedImage`` as image_transport's ``compressed`` plugin publishes it (``format`` like
``"jpeg"``, ``"png"`` or ``"rgb8; jpeg compressed bgr8"``) is decoded with OpenCV; data that does not
decode is an :class:`ImageError` like any other lie.
"""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

# encoding -> (channels, dtype, channel order to reach RGB or None for mono)
SUPPORTED_ENCODINGS: dict[str, tuple[int, np.dtype, tuple[int, ...] | None]] = {
    "rgb8": (3, np.dtype(np.uint8), (0, 1, 2)),
    "bgr8": (3, np.dtype(np.uint8), (2, 1, 0)),
    "rgba8": (4, np.dtype(np.uint8), (0, 1, 2)),
    "bgra8": (4, np.dtype(np.uint8), (2, 1, 0)),
    "mono8": (1, np.dtype(np.uint8), None),
    "8UC1": (1, np.dtype(np.uint8), None),
    "8UC3": (3, np.dtype(np.uint8), (2, 1, 0)),  # OpenCV's default channel order is BGR
    "mono16": (1, np.dtype(np.uint16), None),
    "16UC1": (1, np.dtype(np.uint16), None),
}
# The lifter's image branch needs at most this many pixels per side (a crop of a person is
# resampled to 128x96 anyway); larger frames are refused rather than risking memory and latency.
MAX_IMAGE_SIDE = 8192
# CompressedImage formats decoded (image_transport "compressed": jpeg or png; "compressedDepth" is not an image
# the lifter can use).
COMPRESSED_FORMATS = ("jpeg", "png")


class ImageError(ValueError):
    """An Image message that cannot be read as claimed; ``reason`` is a short counter key."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def image_to_rgb(msg: Image, max_side: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """Return an (H, W, 3) uint8 RGB array for ``msg``; raise :class:`ImageError` on any inconsistency.

    Mono images are replicated to three channels; 16-bit mono is scaled to 8 bits by its maximum
    (shape cues survive, absolute intensity does not matter to the lifter). ``rgb8`` comes back as a view of
    ``msg.data`` (no copy; rows strided when ``step`` is padded), the other encodings as a new array.
    """
    pixels, order = image_pixels(msg, max_side)
    return pixels if order == "rgb" else to_rgb(pixels, order)


def image_pixels(msg: Image, max_side: int = MAX_IMAGE_SIDE) -> tuple[np.ndarray, str]:
    """``(pixels, order)``: (H, W, 3) uint8 pixels of ``msg`` in channel ``order`` ``"rgb"`` or ``"bgr"``, with
    the checks of :func:`image_to_rgb`. ``rgb8``, ``bgr8`` and ``8UC3`` are a zero-copy view of ``msg.data``
    (module doc); 4-channel, mono and 16-bit encodings are converted into a new array."""
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 1 or width <= 1:
        raise ImageError("image_too_small", f"image is {width}x{height}: nothing to crop a person from")
    if height > max_side or width > max_side:
        raise ImageError("image_too_large", f"image is {width}x{height}, above the {max_side} px limit per side")
    encoding = msg.encoding
    if encoding not in SUPPORTED_ENCODINGS:
        raise ImageError(
            "unsupported_encoding",
            f"encoding {encoding!r} is not supported; publish one of {sorted(SUPPORTED_ENCODINGS)}",
        )
    channels, dtype, order = SUPPORTED_ENCODINGS[encoding]
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageError("bad_step", f"step {step} < width*channels*bytes = {row_bytes} for {encoding}")
    data = msg.data
    size = len(data)
    if size != step * height:
        raise ImageError("bad_data_length", f"data has {size} bytes, expected step*height = {step * height}")
    buffer = np.frombuffer(data, np.uint8)  # rclpy gives array.array('B'): a zero-copy view
    rows = buffer.reshape(height, step)[:, :row_bytes]
    if dtype.itemsize > 1:
        wire = dtype.newbyteorder(">" if msg.is_bigendian else "<")
        pixels = np.ascontiguousarray(rows).view(wire).reshape(height, width, channels).astype(dtype)
    else:
        pixels = rows.reshape(height, width, channels)
    if dtype == np.uint16:
        peak = int(pixels.max())
        pixels = (pixels.astype(np.float32) * (255.0 / peak)).astype(np.uint8) if peak else pixels.astype(np.uint8)
    if order is None:
        return (np.repeat(pixels, 3, axis=2) if channels == 1 else pixels), "rgb"
    colour = "rgb" if order[0] == 0 else "bgr"
    return (pixels if channels == 3 else np.ascontiguousarray(pixels[:, :, :3])), colour  # 4 channels: drop alpha


def compressed_to_rgb(msg: CompressedImage, max_side: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """Decode a jpeg/png ``CompressedImage`` to (H, W, 3) uint8 RGB; raise :class:`ImageError` if it cannot be.

    OpenCV decodes colour to BGR whatever the ``format`` string says (image_transport compresses colour
    images as bgr8), and grey images are replicated to three channels.
    """
    return to_rgb(*compressed_pixels(msg, max_side))


def compressed_pixels(msg: CompressedImage, max_side: int = MAX_IMAGE_SIDE) -> tuple[np.ndarray, str]:
    """``(pixels, "bgr")``: the decoded (H, W, 3) uint8 frame as OpenCV returns it, before any RGB copy; the
    checks of :func:`compressed_to_rgb`."""
    import cv2

    fmt = msg.format.lower()
    if "compresseddepth" in fmt or not any(f in fmt for f in COMPRESSED_FORMATS):
        raise ImageError("unsupported_encoding", f"CompressedImage format {msg.format!r} is not supported; "
                         f"publish one of {list(COMPRESSED_FORMATS)} (image_transport 'compressed')")
    data = np.frombuffer(msg.data, np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise ImageError("undecodable_image", f"CompressedImage ({msg.format!r}, {data.size} bytes) does not "
                         "decode: truncated or not the format it claims")
    height, width = bgr.shape[:2]
    if height <= 1 or width <= 1:
        raise ImageError("image_too_small", f"image is {width}x{height}: nothing to crop a person from")
    if height > max_side or width > max_side:
        raise ImageError("image_too_large", f"image is {width}x{height}, above the {max_side} px limit per side")
    return bgr, "bgr"


def message_to_rgb(msg: Image | CompressedImage, max_side: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """:func:`image_to_rgb` or :func:`compressed_to_rgb`, by message type."""
    if isinstance(msg, CompressedImage):
        return compressed_to_rgb(msg, max_side)
    return image_to_rgb(msg, max_side)


def message_pixels(msg: Image | CompressedImage, max_side: int = MAX_IMAGE_SIDE) -> tuple[np.ndarray, str]:
    """:func:`image_pixels` or :func:`compressed_pixels`, by message type: ``(pixels, "rgb" | "bgr")``."""
    if isinstance(msg, CompressedImage):
        return compressed_pixels(msg, max_side)
    return image_pixels(msg, max_side)


def to_rgb(pixels: np.ndarray, order: str) -> np.ndarray:
    """``pixels`` from :func:`message_pixels` as a C-contiguous RGB array (a copy unless already one)."""
    return np.ascontiguousarray(pixels if order == "rgb" else pixels[:, :, ::-1])


def rgb_to_compressed(rgb: np.ndarray, header=None, fmt: str = "jpeg", quality: int = 95) -> CompressedImage:
    """(H, W, 3) uint8 RGB -> CompressedImage as image_transport's compressed publisher writes it (jpeg
    quality 95 is its default)."""
    import cv2

    if fmt not in COMPRESSED_FORMATS:
        raise ValueError(f"fmt must be one of {COMPRESSED_FORMATS}, got {fmt!r}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    ok, buffer = cv2.imencode(f".{'jpg' if fmt == 'jpeg' else 'png'}", np.ascontiguousarray(rgb[:, :, ::-1]), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {rgb.shape} image as {fmt}")
    msg = CompressedImage(format=f"rgb8; {fmt} compressed bgr8")
    if header is not None:
        msg.header = header
    msg.data = buffer.tobytes()
    return msg


def rgb_to_image(rgb: np.ndarray, header=None, encoding: str = "rgb8") -> Image:
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image (``rgb8`` or ``bgr8``)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    if encoding not in ("rgb8", "bgr8"):
        raise ValueError(f"encoding must be rgb8 or bgr8, got {encoding!r}")
    pixels = rgb if encoding == "rgb8" else rgb[:, :, ::-1]
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * 3
    msg.data = np.ascontiguousarray(pixels).tobytes()
    return msg
