"""Human3.6M in the VideoPose3D array format, with optional frames for image crops.

Files (produced by VideoPose3D's ``data/prepare_data_h36m.py`` and its published 2D detections; you need
your own Human3.6M licence, nothing of it ships here):

* ``data_3d_h36m.npz``: ``positions_3d`` = pickled ``{subject: {action: (F, 32, 3) float}}``, world
  coordinates in metres. The 17 H36M joints are columns ``H36M_KEPT_JOINTS`` of the 32.
* ``data_2d_h36m_cpn_ft_h36m_dbb.npz`` (CPN detections) or ``data_2d_h36m_gt.npz`` (projected ground
  truth): ``positions_2d`` = pickled ``{subject: {action: [cam0, cam1, cam2, cam3]}}`` with (F, 17, 2) pixels
  each, and ``metadata`` (``num_joints`` 17, ``keypoints_symmetry``). Detections carry no confidence; we
  use 1.
* cameras: a JSON file with the standard Human3.6M calibration, in VideoPose3D's layout (we do not ship the
  numbers; they are part of the dataset)::

      {"intrinsics": {"54138969": {"center": [cx, cy], "focal_length": [fx, fy], "res_w": 1000,
                                   "res_h": 1002, "radial_distortion": [k1, k2, k3],
                                   "tangential_distortion": [p1, p2]}, ... 4 cameras},
       "extrinsics": {"S1": {"54138969": {"orientation": [qw, qx, qy, qz], "translation": [x, y, z]},
                             ...}, ... subjects}}

  ``orientation`` is the camera-to-world rotation quaternion and ``translation`` the camera centre in the
  world, in **millimetres** (as published); ``x_cam = R^T (x_world - t / 1000)``.

Pickled arrays: ``np.load(..., allow_pickle=True)`` would run code from a crafted file, so these files
are read with :func:`lbi_ros.datasets.safe_npz.load_npz_member`, which only lets numpy arrays and plain
containers out of the pickle.

Frames (optional): ``frames_dir / pattern`` with ``pattern`` a ``str.format`` template over ``subject``,
``action``, ``action_`` (spaces -> underscores), ``camera`` (the 8-digit id) and ``frame`` (index +
``frame_offset``), default ``{subject}/{action}.{camera}/{frame:06d}.jpg`` with 1-based frames.

Protocol: train S1, S5, S6, S7, S8; test S9, S11. Lens distortion is ignored (pinhole model), as in most
lifting work; the 2D files were made on distorted images.
"""

from __future__ import annotations

import json
import logging
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lbi_ros.datasets.safe_npz import UnsafePickleError, load_npz_member
from lbi_ros.geometry import Intrinsics, project, quaternion_to_matrix
from lbi_ros.preprocess import CropConfig, compute_crop_box, encode_person, warp_crop
from lbi_ros.skeleton import NUM_JOINTS
from lbi_ros.synth.sample import make_sample

log = logging.getLogger(__name__)

TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS = ("S9", "S11")
CAMERA_IDS = ("54138969", "55011271", "58860488", "60457274")
H36M_KEPT_JOINTS = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)


class H36MFormatError(ValueError):
    """A Human3.6M file does not have the VideoPose3D layout."""


@dataclass(frozen=True)
class H36MCamera:
    id: str
    intrinsics: Intrinsics
    width: int
    height: int
    rotation: np.ndarray  # (3, 3) world -> camera
    translation: np.ndarray  # (3,) metres, x_cam = rotation @ x_world + translation

    def world_to_camera(self, points_world: np.ndarray) -> np.ndarray:
        return points_world @ self.rotation.T + self.translation


def _load_pickled_dict(path: Path, key: str) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    with open(path, "rb") as fh:
        if fh.read(4) != b"PK\x03\x04":
            raise H36MFormatError(f"{path}: not an .npz (zip) file")
    try:
        obj = load_npz_member(path, key)
        meta = None
        try:
            meta = load_npz_member(path, "metadata").item()
        except KeyError:
            pass
    except KeyError as exc:
        raise H36MFormatError(f"{exc.args[0]}; not a VideoPose3D file") from exc
    except UnsafePickleError as exc:
        raise H36MFormatError(f"{path}: {exc}") from exc
    except (OSError, ValueError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise H36MFormatError(f"{path}: cannot read as .npz ({exc})") from exc
    if obj.dtype != object or obj.shape != ():
        raise H36MFormatError(f"{path}: '{key}' must be a pickled dict, got array {obj.dtype} {obj.shape}")
    value = obj.item()
    if not isinstance(value, dict):
        raise H36MFormatError(f"{path}: '{key}' must hold a dict, got {type(value).__name__}")
    return {"data": value, "metadata": meta}


def load_h36m_3d(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """``data_3d_h36m.npz`` -> ``{subject: {action: (F, 17, 3) float32 world metres}}``."""
    path = Path(path)
    raw = _load_pickled_dict(path, "positions_3d")["data"]
    out: dict[str, dict[str, np.ndarray]] = {}
    for subject, actions in raw.items():
        if not isinstance(actions, dict):
            raise H36MFormatError(f"{path}: positions_3d[{subject!r}] must be a dict of actions")
        out[subject] = {}
        for action, arr in actions.items():
            a = np.asarray(arr)
            if a.ndim != 3 or a.shape[2] != 3 or a.shape[1] not in (32, NUM_JOINTS):
                raise H36MFormatError(f"{path}: {subject}/{action} must be (F, 32 or 17, 3), got {a.shape}")
            if a.shape[1] == 32:
                a = a[:, list(H36M_KEPT_JOINTS)]
            if not np.all(np.isfinite(a)):
                raise H36MFormatError(f"{path}: {subject}/{action} contains NaN/inf")
            out[subject][action] = a.astype(np.float32)
    return out


def load_h36m_2d(path: str | Path) -> dict[str, dict[str, list[np.ndarray]]]:
    """``data_2d_h36m_*.npz`` -> ``{subject: {action: [4 x (F, 17, 2) float32 pixels]}}``."""
    path = Path(path)
    loaded = _load_pickled_dict(path, "positions_2d")
    meta = loaded["metadata"]
    if meta is not None and isinstance(meta, dict) and meta.get("num_joints", NUM_JOINTS) != NUM_JOINTS:
        raise H36MFormatError(f"{path}: metadata says {meta.get('num_joints')} joints, expected 17")
    out: dict[str, dict[str, list[np.ndarray]]] = {}
    for subject, actions in loaded["data"].items():
        if not isinstance(actions, dict):
            raise H36MFormatError(f"{path}: positions_2d[{subject!r}] must be a dict of actions")
        out[subject] = {}
        for action, cams in actions.items():
            if not isinstance(cams, (list, tuple)) or len(cams) != len(CAMERA_IDS):
                raise H36MFormatError(f"{path}: {subject}/{action} must be a list of 4 camera arrays")
            arrs = []
            for k, arr in enumerate(cams):
                a = np.asarray(arr)
                if a.ndim != 3 or a.shape[1:] != (NUM_JOINTS, 2):
                    raise H36MFormatError(f"{path}: {subject}/{action}/cam{k} must be (F, 17, 2), got {a.shape}")
                arrs.append(a.astype(np.float32))
            out[subject][action] = arrs
    return out


def load_h36m_cameras(path: str | Path) -> dict[str, list[H36MCamera]]:
    """Camera JSON (module docstring) -> ``{subject: [4 cameras in CAMERA_IDS order]}``."""
    path = Path(path)
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise H36MFormatError(f"{path}: cannot read camera JSON ({exc})") from exc
    try:
        intr_all, extr_all = data["intrinsics"], data["extrinsics"]
        out: dict[str, list[H36MCamera]] = {}
        for subject, cams in extr_all.items():
            out[subject] = []
            for cid in CAMERA_IDS:
                ip, ep = intr_all[cid], cams[cid]
                (fx, fy), (cx, cy) = ip["focal_length"], ip["center"]
                r_c2w = quaternion_to_matrix(np.asarray(ep["orientation"], dtype=np.float64))
                centre_m = np.asarray(ep["translation"], dtype=np.float64) / 1000.0
                if centre_m.shape != (3,):
                    raise H36MFormatError(f"{path}: {subject}/{cid} translation must have 3 values")
                rot = r_c2w.T
                out[subject].append(H36MCamera(
                    id=cid, intrinsics=Intrinsics(float(fx), float(fy), float(cx), float(cy)),
                    width=int(ip["res_w"]), height=int(ip["res_h"]), rotation=rot, translation=-rot @ centre_m,
                ))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, H36MFormatError):
            raise
        raise H36MFormatError(f"{path}: camera JSON lacks or mistypes a field ({exc!r})") from exc
    return out


@dataclass(frozen=True)
class H36MConfig:
    data_3d: str
    data_2d: str
    cameras: str
    subjects: tuple[str, ...] = TEST_SUBJECTS
    actions: tuple[str, ...] = ()  # empty = all; matches the action name without its take number
    stride: int = 1  # every frame by default (training usually subsamples 50 fps -> 10 fps with 5)
    frames_dir: str = ""  # empty = no images (image_crop is zeros, has_image False)
    frame_pattern: str = "{subject}/{action}.{camera}/{frame:06d}.jpg"
    frame_offset: int = 1
    box_source: Literal["keypoints", "gt2d"] = "keypoints"  # deployment rule, or GT boxes (paper setting)
    crop: CropConfig = field(default_factory=CropConfig)


def action_base(action: str) -> str:
    """'Directions 1' -> 'Directions' (the per-action grouping of the H36M tables)."""
    return action.split(" ")[0]


class Human36MDataset:
    """Map-style dataset over (subject, action, camera, frame) with the synthetic dataset's sample keys, plus
    ``subject``, ``action`` (base name) and ``has_image``."""

    def __init__(self, config: H36MConfig) -> None:
        self.config = config
        self.poses_3d = load_h36m_3d(config.data_3d)
        self.poses_2d = load_h36m_2d(config.data_2d)
        self.cameras = load_h36m_cameras(config.cameras)
        index = []
        for subject in config.subjects:
            if subject not in self.poses_3d or subject not in self.poses_2d or subject not in self.cameras:
                raise H36MFormatError(f"subject {subject} missing from the 3D, 2D or camera file")
            for action in sorted(self.poses_3d[subject]):
                if config.actions and action_base(action) not in config.actions:
                    continue
                if action not in self.poses_2d[subject]:
                    log.warning("%s/%s has no 2D keypoints; skipped", subject, action)
                    continue
                n3 = self.poses_3d[subject][action].shape[0]
                for cam in range(len(CAMERA_IDS)):
                    n2 = self.poses_2d[subject][action][cam].shape[0]
                    if n2 < n3:
                        raise H36MFormatError(
                            f"{subject}/{action}/cam{cam}: 2D has {n2} frames, fewer than the 3D's {n3}"
                        )
                    # (VideoPose3D: some 2D sequences are longer; they are truncated to the 3D length.)
                    for f in range(0, n3, config.stride):
                        index.append((subject, action, cam, f))
        if not index:
            raise H36MFormatError("no samples: check subjects/actions")
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    def frame_path(self, subject: str, action: str, cam: int, frame: int) -> Path:
        rel = self.config.frame_pattern.format(
            subject=subject, action=action, action_=action.replace(" ", "_"), camera=CAMERA_IDS[cam],
            frame=frame + self.config.frame_offset,
        )
        return Path(self.config.frames_dir) / rel

    def __getitem__(self, i: int) -> dict[str, Any]:
        subject, action, cam_idx, f = self.index[i]
        cfg = self.config
        cam = self.cameras[subject][cam_idx]
        joints_c = cam.world_to_camera(self.poses_3d[subject][action][f].astype(np.float64))
        gt_px = project(joints_c, cam.intrinsics)
        kp = np.concatenate([self.poses_2d[subject][action][cam_idx][f], np.ones((NUM_JOINTS, 1), np.float32)], 1)
        box_kp = kp if cfg.box_source == "keypoints" else np.concatenate([gt_px, np.ones((NUM_JOINTS, 1))], 1)
        box = compute_crop_box(box_kp, cfg.crop)
        if box is None:
            raise H36MFormatError(f"{subject}/{action}/cam{cam_idx}/{f}: no finite keypoints")
        if cfg.frames_dir:
            import cv2

            path = self.frame_path(subject, action, cam_idx, f)
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise FileNotFoundError(f"cannot read frame {path}")
            crop = warp_crop(image, box, cfg.crop, color_order="bgr")
            has_image = True
        else:
            crop = np.zeros((cfg.crop.height, cfg.crop.width, 3), np.uint8)
            has_image = False
        inputs = encode_person(crop, kp, box, cam.intrinsics, cfg.crop)
        return make_sample(inputs, joints_c, kp, cam.intrinsics, box, (cam.width, cam.height),
                           keypoints_gt_px=gt_px.astype(np.float32), has_image=has_image, subject=subject,
                           action=action_base(action))
