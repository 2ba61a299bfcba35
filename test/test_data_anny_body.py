"""Anny bodies (lbi_ros.render.mesh.anny_body): shapes, rest bodies, retargeting, labels, the licence guard.

Needs the ``anny`` package (requirements/bodies.txt) except for the shape and source-scan tests. The first
run builds anny's cache (~75 s, under <repo>/.cache/anny); afterwards this file takes a few seconds.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest

import lbi_ros
from lbi_ros.mocap.poses import random_pose
from lbi_ros.render.mesh.anny_body import (
    AnnyBodyModel,
    BodyShape,
    in_train_region,
    sample_body_shape,
)
from lbi_ros.skeleton import H36M17

from .conftest import require_module

PARENTS = H36M17.parents
DEMO = Path(lbi_ros.__file__).parent / "demo" / "demo_clip.npz"


@pytest.fixture(scope="module")
def model() -> AnnyBodyModel:
    require_module("anny")
    torch = require_module("torch")
    torch.set_num_threads(1)
    m = AnnyBodyModel()
    assert m.anny_model is not None  # build now (from the cache: ~1 s)
    return m


@pytest.fixture(scope="module")
def shapes() -> list[BodyShape]:
    rng = np.random.default_rng(3)
    return [BodyShape(), sample_body_shape(rng, "train"), sample_body_shape(rng, "heldout")]


def standing_pose() -> tuple[np.ndarray, np.ndarray]:
    """A hand-made upright H36M-17 pose, facing +x, left = +y, arms hanging (world Z up, metres)."""
    j = np.array([
        [0.0, 0.0, 0.95], [0.0, -0.1, 0.95], [0.02, -0.1, 0.52], [0.0, -0.1, 0.1],
        [0.0, 0.1, 0.95], [0.02, 0.1, 0.52], [0.0, 0.1, 0.1], [0.0, 0.0, 1.18], [0.0, 0.0, 1.43],
        [0.06, 0.0, 1.58], [0.01, 0.0, 1.70], [0.0, 0.17, 1.42], [0.0, 0.19, 1.14], [0.03, 0.2, 0.88],
        [0.0, -0.17, 1.42], [0.0, -0.19, 1.14], [0.03, -0.2, 0.88],
    ])  # fmt: skip
    return j, np.array([[0.12, 0.1, 0.03], [0.12, -0.1, 0.03]])


def test_poses() -> list[tuple[str, np.ndarray, np.ndarray]]:
    demo = np.load(DEMO)
    out = [(f"procedural{i}", *random_pose(np.random.default_rng(i))) for i in range(8)]
    out += [
        (f"demo{c}_{k}", demo[f"joints_{c}"][k], demo[f"toes_{c}"][k]) for c in (0, 1) for k in (0, 45, 90)
    ]
    return out + [("standing", *standing_pose())]


test_poses.__test__ = False  # a helper, not a test


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    c = float(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


# ---------------------------------------------------------------------------------------------------------
# Shapes (no anny needed)
# ---------------------------------------------------------------------------------------------------------


def test_shape_sampling_splits_are_disjoint_and_reproducible():
    rng = np.random.default_rng(0)
    train = [sample_body_shape(rng, "train") for _ in range(300)]
    held = [sample_body_shape(rng, "heldout") for _ in range(300)]
    assert all(in_train_region(s) for s in train)
    assert not any(in_train_region(s) for s in held)
    for s in train + held:
        vals = np.array(list(s.phenotypes().values()))
        assert ((vals >= 0) & (vals <= 1)).all()
        assert s.african + s.asian + s.caucasian == pytest.approx(1.0)
    assert all(s.age >= 0.77 for s in held)
    teens = np.mean([s.age < 0.77 for s in train])
    assert 0.04 < teens < 0.25
    assert np.mean([s.gender < 0.5 for s in train]) == pytest.approx(0.5, abs=0.1)
    again = np.random.default_rng(0)
    assert sample_body_shape(again, "train") == train[0]
    with pytest.raises(ValueError):
        sample_body_shape(rng, "val")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------
# Rest bodies
# ---------------------------------------------------------------------------------------------------------


def test_rest_body_layout(model, shapes):
    for shape in shapes:
        rest = model.rest(shape)
        assert model.rest(shape) is rest  # cached
        v, f = rest.vertices, rest.faces
        assert v.shape == (19158, 3) and v.dtype == np.float32
        assert f.ndim == 2 and f.shape[1] == 3 and f.dtype == np.int32 and 0 <= f.min() and f.max() < len(v)
        assert rest.face_uv.shape == f.shape and rest.face_uv.max() < len(rest.uv)
        rv = rest.render_to_vertex  # unwelded render mesh: same triangles, one UV per render vertex
        assert np.array_equal(rv[rest.render_faces], f) and len(rest.render_uv) == len(rv)
        np.testing.assert_array_equal(rest.render_uv[rest.render_faces], rest.uv[rest.face_uv])
        assert set(np.unique(f)) == set(rest.surface_vertices.tolist())
        surf = v[rest.surface_vertices]
        assert surf[:, 2].min() == pytest.approx(0.0, abs=1e-6)  # feet on the floor
        assert rest.height == pytest.approx(float(surf[:, 2].max()), abs=1e-5)
        assert 1.35 < rest.height < 2.15
        assert rest.skin_indices.shape == rest.skin_weights.shape == (19158, 4)
        np.testing.assert_allclose(rest.skin_weights.sum(1), 1.0, atol=1e-5)
        assert (
            rest.skin_indices.max() < len(rest.bone_names) == len(rest.bone_heads) == len(rest.bone_parents)
        )
        j = rest.joints  # Z up, left = +x, facing -y (anny's rest)
        assert j[10, 2] > j[9, 2] > j[8, 2] > j[7, 2] > j[0, 2] > j[2, 2] > j[3, 2] > 0
        assert j[4, 0] > j[1, 0] and j[11, 0] > j[14, 0]
        assert j[9, 1] < j[8, 1] and (rest.toes[:, 1] < j[[6, 3], 1]).all()
        assert rest.height - 0.05 < j[10, 2] < rest.height


# ---------------------------------------------------------------------------------------------------------
# Retargeting and labels
# ---------------------------------------------------------------------------------------------------------


def test_retargeting_keeps_bone_directions(model, shapes):
    for shape in shapes[1:]:
        rest = model.rest(shape)
        for name, joints, toes in test_poses():
            posed = model.pose(rest, joints, toes)
            assert posed.joints.shape == (17, 3) and posed.joints.dtype == np.float64
            assert posed.vertices.shape == (19158, 3) and np.isfinite(posed.vertices).all()
            for c in range(1, 17):
                p = PARENTS[c]
                err = angle_deg(posed.joints[c] - posed.joints[p], joints[c] - joints[p])
                assert err < 15.0, f"{name}: bone {p}->{c} off by {err:.1f} deg"
            for k, ankle in enumerate((6, 3)):  # feet: the mocap heading (the pitch is Anny's, see the doc)
                a, b = posed.toes[k] - posed.joints[ankle], toes[k] - joints[ankle]
                if np.hypot(*b[:2]) > 0.5 * np.linalg.norm(b):
                    err = angle_deg(a * [1, 1, 0], b * [1, 1, 0])
                    assert err < 15.0, f"{name}: foot {k} heading off by {err:.1f} deg"


def test_retargeting_keeps_anny_bone_lengths(model, shapes):
    rest = model.rest(shapes[1])
    for _, joints, toes in test_poses()[::3]:
        posed = model.pose(rest, joints, toes)
        for c in (2, 3, 5, 6, 12, 13, 15, 16):  # limb bones: rigid in Anny
            p = PARENTS[c]
            want = np.linalg.norm(rest.joints[c] - rest.joints[p])
            assert np.linalg.norm(posed.joints[c] - posed.joints[p]) == pytest.approx(want, rel=1e-6)


def test_labels_are_metric_and_on_the_floor(model, shapes):
    for shape in shapes:
        rest = model.rest(shape)
        joints, toes = standing_pose()
        posed = model.pose(rest, joints, toes)
        surf = posed.vertices[rest.surface_vertices]
        assert 0.9 * rest.height < float(np.ptp(surf[:, 2])) < 1.02 * rest.height
        assert posed.joints[10, 2] == pytest.approx(rest.joints[10, 2], abs=0.06)
        assert 0.7 < posed.scale < 1.4
        for name, joints, toes in test_poses():
            posed = model.pose(rest, joints, toes)
            s = posed.scale
            np.testing.assert_allclose(posed.joints[0, :2], s * joints[0, :2], atol=1e-6, err_msg=name)
            assert abs(posed.joints[0, 2] - s * joints[0, 2]) < 0.15, name  # z: the feet decide
            feet = posed.vertices[rest.rig.foot_vertices, 2]
            sole = s * min(joints[3, 2] - 0.08, joints[6, 2] - 0.08, toes[0, 2] - 0.03, toes[1, 2] - 0.03)
            assert feet.min() == pytest.approx(sole if sole >= 0.05 else 0.0, abs=1e-4), name
            assert posed.vertices[rest.surface_vertices, 2].min() > -0.15, name  # not deep below the floor
        joints, toes = standing_pose()
        lifted = model.pose(rest, joints + [0, 0, 0.4], toes + [0, 0, 0.4])  # a jump: feet stay up
        sole = lifted.scale * (0.43 - 0.03)  # the toes, 0.4 m higher
        assert lifted.vertices[rest.rig.foot_vertices, 2].min() == pytest.approx(sole, abs=1e-4)


def test_labels_agree_with_the_skinned_mesh(model, shapes):
    """Anny's COCO keypoint regressors on the posed mesh land next to the joint-centre labels."""
    import anny.paths
    import torch

    kp = torch.load(Path(anny.paths.get_anny_root_dir()) / "data/keypoints/coco.pth", weights_only=True)
    pairs = {"left_elbow": 12, "left_wrist": 13, "right_knee": 2, "right_ankle": 3, "left_shoulder": 11}
    weights = np.stack([kp[k].double().numpy() for k in pairs])
    rest = model.rest(shapes[2])
    for name, joints, toes in test_poses():
        posed = model.pose(rest, joints, toes)
        regressed = weights @ posed.vertices.astype(np.float64)
        dist = np.linalg.norm(regressed - posed.joints[list(pairs.values())], axis=1)
        assert dist.max() < 0.06, f"{name}: {dict(zip(pairs, dist.round(3), strict=True))}"


def test_posing_is_deterministic(model, shapes):
    joints, toes = random_pose(np.random.default_rng(11))
    rest = model.rest(shapes[1])
    a, b = model.pose(rest, joints, toes), model.pose(rest, joints, toes)
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.joints, b.joints)
    other = pickle.loads(pickle.dumps(model))  # a DataLoader worker's copy: rebuilt lazily, no anny inside
    assert other._model is None
    c = other.pose(other.rest(shapes[1]), joints, toes)
    assert np.array_equal(a.vertices, c.vertices) and np.array_equal(a.joints, c.joints)


def test_pose_rejects_bad_input(model, shapes):
    joints, toes = standing_pose()
    joints[5, 1] = np.nan
    with pytest.raises(ValueError):
        model.pose(model.rest(shapes[0]), joints, toes)


# ---------------------------------------------------------------------------------------------------------
# Licence guard
# ---------------------------------------------------------------------------------------------------------


def test_noncommercial_data_is_refused(model):
    import anny.paths

    for fn in ("download_noncommercial_data", "get_anny2smpl_data_path", "get_anny2smplx_data_path"):
        with pytest.raises(RuntimeError):
            getattr(anny.paths, fn)()
    for kwargs in (
        {"topology": "smplx"}, {"topology": "smpl"}, {"topology": "soma"}, {"topology": "anny_from_soma"},
        {"rig": "soma"}, {"rig": "smplx"}, {"rig": "SMPL"}, {"topology": "anny"}, {"rig": "makehuman"},
    ):  # fmt: skip
        with pytest.raises(ValueError):
            AnnyBodyModel(**kwargs)


# Where the words may appear in lbi_ros/: the guard block of anny_model.py, and calls / re-exports of the
# guard function itself.
_WORDS = re.compile(r"smplx|smpl|soma|noncommercial", re.IGNORECASE)
_GUARD_FILE = "lbi_ros/render/mesh/anny_model.py"
_GUARD_BEGIN, _GUARD_END = "# --- licence guard begin", "# --- licence guard end"
_GUARD_NAME = "forbid_noncommercial"
_ALLOWED_MENTIONS: set[tuple[str, str]] = set()  # (file, phrase) exceptions; none today
_TEXT_SUFFIXES = {".py", ".md", ".txt", ".rst", ".yaml", ".yml", ".json", ".toml", ".cfg", ".ini", ".sh"}


def test_source_mentions_noncommercial_models_only_in_the_guard():
    root = Path(lbi_ros.__file__).resolve().parent
    offenders, guard_lines = [], 0
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix not in _TEXT_SUFFIXES or "__pycache__" in path.parts:
            continue
        rel = path.relative_to(root.parent).as_posix()
        in_guard = False
        for no, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if rel == _GUARD_FILE and line.startswith(_GUARD_BEGIN):
                in_guard = True
            elif rel == _GUARD_FILE and line.startswith(_GUARD_END):
                in_guard = False
            if not _WORDS.search(line.replace(_GUARD_NAME, "")):
                continue
            if in_guard:
                guard_lines += 1
            elif not any(rel == f and s in line for f, s in _ALLOWED_MENTIONS):
                offenders.append(f"{rel}:{no}: {line.strip()}")
    assert not offenders, "non-commercial model names outside the licence guard:\n" + "\n".join(offenders)
    assert guard_lines >= 2  # the guard itself is still there
