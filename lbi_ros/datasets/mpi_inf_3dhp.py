"""MPI-INF-3DHP test set (six sequences TS1-TS6), for cross-dataset evaluation.

The official test annotations are ``mpi_inf_3dhp_test_set/TS<k>/annot_data.mat`` (fields ``annot2``,
``annot3``, ``univ_annot3``, ``valid_frame``, ``activity_annotation``) next to
``TS<k>/imageSequence/img_<frame:06d>.jpg`` (1-based). Reading ``.mat`` needs scipy (MATLAB v5 files) or
h5py (v7.3 / HDF5 files); neither is a dependency of this project, so :func:`read_annot_mat` imports them
lazily and :func:`convert_test_set` writes the **documented .npz equivalent** once, after which only numpy
is needed. One ``TS<k>.npz`` per sequence with:

==========================  =============================================================================
``annot2``                  (F, 17, 2) float32 pixels, MPI-INF-3DHP-17 joint order
``annot3``                  (F, 17, 3) float32 millimetres, camera frame
``univ_annot3``             (F, 17, 3) float32 millimetres, "universal" skeleton (height-normalised),
                            what the official PCK/AUC use
``valid_frame``             (F,) bool
``intrinsics``              (4,) float64 ``[fx, fy, cx, cy]``
``image_size``              (2,) int ``[width, height]``
``activity_annotation``     (F,) int (optional)
==========================  =============================================================================

Intrinsics: unless given, they are estimated from the annotations themselves by linear least squares
(``u = fx X/Z + cx``, ``v = fy Y/Z + cy`` over all valid frames and joints), since ``annot2`` is the
projection of ``annot3``; the fit residual is logged.

Scene types: TS1, TS2 green-screen studio (``GS``); TS3, TS4 studio without green screen (``noGS``); TS5,
TS6 outdoor (``Outdoor``). Joints are mapped to H36M-17 with :data:`lbi_ros.skeleton.MPI_INF_3DHP17`
(3DHP ``neck`` -> thorax, ``head`` -> neck_nose, ``head_top`` -> head).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lbi_ros.geometry import Intrinsics
from lbi_ros.preprocess import CropConfig, compute_crop_box, encode_person, warp_crop
from lbi_ros.skeleton import MPI_INF_3DHP17
from lbi_ros.synth.sample import make_sample

log = logging.getLogger(__name__)

SEQUENCES = ("TS1", "TS2", "TS3", "TS4", "TS5", "TS6")
SCENE_TYPES = {"TS1": "GS", "TS2": "GS", "TS3": "noGS", "TS4": "noGS", "TS5": "Outdoor", "TS6": "Outdoor"}
# Frame sizes (width, height) used when the frames are not at hand to read them from.
IMAGE_SIZES = {"TS1": (2048, 2048), "TS2": (2048, 2048), "TS3": (2048, 2048), "TS4": (2048, 2048),
               "TS5": (1920, 1080), "TS6": (1920, 1080)}  # fmt: skip
# H36M joint j <- 3DHP joint TO_H36M[j]
TO_H36M = tuple(MPI_INF_3DHP17.index(n) for n in (
    "pelvis", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "spine", "neck", "head",
    "head_top", "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
))  # fmt: skip
# The joints the official PCK/AUC score, as H36M-17 indices: the 14 of the test set's
# ``test_util/mpii_get_pck_auc_joint_groups.m`` (head top, neck, shoulders, elbows, wrists, hips, knees,
# ankles = 3DHP joints 1-14); the pelvis (root), spine and head (3DHP 15-17) are left out.
PCK_JOINTS = tuple(j for j in range(17) if TO_H36M[j] < 14)
_REQUIRED = ("annot2", "annot3", "univ_annot3", "valid_frame", "intrinsics", "image_size")


class MPI3DHPFormatError(ValueError):
    """An MPI-INF-3DHP annotation file does not have the expected content."""


@dataclass(frozen=True)
class Sequence3DHP:
    name: str
    annot2: np.ndarray  # (F, 17, 2) px, 3DHP order
    annot3: np.ndarray  # (F, 17, 3) mm
    univ_annot3: np.ndarray  # (F, 17, 3) mm
    valid_frame: np.ndarray  # (F,) bool
    intrinsics: Intrinsics
    image_size: tuple[int, int]
    activity: np.ndarray | None = None

    @property
    def scene(self) -> str:
        return SCENE_TYPES.get(self.name, "unknown")


def _as_frames_joints(a: np.ndarray, c: int, name: str, where: str) -> np.ndarray:
    """Squeeze singleton axes and order as (F, 17, c); .mat files come as (F,1,17,c) or transposed."""
    a = np.squeeze(np.asarray(a, dtype=np.float64))
    if a.ndim != 3:
        raise MPI3DHPFormatError(f"{where}: {name} must have 3 non-singleton axes, got shape {a.shape}")
    axes = list(range(3))
    j_ax = [i for i in axes if a.shape[i] == 17]
    c_ax = [i for i in axes if a.shape[i] == c and i not in j_ax[:1]]
    if not j_ax or not c_ax:
        raise MPI3DHPFormatError(f"{where}: {name} must have a 17-joint and a {c}-coordinate axis, got {a.shape}")
    f_ax = [i for i in axes if i not in (j_ax[0], c_ax[0])][0]
    return np.transpose(a, (f_ax, j_ax[0], c_ax[0]))


def estimate_intrinsics(annot2: np.ndarray, annot3: np.ndarray, valid: np.ndarray) -> tuple[Intrinsics, float]:
    """Least-squares pinhole intrinsics from 2D/3D correspondences -> (intrinsics, RMS residual px)."""
    p2 = annot2[valid].reshape(-1, 2)
    p3 = annot3[valid].reshape(-1, 3)
    ok = p3[:, 2] > 1e-6
    if ok.sum() < 3:
        raise MPI3DHPFormatError("too few valid points to estimate intrinsics")
    p2, p3 = p2[ok], p3[ok]
    params, res = [], []
    for k in range(2):
        a = np.stack([p3[:, k] / p3[:, 2], np.ones(len(p3))], 1)
        sol, *_ = np.linalg.lstsq(a, p2[:, k], rcond=None)
        params.append(sol)
        res.append(p2[:, k] - a @ sol)
    rms = float(np.sqrt(np.mean(np.concatenate(res) ** 2)))
    return Intrinsics(fx=params[0][0], fy=params[1][0], cx=params[0][1], cy=params[1][1]), rms


def read_annot_mat(path: str | Path) -> dict[str, np.ndarray]:
    """Read an official ``annot_data.mat`` (scipy for v5 files, h5py for v7.3; both imported lazily)."""
    path = Path(path)
    fields = ("annot2", "annot3", "univ_annot3", "valid_frame", "activity_annotation")
    try:
        import scipy.io

        try:
            m = scipy.io.loadmat(str(path))
            return {k: np.asarray(m[k]) for k in fields if k in m}
        except NotImplementedError:  # v7.3 (HDF5): fall through to h5py
            pass
    except ImportError:
        pass
    try:
        import h5py
    except ImportError as exc:
        raise RuntimeError(
            f"reading {path} needs scipy (MATLAB v5) or h5py (v7.3): pip install h5py, or convert on another "
            "machine with `convert_test_set` and use the .npz files"
        ) from exc
    with h5py.File(path, "r") as f:
        return {k: np.asarray(f[k]) for k in fields if k in f}


def convert_test_set(src: str | Path, out: str | Path, intrinsics: dict[str, Intrinsics] | None = None) -> list[Path]:
    """``mpi_inf_3dhp_test_set/TS*/annot_data.mat`` -> ``out/TS*.npz`` (module docstring)."""
    src, out = Path(src), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SEQUENCES:
        mat = src / name / "annot_data.mat"
        if not mat.is_file():
            log.warning("%s missing; skipped", mat)
            continue
        raw = read_annot_mat(mat)
        where = str(mat)
        for k in ("annot2", "annot3", "univ_annot3", "valid_frame"):
            if k not in raw:
                raise MPI3DHPFormatError(f"{where}: no '{k}' field")
        a2 = _as_frames_joints(raw["annot2"], 2, "annot2", where)
        a3 = _as_frames_joints(raw["annot3"], 3, "annot3", where)
        u3 = _as_frames_joints(raw["univ_annot3"], 3, "univ_annot3", where)
        valid = np.asarray(raw["valid_frame"]).reshape(-1).astype(bool)
        if intrinsics and name in intrinsics:
            intr = intrinsics[name]
        else:
            intr, rms = estimate_intrinsics(a2, a3, valid)
            log.info("%s: intrinsics fitted from annotations (RMS %.3f px)", name, rms)
        size = IMAGE_SIZES[name]
        first = src / name / "imageSequence" / "img_000001.jpg"
        if first.is_file():
            import cv2

            img = cv2.imread(str(first), cv2.IMREAD_COLOR)
            if img is not None:
                size = (img.shape[1], img.shape[0])
        arrays = dict(
            annot2=a2.astype(np.float32), annot3=a3.astype(np.float32), univ_annot3=u3.astype(np.float32),
            valid_frame=valid, intrinsics=intr.as_array(), image_size=np.array(size),
        )
        if "activity_annotation" in raw:
            arrays["activity_annotation"] = np.asarray(raw["activity_annotation"]).reshape(-1).astype(np.int64)
        path = out / f"{name}.npz"
        np.savez(path, **arrays)
        written.append(path)
    return written


def load_sequence_npz(path: str | Path) -> Sequence3DHP:
    """Load and validate one ``TS<k>.npz``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as d:
            missing = [k for k in _REQUIRED if k not in d.files]
            if missing:
                raise MPI3DHPFormatError(f"{path}: missing arrays {missing} (has {d.files})")
            arr = {k: d[k] for k in d.files}
    except (OSError, ValueError) as exc:
        if isinstance(exc, MPI3DHPFormatError):
            raise
        raise MPI3DHPFormatError(f"{path}: cannot read as .npz ({exc})") from exc
    a2, a3, u3 = arr["annot2"], arr["annot3"], arr["univ_annot3"]
    f = a2.shape[0] if a2.ndim == 3 else -1
    if a2.shape != (f, 17, 2) or a3.shape != (f, 17, 3) or u3.shape != (f, 17, 3):
        raise MPI3DHPFormatError(
            f"{path}: expected annot2 (F, 17, 2), annot3/univ_annot3 (F, 17, 3); got {a2.shape}, {a3.shape}, {u3.shape}"
        )
    valid = arr["valid_frame"].reshape(-1)
    if valid.shape != (f,):
        raise MPI3DHPFormatError(f"{path}: valid_frame must have {f} entries, got {arr['valid_frame'].shape}")
    k = np.asarray(arr["intrinsics"], dtype=np.float64).reshape(-1)
    size = np.asarray(arr["image_size"]).reshape(-1)
    if k.shape != (4,) or size.shape != (2,):
        raise MPI3DHPFormatError(f"{path}: intrinsics must be (4,) and image_size (2,)")
    return Sequence3DHP(
        name=path.stem, annot2=a2.astype(np.float32), annot3=a3.astype(np.float32),
        univ_annot3=u3.astype(np.float32), valid_frame=valid.astype(bool),
        intrinsics=Intrinsics(*map(float, k)), image_size=(int(size[0]), int(size[1])),
        activity=arr["activity_annotation"].reshape(-1) if "activity_annotation" in arr else None,
    )


@dataclass(frozen=True)
class MPI3DHPConfig:
    annot_dir: str  # folder with TS1.npz ... TS6.npz
    sequences: tuple[str, ...] = SEQUENCES
    valid_only: bool = True
    stride: int = 1
    frames_dir: str = ""  # mpi_inf_3dhp_test_set folder (TS<k>/imageSequence/img_XXXXXX.jpg); empty = none
    frame_pattern: str = "{sequence}/imageSequence/img_{frame:06d}.jpg"
    frame_offset: int = 1
    crop: CropConfig = field(default_factory=CropConfig)


class MPI3DHPDataset:
    """Test-set samples with the synthetic dataset's keys; targets in H36M-17 order, root-relative metres.

    Extra keys: ``joints_3d_univ`` (17, 3) root-relative metres from ``univ_annot3`` (for the official
    metrics), ``sequence``, ``scene``, ``has_image``. The 2D input is the ground-truth ``annot2`` with
    confidence 1 (the usual cross-dataset protocol; swap in detections by editing ``annot2``).
    """

    def __init__(self, config: MPI3DHPConfig) -> None:
        self.config = config
        self.sequences = {s: load_sequence_npz(Path(config.annot_dir) / f"{s}.npz") for s in config.sequences}
        self.index = []
        for name, seq in self.sequences.items():
            frames = np.flatnonzero(seq.valid_frame) if config.valid_only else np.arange(len(seq.valid_frame))
            self.index.extend((name, int(f)) for f in frames[:: config.stride])
        if not self.index:
            raise MPI3DHPFormatError("no samples (no valid frames?)")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        name, f = self.index[i]
        seq = self.sequences[name]
        cfg = self.config
        perm = list(TO_H36M)
        joints_c = seq.annot3[f][perm].astype(np.float64) / 1000.0
        univ = seq.univ_annot3[f][perm].astype(np.float64) / 1000.0
        kp = np.concatenate([seq.annot2[f][perm], np.ones((17, 1), np.float32)], 1)
        box = compute_crop_box(kp, cfg.crop)
        if box is None:
            raise MPI3DHPFormatError(f"{name} frame {f}: no finite keypoints")
        if cfg.frames_dir:
            import cv2

            path = Path(cfg.frames_dir) / cfg.frame_pattern.format(sequence=name, frame=f + cfg.frame_offset)
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise FileNotFoundError(f"cannot read frame {path}")
            crop, has_image = warp_crop(image, box, cfg.crop, color_order="bgr"), True
        else:
            crop, has_image = np.zeros((cfg.crop.height, cfg.crop.width, 3), np.uint8), False
        inputs = encode_person(crop, kp, box, seq.intrinsics, cfg.crop)
        return make_sample(inputs, joints_c, kp, seq.intrinsics, box, seq.image_size,
                           joints_3d_univ=(univ - univ[0]).astype(np.float32), has_image=has_image, sequence=name,
                           scene=seq.scene)

