"""Joint sets and mappings to H36M-17."""

from __future__ import annotations

import numpy as np
import pytest

from lbi_ros import skeleton as sk


def _kp(joint_set: sk.JointSet, rng: np.random.Generator, batch: tuple[int, ...] = ()) -> np.ndarray:
    kp = np.zeros(batch + (joint_set.num_joints, 3))
    kp[..., :2] = rng.uniform(0, 500, batch + (joint_set.num_joints, 2))
    kp[..., 2] = rng.uniform(0.3, 1.0, batch + (joint_set.num_joints,))
    return kp


def test_h36m_tree_and_flip() -> None:
    h = sk.H36M17
    assert h.num_joints == 17 and h.parents[0] == -1
    assert all(p < c for c, p in enumerate(h.parents) if p >= 0)  # parents precede children
    flip = np.array(h.flip_index)
    assert np.array_equal(flip[flip], np.arange(17))  # involution
    for a, b in zip(sk.H36M_LEFT, sk.H36M_RIGHT, strict=True):
        assert flip[a] == b and h.joint_names[a].replace("l_", "r_") == h.joint_names[b]
    assert len(h.bones) == 16


@pytest.mark.parametrize("name", sorted(sk.MAPPINGS))
def test_every_h36m_joint_is_defined_with_affine_rules(name: str) -> None:
    mapping = sk.MAPPINGS[name]
    assert len(mapping.alternatives) == 17
    for alts in mapping.alternatives:
        assert alts, f"{name}: an H36M joint has no rule"
        for idx, w in alts:
            assert np.isclose(w.sum(), 1.0)
            assert idx.max() < mapping.source.num_joints
    js = sk.get_joint_set(name)
    assert np.array_equal(np.array(js.flip_index)[list(js.flip_index)], np.arange(js.num_joints))


def test_identity_and_batch_shapes() -> None:
    rng = np.random.default_rng(0)
    kp = _kp(sk.H36M17, rng, (2, 3))
    assert np.allclose(sk.map_to_h36m(kp, "h36m17"), kp)
    out = sk.map_to_h36m(_kp(sk.COCO17, rng, (4,)), "coco17")
    assert out.shape == (4, 17, 3)


def test_coco17_synthesized_joints_and_confidence() -> None:
    rng = np.random.default_rng(1)
    kp = _kp(sk.COCO17, rng)
    c = {n: kp[sk.COCO17.index(n)] for n in sk.COCO17.joint_names}
    out = sk.map_to_h36m(kp, "coco17")
    h = {n: out[sk.H36M17.index(n)] for n in sk.H36M17.joint_names}
    mid_hips = 0.5 * (c["l_hip"][:2] + c["r_hip"][:2])
    mid_sh = 0.5 * (c["l_shoulder"][:2] + c["r_shoulder"][:2])
    assert np.allclose(h["pelvis"][:2], mid_hips)
    assert np.isclose(h["pelvis"][2], min(c["l_hip"][2], c["r_hip"][2]))
    assert np.allclose(h["thorax"][:2], mid_sh)
    assert np.allclose(h["spine"][:2], 0.5 * (mid_hips + mid_sh))
    assert np.isclose(h["spine"][2], min(c[n][2] for n in ("l_hip", "r_hip", "l_shoulder", "r_shoulder")))
    mid_ears = 0.5 * (c["l_ear"][:2] + c["r_ear"][:2])
    assert np.allclose(h["neck_nose"][:2], 0.5 * c["nose"][:2] + 0.5 * mid_ears)
    assert np.allclose(h["head"][:2], mid_ears + (2 / 3) * (mid_ears - mid_sh))
    assert np.allclose(h["l_wrist"], c["l_wrist"]) and np.allclose(h["r_knee"], c["r_knee"])


def test_missing_sources_propagate_and_fallbacks() -> None:
    rng = np.random.default_rng(2)
    kp = _kp(sk.COCO17, rng)
    kp[sk.COCO17.index("l_hip"), 2] = 0.0  # missing
    kp[sk.COCO17.index("r_ear"), 2] = 0.0
    out = sk.map_to_h36m(kp, "coco17")
    for name in ("pelvis", "spine", "l_hip"):
        assert np.all(out[sk.H36M17.index(name)] == 0.0), name
    assert out[sk.H36M17.index("thorax"), 2] > 0
    # neck_nose falls back to the nose, head to the eyes
    assert np.allclose(out[sk.H36M17.index("neck_nose")], kp[sk.COCO17.index("nose")])
    eyes = 0.5 * (kp[sk.COCO17.index("l_eye"), :2] + kp[sk.COCO17.index("r_eye"), :2])
    mid_sh = 0.5 * (kp[sk.COCO17.index("l_shoulder"), :2] + kp[sk.COCO17.index("r_shoulder"), :2])
    assert np.allclose(out[sk.H36M17.index("head"), :2], eyes + (2 / 3) * (eyes - mid_sh))
    kp_nan = _kp(sk.COCO17, rng)
    kp_nan[0, 0] = np.nan  # non-finite coordinates count as missing
    assert np.allclose(sk.map_to_h36m(kp_nan, "coco17")[sk.H36M17.index("neck_nose")],
                       sk.map_to_h36m(kp_nan, "coco17")[sk.H36M17.index("neck_nose")])
    assert np.isfinite(sk.map_to_h36m(kp_nan, "coco17")).all()


def test_coco18_thorax_falls_back_to_neck_and_mediapipe_names() -> None:
    rng = np.random.default_rng(3)
    kp = _kp(sk.COCO18, rng)
    kp[sk.COCO18.index("r_shoulder"), 2] = 0.0
    out = sk.map_to_h36m(kp, "coco18")
    assert np.allclose(out[sk.H36M17.index("thorax")], kp[sk.COCO18.index("neck")])
    assert sk.COCO18.joint_names[14:] == ("l_eye", "r_eye", "l_ear", "r_ear")  # hri_msgs order
    mp = _kp(sk.MEDIAPIPE33, rng)
    out = sk.map_to_h36m(mp, "mediapipe33")
    assert np.allclose(out[sk.H36M17.index("l_wrist")], mp[15])
    assert np.allclose(out[sk.H36M17.index("r_ankle")], mp[28])


def test_mpi_inf_3dhp_mapping_is_a_permutation() -> None:
    idx = [alts[0][0][0] for alts in sk.MAPPINGS["mpi_inf_3dhp17"].alternatives]
    assert sorted(idx) == list(range(17))


def test_rep155_frame_names() -> None:
    """Every TF link name is one REP-155's kinematic model of the human lists; joints it has no link for
    (H36M's top of the head) get none."""
    rep155_links = {"body", "waist", "torso", "head"} | {f"{side}_{joint}" for side in "lr" for joint in
                                                          ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")}
    names = sk.REP155_FRAME_NAMES
    named = [n for n in names if n is not None]
    assert len(names) == 17 and len(set(named)) == len(named) == 16
    assert set(named) <= rep155_links and not any(n.startswith("/") for n in named)
    assert names[0] == "body" and names[sk.H36M17.index("l_wrist")] == "l_wrist"
    assert names[sk.H36M17.index("spine")] == "waist" and names[sk.H36M17.index("thorax")] == "torso"
    assert names[sk.H36M17.index("neck_nose")] == "head" and names[sk.H36M17.index("head")] is None


def test_coco_dataset_keypoint_names_are_accepted_for_coco17() -> None:
    coco = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
            "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
            "right_knee", "left_ankle", "right_ankle")  # the COCO dataset's person_keypoints categories
    assert sk.COCO_DATASET_KEYPOINT_NAMES == coco
    assert sk.names_match(sk.COCO17, coco) and sk.names_match(sk.COCO17, sk.COCO17.joint_names)
    assert sk.names_match(sk.COCO17, [n.upper() for n in coco])  # case-insensitive
    assert not sk.names_match(sk.COCO17, coco[:5] + (coco[6], coco[5]) + coco[7:])  # shoulders swapped
    assert sk.joint_set_from_names(coco) is sk.COCO17 and sk.joint_set_from_names(("a", "b")) is None
    mediapipe = sk.JOINT_NAME_ALIASES["mediapipe33"][0]
    assert mediapipe[9:11] == ("mouth_left", "mouth_right") and mediapipe[31] == "left_foot_index"
    for joint_set in sk.JOINT_SETS.values():  # the aliases of different sets never collide
        assert sk.joint_set_from_names(joint_set.joint_names) is joint_set


def test_errors_are_clear() -> None:
    with pytest.raises(KeyError, match="known"):
        sk.get_joint_set("openpose25")
    with pytest.raises(KeyError, match="no mapping"):
        sk.map_to_h36m(np.zeros((25, 3)), "body25")
    with pytest.raises(ValueError, match=r"\(\.\.\., 17, C\+1\)"):
        sk.map_to_h36m(np.zeros((18, 3)), "coco17")


def test_flip_joints() -> None:
    j = np.arange(17 * 3, dtype=float).reshape(17, 3)
    f = sk.flip_joints(j)
    assert np.array_equal(f[1], j[4]) and np.array_equal(sk.flip_joints(f), j)
