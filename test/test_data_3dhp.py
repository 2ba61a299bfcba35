"""MPI-INF-3DHP test-set loader on fixture files in the documented .npz layout."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from lbi_ros.datasets.mpi_inf_3dhp import (
    TO_H36M,
    MPI3DHPConfig,
    MPI3DHPDataset,
    MPI3DHPFormatError,
    _as_frames_joints,
    convert_test_set,
    estimate_intrinsics,
    load_sequence_npz,
    read_annot_mat,
)
from lbi_ros.geometry import Intrinsics, project
from lbi_ros.skeleton import H36M17, MPI_INF_3DHP17

K = Intrinsics(1500.0, 1498.0, 1024.0, 1050.0)


def write_sequence(path: Path, frames: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    annot3 = rng.normal(0, 300, (frames, 17, 3)) + np.array([0.0, 0.0, 4000.0])  # mm, camera frame
    annot2 = project(annot3, K)
    valid = np.ones(frames, bool)
    valid[[1, 5]] = False
    arrays = dict(annot2=annot2.astype(np.float32), annot3=annot3.astype(np.float32),
                  univ_annot3=(annot3 * 0.9).astype(np.float32), valid_frame=valid,
                  intrinsics=K.as_array(), image_size=np.array([2048, 2048]),
                  activity_annotation=np.arange(frames))
    np.savez(path, **arrays)
    return arrays


def test_load_and_dataset_mapping(tmp_path: Path) -> None:
    arrays = write_sequence(tmp_path / "TS1.npz")
    write_sequence(tmp_path / "TS5.npz", seed=1)
    seq = load_sequence_npz(tmp_path / "TS1.npz")
    assert seq.scene == "GS" and seq.image_size == (2048, 2048) and seq.valid_frame.sum() == 6
    ds = MPI3DHPDataset(MPI3DHPConfig(annot_dir=str(tmp_path), sequences=("TS1", "TS5")))
    assert len(ds) == 12  # valid frames only
    s = ds[0]
    assert s["sequence"] == "TS1" and s["scene"] == "GS" and not s["has_image"]
    pelvis = MPI_INF_3DHP17.index("pelvis")
    head_top = MPI_INF_3DHP17.index("head_top")
    raw = arrays["annot3"][0] / 1000.0
    assert np.allclose(s["root_cam"], raw[pelvis], atol=1e-6)
    assert np.allclose(s["joints_3d"][H36M17.index("head")], raw[head_top] - raw[pelvis], atol=1e-6)
    assert np.allclose(s["joints_3d"][0], 0) and np.allclose(s["joints_3d_univ"][0], 0)
    assert ds[len(ds) - 1]["scene"] == "Outdoor"
    assert sorted(TO_H36M) == list(range(17))


def test_intrinsics_are_recovered_from_annotations() -> None:
    rng = np.random.default_rng(2)
    a3 = rng.normal(0, 300, (20, 17, 3)) + np.array([0.0, 0.0, 4000.0])
    est, rms = estimate_intrinsics(project(a3, K), a3, np.ones(20, bool))
    assert np.allclose(est.as_array(), K.as_array(), atol=1e-6) and rms < 1e-6


def test_mat_layouts_are_normalised() -> None:
    a = np.zeros((10, 1, 17, 2))
    assert _as_frames_joints(a, 2, "annot2", "x").shape == (10, 17, 2)
    assert _as_frames_joints(np.zeros((2, 17, 1, 10)), 2, "annot2", "x").shape == (10, 17, 2)
    with pytest.raises(MPI3DHPFormatError, match="17-joint"):
        _as_frames_joints(np.zeros((10, 16, 2)), 2, "annot2", "x")


def test_mat_reading_without_scipy_or_h5py_explains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("scipy", "scipy.io", "h5py"):  # as if neither were installed (None in sys.modules: ImportError)
        monkeypatch.setitem(sys.modules, name, None)
    (tmp_path / "TS1").mkdir()
    (tmp_path / "TS1" / "annot_data.mat").write_bytes(b"MATLAB 5.0 MAT-file")
    with pytest.raises(RuntimeError, match="h5py"):
        read_annot_mat(tmp_path / "TS1" / "annot_data.mat")
    with pytest.raises(RuntimeError, match="h5py"):
        convert_test_set(tmp_path, tmp_path / "out")


def test_malformed_files_are_rejected(tmp_path: Path) -> None:
    arrays = write_sequence(tmp_path / "TS1.npz")
    bad = dict(arrays)
    del bad["valid_frame"]
    np.savez(tmp_path / "TS2.npz", **bad)
    with pytest.raises(MPI3DHPFormatError, match="valid_frame"):
        load_sequence_npz(tmp_path / "TS2.npz")
    bad = dict(arrays, annot3=arrays["annot3"][:, :16])
    np.savez(tmp_path / "TS3.npz", **bad)
    with pytest.raises(MPI3DHPFormatError, match=r"annot3/univ_annot3 \(F, 17, 3\)"):
        load_sequence_npz(tmp_path / "TS3.npz")
    bad = dict(arrays, valid_frame=arrays["valid_frame"][:3])
    np.savez(tmp_path / "TS4.npz", **bad)
    with pytest.raises(MPI3DHPFormatError, match="valid_frame must have"):
        load_sequence_npz(tmp_path / "TS4.npz")
    (tmp_path / "TS6.npz").write_text("garbage")
    with pytest.raises(MPI3DHPFormatError, match="cannot read"):
        load_sequence_npz(tmp_path / "TS6.npz")
    with pytest.raises(FileNotFoundError):
        MPI3DHPDataset(MPI3DHPConfig(annot_dir=str(tmp_path), sequences=("TS5",)))
