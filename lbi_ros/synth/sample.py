"""The sample dict every dataset returns (synthetic, Human3.6M, MPI-INF-3DHP): one layout, one builder.

Model inputs come from :func:`lbi_ros.preprocess.encode_person`; targets are root-relative camera-frame
metres; the extras (keypoints, intrinsics, box, image size) let evaluation reproject and draw.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lbi_ros.geometry import Intrinsics
from lbi_ros.preprocess import CropBox, ModelInputs


def make_sample(inputs: ModelInputs, joints_cam_m: np.ndarray, keypoints_px: np.ndarray, intrinsics: Intrinsics,
                box: CropBox, image_size: tuple[float, float], **extra: Any) -> dict[str, Any]:
    """One sample (B = 1 ``inputs`` unbatched). ``joints_cam_m`` (17, 3); ``image_size`` = (width, height)."""
    root = joints_cam_m[0]
    sample = {
        "image_crop": inputs.image_crop[0],
        "keypoints_crop": inputs.keypoints_crop[0],
        "keypoints_cam": inputs.keypoints_cam[0],
        "crop_cam": inputs.crop_cam[0],
        "joints_3d": (joints_cam_m - root).astype(np.float32),
        "root_cam": root.astype(np.float32),
        "keypoints_px": keypoints_px,
        "intrinsics": intrinsics.as_array(np.float32),
        "box": box.as_array(),
        "image_size": np.array(image_size, dtype=np.float32),
    }
    sample.update(extra)
    return sample
