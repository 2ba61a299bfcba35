"""The camera-only demo's peer comparison (lbi_ros.demo.peers) on constructed inputs: no ROS, no models."""

from __future__ import annotations

import numpy as np
import pytest

from lbi_ros.demo.peers import PeerComparison, compare_root_relative, lift2d_poses, world_pose_camera
from lbi_ros.demo.report import ReceivedPeople2D
from lbi_ros.demo.scene import INTRINSICS, SceneFrame
from lbi_ros.geometry import project
from lbi_ros.pipeline import FrameLift


def _people(rng: np.random.Generator, count: int) -> np.ndarray:
    """(count, 17, 3) camera-frame poses about 4 m in front of the camera, side by side (m)."""
    poses = rng.normal(0.0, 0.25, (count, 17, 3))
    poses[:, :, 2] += 4.0
    poses[:, :, 0] += np.linspace(-1.0, 1.0, count)[:, None]
    return poses


def test_comparison_is_root_relative_and_over_the_people_all_three_have():
    rng = np.random.default_rng(0)
    truth = {(i, pid): pose for i in range(3) for pid, pose in zip(("a", "b"), _people(rng, 2), strict=True)}
    bump = np.zeros((17, 3))
    bump[3, 0] = 0.05  # 50 mm on one of 17 joints
    # LBI: placed 1 m off but the right shape (root-relative error 0) plus the bump
    matched = [(i, pid, t + np.array([1.0, 0.0, 0.5]) + bump, t) for (i, pid), t in truth.items()]
    lift2d = {k: t + 2 * bump for k, t in truth.items()}
    peer = {k: t - t[0] + 3 * bump for k, t in truth.items() if k != (2, "b")}  # one person not found
    result = compare_root_relative(matched, lift2d, peer)
    assert isinstance(result, PeerComparison) and result.people == 5
    assert result.lbi == pytest.approx(50 / 17)
    assert result.lift2d == pytest.approx(100 / 17)
    assert result.blazepose_world == result.blazepose_world_without_offsets == pytest.approx(150 / 17)
    assert set(result.to_dict()) == {"lbi", "lift2d", "blazepose_world", "people", "blazepose_world_without_offsets"}
    offsets = np.zeros((17, 3))
    offsets[10] = [0.0, 0.2, 0.0]  # head 20 cm up in the person's frame: the headline number moves, the other not
    shifted = compare_root_relative(matched, lift2d, peer, offsets)
    assert shifted.blazepose_world != pytest.approx(result.blazepose_world)
    assert shifted.blazepose_world_without_offsets == pytest.approx(150 / 17) and shifted.lbi == result.lbi
    empty = compare_root_relative(matched, {}, peer)
    assert empty.people == 0 and np.isnan(empty.lbi)


def test_world_landmarks_become_a_root_relative_camera_pose():
    from lbi_ros.evaluation.peer import world_to_h36m

    world = np.random.default_rng(1).normal(0.0, 0.3, (33, 3))
    centre = np.array([INTRINSICS.cx, INTRINSICS.cy])
    straight = world_pose_camera(world, centre, None)
    np.testing.assert_allclose(straight, world_to_h36m(world[None])[0], atol=1e-12)  # on the axis: no rotation
    turned = world_pose_camera(world, centre + [250.0, 0.0], None)  # a rotation: distances kept, pelvis at 0
    np.testing.assert_allclose(turned[0], 0.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(turned, axis=-1), np.linalg.norm(straight, axis=-1), atol=1e-9)
    assert not np.allclose(turned, straight)
    offsets = np.zeros((17, 3))
    np.testing.assert_allclose(world_pose_camera(world, centre, offsets), straight, atol=1e-12)


class _Pipeline:
    """Stands in for LiftingPipeline: 'lifts' each person to a pose known from its first keypoint's u."""

    def __init__(self, poses: dict[str, np.ndarray]) -> None:
        self.poses = poses
        self.calls: list[int] = []

    def lift(self, image_rgb, intrinsics, people, joint_set):
        from lbi_ros.pipeline import PersonLift

        self.calls.append(len(people))
        z = np.zeros(17)
        return FrameLift(tuple(PersonLift(p.person_id, p.score, self.poses[p.person_id], self.poses[p.person_id], z, z,
                                          np.ones(17, bool), np.zeros(3), 0.0, 0.0) for p in people))


def test_lift2d_uses_the_recorded_2d_people_and_names_them_by_the_truth():
    rng = np.random.default_rng(2)
    truth = _people(rng, 2)
    uv = project(truth, INTRINSICS)  # (2, 17, 2)
    frame = SceneFrame(7, np.zeros((480, 640, 3), np.uint8), ("walker", "guide"), truth, np.zeros((2, 17, 3)))
    # the node's detections: ids of its own, in the other order, on the truth pixels
    detected = [ReceivedPeople2D(123, "h36m17", {"9": np.column_stack([uv[1], np.ones(17)]),
                                                 "4": np.column_stack([uv[0], np.ones(17)])})]
    pipeline = _Pipeline({"9": truth[1] + 0.01, "4": truth[0] + 0.02})
    out = lift2d_poses([frame], {7: 123}, detected, pipeline)
    assert pipeline.calls == [2]  # one call per frame, all people together, as the node lifts
    assert set(out) == {(7, "walker"), (7, "guide")}
    np.testing.assert_allclose(out[(7, "guide")], truth[1] + 0.01)
    assert lift2d_poses([frame], {7: 999}, detected, pipeline) == {}  # no 2D people recorded for that stamp
