"""Skeletons -> messages: Skeleton3DArray fields, stable markers per person, REP-155 TF frames."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from lbi_ros.pipeline import PersonLift
from lbi_ros.skeleton import H36M17

from .conftest import requires_ros

pytestmark = requires_ros
ROOT = Path(__file__).resolve().parents[1]


def person(pid: str, x: float = 0.0, valid=None) -> PersonLift:
    rng = np.random.default_rng(len(pid))
    rel = rng.normal(0, 0.3, (17, 3))
    rel[0] = 0
    rel[8] = (0, -0.5, 0)  # thorax above the pelvis (y down)
    rel[1], rel[4] = (-0.12, 0, 0), (0.12, 0, 0)  # r_hip at -x, l_hip at +x: the person faces the camera
    root = np.array([x, 0.2, 4.0])
    return PersonLift(pid, 0.9, rel + root, rel, np.full(17, 0.8), np.full(17, 0.05),
                      np.ones(17, bool) if valid is None else valid, root, 0.3, 1.5)


def header():
    from std_msgs.msg import Header

    h = Header(frame_id="cam_optical")
    h.stamp.sec, h.stamp.nanosec = 12, 345
    return h


def test_skeleton_array_message():
    from lbi_ros.ros.messages import skeletons_msg

    valid = np.ones(17, bool)
    valid[13] = False
    msg = skeletons_msg(header(), H36M17.joint_names, H36M17.parents, [person("a", valid=valid)])
    assert msg.header.stamp.sec == 12 and msg.header.frame_id == "cam_optical"
    assert list(msg.joint_names) == list(H36M17.joint_names) and list(msg.parents) == list(H36M17.parents)
    s = msg.skeletons[0]
    assert s.id == "a" and len(s.positions) == 17 and list(s.valid).count(False) == 1 and not s.valid[13]
    assert s.root.z == pytest.approx(4.0) and s.positions[0].z == pytest.approx(4.0)
    assert s.uncertainty[0] == pytest.approx(0.05) and s.root_depth_std == pytest.approx(0.3)


def test_markers_stable_ids_delete_and_deleteall():
    from visualization_msgs.msg import Marker

    from lbi_ros.ros.markers import SkeletonMarkers

    markers = SkeletonMarkers(H36M17.parents)
    first = markers.build(header(), [person("a"), person("b", 1.0)])
    assert [(m.ns, m.id, m.action) for m in first.markers] == [
        ("lbi/a", 0, Marker.ADD), ("lbi/a", 1, Marker.ADD), ("lbi/b", 0, Marker.ADD), ("lbi/b", 1, Marker.ADD)]
    assert len(first.markers[0].points) == 17 and len(first.markers[1].points) == 2 * 16
    second = markers.build(header(), [person("b", 1.0)])
    assert [(m.ns, m.id, m.action) for m in second.markers[:2]] == [("lbi/a", 0, Marker.DELETE), ("lbi/a", 1, Marker.DELETE)]
    assert [(m.ns, m.id) for m in second.markers[2:]] == [("lbi/b", 0), ("lbi/b", 1)]
    empty = markers.build(header(), [])
    assert [m.action for m in empty.markers] == [Marker.DELETEALL]


def test_invalid_joints_have_no_bones():
    from lbi_ros.ros.markers import SkeletonMarkers

    valid = np.ones(17, bool)
    valid[13] = False  # l_wrist: one bone (l_elbow -> l_wrist) goes
    bones = SkeletonMarkers(H36M17.parents).build(header(), [person("a", valid=valid)]).markers[1]
    assert len(bones.points) == 2 * 15


def test_tf_frames_rep155_names_and_body_orientation():
    from lbi_ros.ros.tf_frames import body_rotation, frame_suffix, skeleton_transforms
    from lbi_ros.skeleton import REP155_FRAME_NAMES

    p = person("p7")
    tf = skeleton_transforms(header(), [p])
    children = [t.child_frame_id for t in tf.transforms]
    # body + the 15 other joints REP-155 has a link for (H36M's top of head has none)
    assert children[0] == "body_p7" and "l_wrist_p7" in children and "head_p7" in children and len(children) == 16
    assert set(children[1:]) == {f"{n}_p7" for n in REP155_FRAME_NAMES[1:] if n is not None}
    assert all(t.header.stamp.sec == 12 and t.header.stamp.nanosec == 345 for t in tf.transforms)
    # REP-155: body_<id> hangs off the camera frame, every joint frame off body_<id>
    assert tf.transforms[0].header.frame_id == "cam_optical"
    assert all(t.header.frame_id == "body_p7" for t in tf.transforms[1:])
    body = tf.transforms[0].transform
    assert body.translation.z == pytest.approx(4.0)
    q = np.array([body.rotation.x, body.rotation.y, body.rotation.z, body.rotation.w])
    assert np.linalg.norm(q) == pytest.approx(1.0)
    r = body_rotation(p.joints_cam_m)
    np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-9)
    assert np.linalg.det(r) == pytest.approx(1.0)
    # facing the camera: body x (forward) points back at the camera (-z), body z (up) is camera -y
    assert r[2, 0] < -0.9 and r[1, 2] < -0.9
    # chaining camera -> body -> joint gives the joint's camera-frame position back
    by_name = {t.child_frame_id: t.transform.translation for t in tf.transforms}
    for j, stem in enumerate(REP155_FRAME_NAMES):
        if stem is None or j == 0:
            continue
        local = by_name[f"{stem}_p7"]
        np.testing.assert_allclose(p.joints_cam_m[0] + r @ [local.x, local.y, local.z], p.joints_cam_m[j], atol=1e-9)
    assert frame_suffix("") == frame_suffix("") != ""
    no_joints = skeleton_transforms(header(), [person("a")], joint_frames=False)
    assert [t.child_frame_id for t in no_joints.transforms] == ["body_a"]


def test_sanitised_person_ids_never_share_frames():
    from lbi_ros.ros.tf_frames import _UNSAFE, frame_suffix, frame_suffixes, skeleton_transforms

    ids = ["a/b", "a b", "a_b", "a.b", "", "ü"]  # all but "a_b" sanitise to "a_b" or "_" / ""
    suffixes = frame_suffixes(ids)
    assert len(set(suffixes)) == len(ids) and suffixes[2] == "a_b"  # a safe id keeps its name
    assert all(not _UNSAFE.search(s) and s for s in suffixes)
    assert frame_suffixes(list(reversed(ids))) == list(reversed(suffixes))  # deterministic, order-free
    assert frame_suffixes(["a b"]) == [frame_suffix("a b")] == [suffixes[1]]  # the same id, the same name
    impostor = frame_suffix("a/b")  # an id that is literally another id's sanitised form
    assert len(set(frame_suffixes(["a/b", impostor]))) == 2
    tf = skeleton_transforms(header(), [person(i, x=k) for k, i in enumerate(ids)], joint_frames=False)
    assert len({t.child_frame_id for t in tf.transforms}) == len(ids)


def test_quaternion_round_trip():
    from lbi_ros.ros.tf_frames import rotation_to_quaternion

    rng = np.random.default_rng(0)
    for _ in range(50):
        q = rng.normal(size=4)
        x, y, z, w = q / np.linalg.norm(q)
        r = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                      [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                      [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
        out = np.array(rotation_to_quaternion(r))
        assert min(np.abs(out - [x, y, z, w]).max(), np.abs(out + [x, y, z, w]).max()) < 1e-9


def test_launch_file_is_valid_python_with_the_node():
    tree = ast.parse((ROOT / "launch" / "lift.launch.py").read_text())
    names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in names
    text = (ROOT / "launch" / "lift.launch.py").read_text()
    assert 'executable="lift_node"' in text and "lift.yaml" in text
    assert (ROOT / "scripts" / "lift_node").is_file()


def test_lift_yaml_matches_the_declared_parameters():
    import yaml

    from lbi_ros.ros.parameters import PARAMETERS, check_value

    values = yaml.safe_load((ROOT / "config" / "lift.yaml").read_text())["lbi_lifter"]["ros__parameters"]
    assert values == {spec.name: spec.default for spec in PARAMETERS}
    assert all(check_value(k, v) is None for k, v in values.items())
    assert "outside" in check_value("max_people", 0) and "unknown" in check_value("backend", "cuda")
    assert "must be a bool" in check_value("publish_tf", 1)
    assert check_value("precision", "int8") is None and "unknown" in check_value("precision", "int4")
