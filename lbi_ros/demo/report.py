"""Score what the node published against the demo scene's ground truth, and draw the demo picture.

Pure numpy/matplotlib: the ROS recorder converts the received messages into :class:`ReceivedSkeletons`
and hands them here. Metrics come from :mod:`lbi_ros.metrics` (the same code as ``lbi eval``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lbi_ros import metrics
from lbi_ros.demo.scene import INTRINSICS, SceneFrame
from lbi_ros.geometry import project
from lbi_ros.skeleton import H36M17


@dataclass(frozen=True)
class ReceivedSkeletons:
    """One Skeleton3DArray as received: stamp, local receive time, and per person id -> (17, 3) metres."""

    stamp_ns: int
    received_ns: int
    people: dict[str, np.ndarray]


@dataclass(frozen=True)
class DemoMetrics:
    """What ``lbi demo`` reports (``--json`` writes these keys). Distances in mm, latencies in ms.

    ``latency_*``: image stamp (set when the camera publishes) to the skeleton's arrival in the
    recorder, i.e. end to end through DDS, the node and back. ``relay_latency_*``: the same through a
    bare relay node on the same inputs in the same run. ``node_added_*``: percentiles of the per-frame
    difference lifter latency - relay latency, over the ``node_added_pairs`` frames both answered (the
    same image, so the same transport to both; a difference of percentiles of unpaired sets means nothing).
    """

    frames_in: int
    frames_out: int
    people_expected: int
    people_lifted: int
    mpjpe_mm: float
    p_mpjpe_mm: float
    pck150: float
    position_error_mm: float
    depth_error_mm: float
    latency_p50_ms: float
    latency_p99_ms: float
    max_output_lag_frames: int
    relay_latency_p50_ms: float = float("nan")
    relay_latency_p99_ms: float = float("nan")
    node_added_p50_ms: float = float("nan")
    node_added_p99_ms: float = float("nan")
    node_added_pairs: int = 0

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _percentiles(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return float(np.median(values)), float(np.percentile(values, 99))


def score(frames: Sequence[SceneFrame], stamps: dict[int, int], received: Sequence[ReceivedSkeletons],
          relay: Sequence[ReceivedSkeletons] = (), rate_hz: float = 30.0
          ) -> tuple[DemoMetrics, list[tuple[int, str, np.ndarray, np.ndarray]]]:
    """Match outputs to frames by stamp and people by id; returns metrics and the matched poses.

    Matched poses are (frame index, person id, predicted (17, 3), true (17, 3)), camera frame, metres.
    """
    by_stamp = {r.stamp_ns: r for r in received}
    matched: list[tuple[int, str, np.ndarray, np.ndarray]] = []
    latencies: list[float] = []
    expected, with_output = 0, 0
    for frame in frames:
        stamp = stamps.get(frame.index)
        if stamp is None:
            continue
        expected += len(frame.person_ids)
        out = by_stamp.get(stamp)
        if out is None:
            continue
        with_output += 1
        latencies.append((out.received_ns - stamp) / 1e6)
        for person_id, truth in zip(frame.person_ids, frame.joints_cam_m, strict=True):
            if person_id in out.people:
                matched.append((frame.index, person_id, out.people[person_id], truth))
    played = set(stamps.values())
    relay_latency = {r.stamp_ns: (r.received_ns - r.stamp_ns) / 1e6 for r in relay if r.stamp_ns in played}
    lifter_latency = {r.stamp_ns: (r.received_ns - r.stamp_ns) / 1e6 for r in received if r.stamp_ns in played}
    node_added = [lifter_latency[s] - relay_latency[s] for s in sorted(lifter_latency.keys() & relay_latency.keys())]
    nan = float("nan")
    if matched:
        pred = np.stack([m[2] for m in matched])
        true = np.stack([m[3] for m in matched])
        root_err = np.linalg.norm(pred[:, 0] - true[:, 0], axis=-1)
        depth_err = np.abs(pred[:, 0, 2] - true[:, 0, 2])
        values = (1000 * float(metrics.mpjpe(pred, true, root_index=0)), 1000 * float(metrics.p_mpjpe(pred, true)),
                  float(metrics.pck(pred, true, root_index=0)), 1000 * float(root_err.mean()),
                  1000 * float(depth_err.mean()))
    else:
        values = (nan,) * 5
    lat50, lat99 = _percentiles(latencies)
    relay50, relay99 = _percentiles(list(relay_latency.values()))
    added50, added99 = _percentiles(node_added)
    lag = int(np.ceil(max(latencies) / 1000 * rate_hz)) if latencies else -1  # frames behind the input
    return DemoMetrics(len(stamps), with_output, expected, len(matched), *values, lat50, lat99, lag,
                       relay50, relay99, added50, added99, len(node_added)), matched


def draw(frame: SceneFrame, predicted: dict[str, np.ndarray], result: DemoMetrics, path: str | Path,
         backend: str = "") -> Path:
    """The demo picture: the camera image with the 2D input, and a top view of true vs lifted 3D."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bones = [(j, p) for j, p in enumerate(H36M17.parents) if p >= 0]
    fig, (ax_img, ax_top) = plt.subplots(1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [1.25, 1]})
    ax_img.imshow(frame.image_rgb)
    for kp in frame.keypoints_px:
        ok = kp[:, 2] > 0
        for j, p in bones:
            if ok[j] and ok[p]:
                ax_img.plot(kp[[j, p], 0], kp[[j, p], 1], "-", color="yellow", lw=1.5)
    for person_id, pose in predicted.items():
        uv = project(pose, INTRINSICS)
        for j, p in bones:
            ax_img.plot(uv[[j, p], 0], uv[[j, p], 1], "-", color="cyan", lw=1.0, alpha=0.8)
        ax_img.text(uv[10, 0], uv[10, 1] - 8, person_id, color="white", fontsize=9, ha="center",
                    bbox={"facecolor": "black", "alpha": 0.5, "pad": 1})
    ax_img.set_title("input: image + noisy 2D keypoints (yellow); lifted 3D reprojected (cyan)", fontsize=9)
    ax_img.axis("off")
    for truth in frame.joints_cam_m:
        for j, p in bones:
            ax_top.plot(truth[[j, p], 0], truth[[j, p], 2], "-", color="green", lw=2, alpha=0.6)
    for pose in predicted.values():
        for j, p in bones:
            ax_top.plot(pose[[j, p], 0], pose[[j, p], 2], "-", color="red", lw=1.2)
    ax_top.plot([0], [0], "k^", ms=10)
    ax_top.set_xlabel("x (m, camera right)")
    ax_top.set_ylabel("z (m, camera forward)")
    ax_top.set_title("top view: ground truth (green) vs lifted, metric camera frame (red)", fontsize=9)
    ax_top.set_xlim(-3.5, 3.5)
    ax_top.set_ylim(0.0, 8.0)  # the scene; a wildly misplaced person is off the plot, not rescaling it
    ax_top.set_aspect("equal")
    ax_top.grid(alpha=0.3)
    fig.suptitle(f"lbi_ros demo ({backend}): MPJPE {result.mpjpe_mm:.0f} mm, position error "
                 f"{result.position_error_mm:.0f} mm, latency p50 {result.latency_p50_ms:.0f} ms / p99 "
                 f"{result.latency_p99_ms:.0f} ms, "
                 f"{result.people_lifted}/{result.people_expected} people lifted", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


@dataclass(frozen=True)
class ReceivedPeople2D:
    """One Person2DArray as received (``--keypoints builtin``: the node's own detections): stamp, topology,
    per person id -> (J, 3) [u, v, confidence] pixels."""

    stamp_ns: int
    joint_set: str
    people: dict[str, np.ndarray]


def score_detections(frames: Sequence[SceneFrame], stamps: dict[int, int], detected: Sequence[ReceivedPeople2D],
                     received: Sequence[ReceivedSkeletons]):
    """The node's 2D people against the rendered truth (:mod:`lbi_ros.benchmarks.detector_eval`), and the
    skeletons relabelled with the truth id of the 2D person they came from (ids pass through the node), so
    :func:`score` can score them in 3D; a skeleton of an unmatched detection is left out.

    Returns (Detection2DMetrics, relabelled skeletons). Frames the node published no 2D people for count
    as frames where every present person was missed.
    """
    from lbi_ros.benchmarks.detector_eval import Detection2DScore
    from lbi_ros.demo.scene import IMAGE_HEIGHT, IMAGE_WIDTH

    by_stamp = {d.stamp_ns: d for d in detected}
    scorer = Detection2DScore(IMAGE_WIDTH, IMAGE_HEIGHT)
    names: dict[int, dict[str, str]] = {}  # stamp -> detected id -> truth id
    for frame in frames:
        stamp = stamps.get(frame.index)
        if stamp is None:
            continue
        found = by_stamp.get(stamp)
        ids = list(found.people) if found else []
        truth_uv = project(frame.joints_cam_m, INTRINSICS)  # (P, 17, 2), noise-free
        matches = scorer.add_frame([found.people[i] for i in ids] if found else [],
                                   found.joint_set if found else "mediapipe33", truth_uv, frame.joints_cam_m[..., 2])
        names[stamp] = {ids[i]: frame.person_ids[p] for i, p in matches}
    relabelled = [ReceivedSkeletons(r.stamp_ns, r.received_ns,
                                    {names[r.stamp_ns][pid]: pose for pid, pose in r.people.items()
                                     if pid in names.get(r.stamp_ns, {})})
                  for r in received if r.stamp_ns in names]
    return scorer.result(), relabelled
