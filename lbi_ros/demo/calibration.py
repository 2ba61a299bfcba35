"""Real person crops for int8 calibration and its check, cut from the shipped demo scene.

The int8 backbone (:func:`lbi_ros.runtime.precision.quantize_backbone`) needs activation ranges of the images
the node will see; random noise has the wrong ranges. The demo clip is the one source of people that ships
with the package (no mocap data at run time), so calibration renders it: all four scene people (two motion
takes at four places and phases, capsule bodies) every ``CALIBRATION_STEP`` frames. The crops are cut by
:func:`lbi_ros.preprocess.prepare_inputs`, the node's own code path, so square crops, boxes and keypoint
encodings are exactly what the node feeds. :func:`check_feeds` takes the frames in between, with another
2D-noise seed, for the deviation check after quantizing.

Calibration only sets value ranges (no labels are read), but note that it sees the demo's own scene: the
demo's accuracy with an int8 model is not a held-out figure; ``lbi eval --runtime onnxruntime-int8`` is.
"""

from __future__ import annotations

import numpy as np

from lbi_ros.demo.scene import INTRINSICS, MAX_PEOPLE, DemoScene
from lbi_ros.preprocess import CropConfig, prepare_inputs
from lbi_ros.runtime.io_spec import IOSpec, square_input_size

CALIBRATION_STEP = 8
"""Frames between two calibration frames (120-frame takes: 15 frames x 4 people = 60 crops)."""
CALIBRATION_ID = f"demo-scene-4p-seed0-step{CALIBRATION_STEP}"
"""Names the calibration data in the int8 export cache's key: change it when the data changes."""


def _feeds(io_spec: IOSpec, seed: int, frames: range, crop: CropConfig | None) -> list[dict[str, np.ndarray]]:
    crop = crop or CropConfig()
    square_size = square_input_size(io_spec, crop)
    scene = DemoScene(MAX_PEOPLE, seed=seed)
    feeds = []
    for index in frames:
        frame = scene.frame(index)
        batch = prepare_inputs(frame.image_rgb, frame.keypoints_px, INTRINSICS, crop, square_size=square_size)
        if batch.inputs is not None:
            feeds.append({k: v for k, v in batch.inputs.as_dict().items() if k in io_spec.input_names})
    return feeds


def calibration_feeds(io_spec: IOSpec, crop: CropConfig | None = None) -> list[dict[str, np.ndarray]]:
    """Model feeds for int8 calibration, one batch of the scene's people per frame, cut for the model that
    ``io_spec`` describes (the square crop of a gated LBI, else the box crop of ``crop``)."""
    return _feeds(io_spec, 0, range(0, 120, CALIBRATION_STEP), crop)


def check_feeds(io_spec: IOSpec, crop: CropConfig | None = None) -> list[dict[str, np.ndarray]]:
    """Feeds of the frames between the calibration frames, other 2D noise: the int8 deviation check's inputs."""
    return _feeds(io_spec, 1, range(CALIBRATION_STEP // 2, 120, CALIBRATION_STEP), crop)
