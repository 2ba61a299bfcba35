"""Human3.6M loader on tiny fixture files written in the VideoPose3D formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lbi_ros.datasets.h36m import (
    CAMERA_IDS,
    H36M_KEPT_JOINTS,
    H36MConfig,
    H36MFormatError,
    Human36MDataset,
    load_h36m_2d,
    load_h36m_3d,
    load_h36m_cameras,
)
from lbi_ros.geometry import project

FRAMES = 6


def _quat_look(yaw: float) -> list[float]:
    """Camera-to-world quaternion [w, x, y, z] for a camera looking horizontally along world (cos, sin, 0):
    camera axes x = right, y = down (-Z world), z = forward."""
    z = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    y = np.array([0.0, 0.0, -1.0])
    x = np.cross(y, z)
    r = np.stack([x, y, z], 1)  # columns: camera axes in world = camera-to-world rotation
    w = np.sqrt(max(1e-12, 1 + np.trace(r))) / 2
    return [w, (r[2, 1] - r[1, 2]) / (4 * w), (r[0, 2] - r[2, 0]) / (4 * w), (r[1, 0] - r[0, 1]) / (4 * w)]


def write_fixture(root: Path, short_2d: bool = False) -> H36MConfig:
    rng = np.random.default_rng(0)
    pos3d: dict = {}
    pos2d: dict = {}
    cams = {"intrinsics": {}, "extrinsics": {}}
    for k, cid in enumerate(CAMERA_IDS):
        cams["intrinsics"][cid] = {"center": [500.0 + k, 510.0], "focal_length": [1145.0, 1144.0],
                                   "res_w": 1000, "res_h": 1002, "radial_distortion": [0, 0, 0],
                                   "tangential_distortion": [0, 0]}
    for subject in ("S1", "S9"):
        pos3d[subject], pos2d[subject] = {}, {}
        cams["extrinsics"][subject] = {}
        for k, cid in enumerate(CAMERA_IDS):
            yaw = k * np.pi / 2
            centre = -4.5 * np.array([np.cos(yaw), np.sin(yaw), 0.0]) + [0, 0, 1.2]
            cams["extrinsics"][subject][cid] = {"orientation": _quat_look(yaw), "translation": (centre * 1000).tolist()}
        for action in ("Walking 1", "Sitting"):
            body = rng.normal(0, 0.3, (FRAMES, 32, 3)) + np.array([0.0, 0.0, 1.0])
            pos3d[subject][action] = body
            per_cam = []
            for cid in CAMERA_IDS:
                e = cams["extrinsics"][subject][cid]
                from lbi_ros.geometry import Intrinsics, quaternion_to_matrix

                r = quaternion_to_matrix(np.array(e["orientation"])).T
                pc = (body[:, list(H36M_KEPT_JOINTS)] - np.array(e["translation"]) / 1000) @ r.T
                ip = cams["intrinsics"][cid]
                px = project(pc, Intrinsics(*ip["focal_length"], *ip["center"]))
                n = FRAMES - 1 if short_2d else FRAMES + 2  # VideoPose3D: 2D may be longer than 3D
                extra = np.repeat(px[-1:], n - FRAMES, 0) if n > FRAMES else np.zeros((0, 17, 2))
                per_cam.append(np.concatenate([px, extra])[:n].astype(np.float32))
            pos2d[subject][action] = per_cam
    np.savez(root / "data_3d_h36m.npz", positions_3d=pos3d)
    np.savez(root / "data_2d_h36m_gt.npz", positions_2d=pos2d,
             metadata={"num_joints": 17, "keypoints_symmetry": [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]})
    (root / "cams.json").write_text(json.dumps(cams))
    return H36MConfig(data_3d=str(root / "data_3d_h36m.npz"), data_2d=str(root / "data_2d_h36m_gt.npz"),
                      cameras=str(root / "cams.json"), subjects=("S9",))


def test_loaders_read_the_fixture(tmp_path: Path) -> None:
    cfg = write_fixture(tmp_path)
    p3 = load_h36m_3d(cfg.data_3d)
    assert p3["S1"]["Sitting"].shape == (FRAMES, 17, 3) and p3["S1"]["Sitting"].dtype == np.float32
    p2 = load_h36m_2d(cfg.data_2d)
    assert len(p2["S9"]["Walking 1"]) == 4 and p2["S9"]["Walking 1"][0].shape == (FRAMES + 2, 17, 2)
    cams = load_h36m_cameras(cfg.cameras)
    assert [c.id for c in cams["S1"]] == list(CAMERA_IDS)
    assert np.allclose(cams["S1"][0].rotation @ cams["S1"][0].rotation.T, np.eye(3))


def test_dataset_samples_match_the_gt_projection(tmp_path: Path) -> None:
    ds = Human36MDataset(write_fixture(tmp_path))
    assert len(ds) == 2 * 4 * FRAMES  # S9 only, 2 actions x 4 cameras, 2D truncated to the 3D length
    s = ds[5]
    assert s["subject"] == "S9" and s["action"] in ("Walking", "Sitting") and not s["has_image"]
    assert np.allclose(s["keypoints_px"][:, :2], s["keypoints_gt_px"], atol=1e-3)
    assert np.allclose(s["joints_3d"][0], 0) and s["root_cam"][2] > 2.0
    assert s["image_crop"].shape == (3, 128, 96) and np.abs(s["keypoints_crop"][:, :2]).max() <= 1.0


def test_frames_are_read_and_cropped(tmp_path: Path) -> None:
    import cv2

    cfg = write_fixture(tmp_path)
    ds = Human36MDataset(cfg)
    subject, action, cam, f = ds.index[0]
    frames = tmp_path / "frames"
    path = frames / cfg.frame_pattern.format(subject=subject, action=action, camera=CAMERA_IDS[cam],
                                             frame=f + cfg.frame_offset)
    path.parent.mkdir(parents=True)
    cv2.imwrite(str(path), np.full((1002, 1000, 3), 200, np.uint8))
    from dataclasses import replace

    s = Human36MDataset(replace(cfg, frames_dir=str(frames)))[0]
    assert s["has_image"] and s["image_crop"].std() > 0  # grey frame + black outside -> not constant
    with pytest.raises(FileNotFoundError, match="cannot read frame"):
        Human36MDataset(replace(cfg, frames_dir=str(frames)))[1]


def test_malformed_files_are_rejected(tmp_path: Path) -> None:
    cfg = write_fixture(tmp_path)
    np.savez(tmp_path / "no_key.npz", something=np.zeros(3))
    with pytest.raises(H36MFormatError, match="positions_3d"):
        load_h36m_3d(tmp_path / "no_key.npz")
    np.savez(tmp_path / "plain.npz", positions_3d=np.zeros((3, 17, 3)))
    with pytest.raises(H36MFormatError, match="pickled dict"):
        load_h36m_3d(tmp_path / "plain.npz")
    np.savez(tmp_path / "shape.npz", positions_3d={"S1": {"A": np.zeros((3, 20, 3))}})
    with pytest.raises(H36MFormatError, match=r"\(F, 32 or 17, 3\)"):
        load_h36m_3d(tmp_path / "shape.npz")
    np.savez(tmp_path / "two_cams.npz", positions_2d={"S1": {"A": [np.zeros((3, 17, 2))] * 2}})
    with pytest.raises(H36MFormatError, match="4 camera arrays"):
        load_h36m_2d(tmp_path / "two_cams.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(H36MFormatError, match="not an .npz"):
        load_h36m_3d(tmp_path / "text.npz")
    import pickle

    (tmp_path / "raw_pickle.npz").write_bytes(pickle.dumps({"positions_3d": 1}))  # never unpickled
    with pytest.raises(H36MFormatError, match="not an .npz"):
        load_h36m_3d(tmp_path / "raw_pickle.npz")
    cams = json.loads(Path(cfg.cameras).read_text())
    del cams["intrinsics"][CAMERA_IDS[2]]["focal_length"]
    (tmp_path / "bad_cams.json").write_text(json.dumps(cams))
    with pytest.raises(H36MFormatError, match="focal_length"):
        load_h36m_cameras(tmp_path / "bad_cams.json")
    with pytest.raises(FileNotFoundError):
        load_h36m_3d(tmp_path / "missing.npz")


def test_2d_shorter_than_3d_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(H36MFormatError, match="fewer than"):
        Human36MDataset(write_fixture(tmp_path, short_2d=True))


def test_a_crafted_pickle_is_refused_before_it_runs(tmp_path):
    """A .npz whose object array pickles an arbitrary callable must not execute it."""
    import io
    import os
    import pickle
    import zipfile

    from lbi_ros.datasets.h36m import H36MFormatError, load_h36m_3d

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    payload = io.BytesIO()
    np.lib.format.write_array_header_1_0(payload, {"descr": "|O", "fortran_order": False, "shape": ()})
    pickle.dump(Evil(), payload, protocol=2)
    path = tmp_path / "data_3d_h36m.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("positions_3d.npy", payload.getvalue())  # header (with magic) + the pickle
    with pytest.raises(H36MFormatError, match="refusing to unpickle"):
        load_h36m_3d(path)
    assert not marker.exists()

