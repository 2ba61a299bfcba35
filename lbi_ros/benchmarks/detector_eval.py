"""How well a 2D person detector finds rendered people: recall, precision, 2D error and PCK against the truth.

Used by ``lbi demo --keypoints builtin`` (the node's own detector in the ROS graph) and by
``lbi bench detector`` (the detector alone on rendered frames). Pure numpy.

Protocol:

* **Truth**: each person's 17 H36M joints projected without noise (the rendered truth). A person is
  *present* when at least ``MIN_VISIBLE_JOINTS`` of them lie in front of the camera and inside the image.
* **Joints scored**: the COCO-mappable ones, i.e. the H36M joints with a same-named COCO-17 twin
  (shoulders, elbows, wrists, hips, knees, ankles: 12). A detection's joint is taken by name from its own
  topology (MediaPipe-33, COCO-17, ...), never synthesised.
* **Matching** (by 2D proximity): cost = mean pixel distance over the scored joints the detection has
  (confidence > 0) divided by the truth person's box size (longer side of the box around its 17 projected
  joints); pairs are taken greedily by increasing cost, one-to-one, while the cost is below
  ``max_match_cost`` (0.5: half a body). Recall = matched / present, precision = matched / detections.
* **2D error**: over matched pairs, the mean pixel distance of the scored joints the detection has and the
  truth has inside the image; **PCK@0.1**: the percentage of the truth's in-image scored joints that the
  detection has within 0.1 x box size (a joint the detection lacks counts as a miss).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lbi_ros.geometry import rotation_matrix
from lbi_ros.skeleton import COCO17, H36M17, get_joint_set

SCORED_JOINTS: tuple[str, ...] = tuple(n for n in H36M17.joint_names if n in COCO17.joint_names)
SCORED_H36M_INDEX = np.array([H36M17.index(n) for n in SCORED_JOINTS])
MIN_VISIBLE_JOINTS = 6
PCK_FRACTION = 0.1
MAX_MATCH_COST = 0.5


@dataclass(frozen=True)
class Detection2DMetrics:
    """People counts, recall/precision (0..1), mean 2D error (px) and PCK@0.1 (0..100) over matched people."""

    frames: int
    people_present: int
    detections: int
    people_matched: int
    recall: float
    precision: float
    error_2d_px: float
    pck_2d: float
    joints_scored: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def box_size(uv: np.ndarray) -> float:
    """Longer side (px) of the box around (J, 2) points."""
    return float(np.max(uv.max(axis=0) - uv.min(axis=0)))


def _scored(keypoints: np.ndarray, joint_set: str) -> np.ndarray:
    """(J, 3) keypoints in ``joint_set`` -> (12, 3) the scored joints, by name."""
    js = get_joint_set(joint_set)
    return np.asarray(keypoints, dtype=np.float64)[[js.index(n) for n in SCORED_JOINTS]]


@dataclass
class Detection2DScore:
    """Accumulates frames; :meth:`result` gives the metrics. ``width``/``height``: the image size (px)."""

    width: int
    height: int
    max_match_cost: float = MAX_MATCH_COST
    _counts: dict[str, int] = field(default_factory=lambda: {"frames": 0, "present": 0, "detections": 0,
                                                             "matched": 0, "joints": 0, "hits": 0})
    _errors: list[float] = field(default_factory=list)

    def inside(self, uv: np.ndarray) -> np.ndarray:
        return (uv[..., 0] >= -0.5) & (uv[..., 0] <= self.width - 0.5) & (uv[..., 1] >= -0.5) & \
            (uv[..., 1] <= self.height - 0.5)

    def add_frame(self, detections: Sequence[np.ndarray], joint_set: str, truth_uv: np.ndarray,
                  truth_depth: np.ndarray | None = None) -> list[tuple[int, int]]:
        """One frame: ``detections`` (J, 3) [u, v, conf] each in ``joint_set``; ``truth_uv`` (P, 17, 2) H36M
        pixels; ``truth_depth`` (P, 17) camera z (m) to drop joints behind the camera. Returns the matches
        (detection index, truth index); truth people that are not present are never matched."""
        truth_uv = np.asarray(truth_uv, dtype=np.float64).reshape(-1, H36M17.num_joints, 2)
        visible = self.inside(truth_uv)
        if truth_depth is not None:
            visible &= np.asarray(truth_depth).reshape(visible.shape) > 0
        present = [p for p in range(len(truth_uv)) if visible[p].sum() >= MIN_VISIBLE_JOINTS]
        sizes = {p: box_size(truth_uv[p]) for p in present}
        dets = [_scored(d, joint_set) for d in detections]  # (12, 3) each
        costs = []
        for i, det in enumerate(dets):
            has = det[:, 2] > 0
            if has.sum() < 2:
                continue
            for p in present:
                dist = np.linalg.norm(det[has, :2] - truth_uv[p, SCORED_H36M_INDEX][has], axis=1)
                costs.append((float(dist.mean()) / max(sizes[p], 1.0), i, p))
        matches, used_d, used_t = [], set(), set()
        for cost, i, p in sorted(costs):
            if cost < self.max_match_cost and i not in used_d and p not in used_t:
                matches.append((i, p))
                used_d.add(i)
                used_t.add(p)
        c = self._counts
        c["frames"] += 1
        c["present"] += len(present)
        c["detections"] += len(dets)
        c["matched"] += len(matches)
        for i, p in matches:
            truth = truth_uv[p, SCORED_H36M_INDEX]  # (12, 2)
            scored = visible[p, SCORED_H36M_INDEX]
            dist = np.linalg.norm(dets[i][:, :2] - truth, axis=1)
            has = dets[i][:, 2] > 0
            self._errors.extend(dist[scored & has].tolist())
            c["joints"] += int(scored.sum())
            c["hits"] += int((scored & has & (dist <= PCK_FRACTION * sizes[p])).sum())
        return matches

    def result(self) -> Detection2DMetrics:
        c = self._counts
        nan = float("nan")
        return Detection2DMetrics(
            frames=c["frames"], people_present=c["present"], detections=c["detections"], people_matched=c["matched"],
            recall=c["matched"] / c["present"] if c["present"] else nan,
            precision=c["matched"] / c["detections"] if c["detections"] else nan,
            error_2d_px=float(np.mean(self._errors)) if self._errors else nan,
            pck_2d=100.0 * c["hits"] / c["joints"] if c["joints"] else nan, joints_scored=c["joints"])


# ---------------------------------------------------------------------------------------------------------
# `lbi bench detector`: the built-in detector on rendered held-out frames
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectorEvalResult:
    metrics: Detection2DMetrics
    detector_ms_median: float
    detector_ms_p90: float
    people_histogram: dict[int, int]  # people in the frame -> frames


def _yaw(joints: np.ndarray, toes: np.ndarray, angle: float, floor_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Turn a world pose (Z up) by ``angle`` about the vertical through its root, then put the root above
    ``floor_xy``."""
    rot = rotation_matrix("z", angle)
    root = joints[0] * np.array([1.0, 1.0, 0.0])
    move = np.array([floor_xy[0], floor_xy[1], 0.0])
    return (joints - root) @ rot.T + move, (toes - root) @ rot.T + move


def evaluate_detector(mocap_dir: str, frames: int = 500, seed: int = 0, max_people: int = 3,
                      split: str = "test", identity_every: int = 5) -> DetectorEvalResult:
    """The built-in detector (:class:`~lbi_ros.pose2d.keypoint_source.BuiltinKeypoints`, each frame on its
    own) on ``frames`` rendered 640 x 480 frames: 1..``max_people`` mesh people in held-out appearance
    (garments, hair, body shapes) doing motion from ``split`` of the mocap cache at ``mocap_dir``, at random
    floor positions 3-7 m from the demo scene's camera, turned to random headings (so some face away);
    a new set of identities every ``identity_every`` frames. Seeded: the same arguments give the same frames.
    """
    from lbi_ros.demo.scene import IMAGE_HEIGHT, IMAGE_WIDTH, INTRINSICS, camera_extrinsics
    from lbi_ros.geometry import project
    from lbi_ros.mocap.cache import load_mocap_cache
    from lbi_ros.mocap.poses import MocapPoseSource
    from lbi_ros.pose2d.keypoint_source import BuiltinKeypoints
    from lbi_ros.render.capsule.body_model import RenderConfig
    from lbi_ros.render.capsule.renderer import PersonRenderer, add_sensor_noise, scene_background
    from lbi_ros.render.mesh.mesh_people import MeshBodyConfig, MeshPeople
    from lbi_ros.render.mesh.mesh_raster import composite

    if frames < 1 or not 1 <= max_people <= 6:
        raise ValueError(f"need frames >= 1 and 1 <= max_people <= 6, got {frames}, {max_people}")
    poses = MocapPoseSource(load_mocap_cache(mocap_dir), split, sampling="content")
    rotation, translation = camera_extrinsics()

    class _Camera:  # what MeshPeople.draw needs of a camera
        @staticmethod
        def world_to_camera(points: np.ndarray) -> np.ndarray:
            return points @ rotation.T + translation

    mesh = MeshPeople(MeshBodyConfig(fraction=1.0, appearance="heldout", identities_cached=max_people))
    renderer = PersonRenderer(RenderConfig(occluder_prob=0.0, blur_prob=0.0))
    source = BuiltinKeypoints()
    score = Detection2DScore(IMAGE_WIDTH, IMAGE_HEIGHT)
    times: list[float] = []
    histogram: dict[int, int] = {}
    for i in range(frames):
        rng = np.random.default_rng([seed, i])
        count = int(rng.integers(1, max_people + 1))
        spots: list[np.ndarray] = []
        while len(spots) < count:  # floor positions at least 0.7 m apart
            xy = np.array([rng.uniform(-1.8, 1.8), rng.uniform(-0.6, 3.2)])
            if all(np.linalg.norm(xy - s) > 0.7 for s in spots):
                spots.append(xy)
        posed = []
        for k, xy in enumerate(spots):
            joints, toes = _yaw(*poses.sample(rng), rng.uniform(-np.pi, np.pi), xy)
            posed.append(mesh.pose(mesh.identity((seed, i // identity_every, k, 7_001)), joints, toes))
        layer = mesh.draw(posed, _Camera, INTRINSICS, IMAGE_HEIGHT, IMAGE_WIDTH, rng)
        background = scene_background(renderer, int(rng.integers(1 << 30)), IMAGE_HEIGHT, IMAGE_WIDTH)
        image = add_sensor_noise(renderer, composite(layer, background), rng)
        truth_cam = np.stack([_Camera.world_to_camera(p.joints) for p in posed])  # (P, 17, 3)
        source.reset()
        detected = source(image)
        times.append(sum(detected.timings_ms.values()))
        score.add_frame([p.keypoints_px for p in detected.people], detected.joint_set,
                        project(truth_cam, INTRINSICS), truth_cam[..., 2])
        histogram[count] = histogram.get(count, 0) + 1
    return DetectorEvalResult(score.result(), float(np.median(times)), float(np.percentile(times, 90)),
                              dict(sorted(histogram.items())))


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="mocap cache folder (lbi data prepare-mocap)")
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--max-people", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the result here")


def run(args) -> int:
    import json

    result = evaluate_detector(args.data, frames=args.frames, seed=args.seed, max_people=args.max_people)
    m = result.metrics
    print(f"frames {m.frames} (people per frame: {result.people_histogram}); held-out motion and appearance")
    print(f"recall {m.recall:.3f} ({m.people_matched}/{m.people_present}), precision {m.precision:.3f} "
          f"({m.people_matched}/{m.detections})")
    print(f"COCO-mappable joints of matched people: mean error {m.error_2d_px:.1f} px, PCK@0.1 box {m.pck_2d:.1f} %")
    print(f"detector time per frame: median {result.detector_ms_median:.1f} ms, p90 {result.detector_ms_p90:.1f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps({**asdict(result), "metrics": m.to_dict()}, indent=2))
    return 0
