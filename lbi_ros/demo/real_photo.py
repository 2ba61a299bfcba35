"""Both shipped lifters on one real photograph: scikit-image's ``astronaut()`` with hand-annotated 2D keypoints.

Why: every other demo and metric uses rendered crops, which is what the image branch was trained on. This
is the one check on a real photo (a NASA portrait of Eileen Collins, public domain, shipped with
scikit-image). It goes through :class:`~lbi_ros.pipeline.LiftingPipeline`, the node's code path. The 2D
keypoints are a hand-made COCO-17 fixture, ``test/fixtures/astronaut_coco17.json``; the fixture records
how they were annotated. It lives in the source tree, so this module needs a checkout, or ``--keypoints``.

The photo has no calibration. :func:`assumed_intrinsics` takes a pinhole with fx = fy = 1.2 x width
(about 45 deg horizontal field of view, a 43 mm lens on a 36 mm-wide frame) and the principal point at
the centre. Depths scale linearly with that guess. Bone lengths and the left/right and depth ordering
do not depend on it.

Run: ``python -m lbi_ros.demo.real_photo --out docs/real_photo.png``
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lbi_ros.geometry import Intrinsics, project
from lbi_ros.input_checks import InputLimits, PersonKeypoints, clean_person
from lbi_ros.pipeline import LiftingPipeline, PersonLift
from lbi_ros.skeleton import COCO17, H36M17, H36M_LEFT, H36M_RIGHT

FIXTURE_PATH = Path(__file__).resolve().parents[2] / "test" / "fixtures" / "astronaut_coco17.json"
FOCAL_SCALE = 1.2  # fx = fy = FOCAL_SCALE x image width (px): an assumed normal lens, see module doc
MODELS = {"LBI": "default", "2D-only": "baseline-2d"}  # figure label -> shipped weights name


@dataclass(frozen=True)
class PhotoLift:
    """One run on the photo. ``image`` (H, W, 3) uint8 RGB; ``keypoints_px`` (17, 3) COCO-17 [u, v, conf];
    ``people`` label -> PersonLift (``joints_cam_m`` (17, 3) H36M-17, camera optical frame, metres)."""

    image: np.ndarray
    keypoints_px: np.ndarray
    intrinsics: Intrinsics
    people: dict[str, PersonLift]


def load_photo() -> np.ndarray:
    """The astronaut photo, (512, 512, 3) uint8 RGB. scikit-image is a pinned dev dependency (requirements/dev.txt)."""
    try:
        import skimage.data
    except ImportError as exc:
        raise ImportError("scikit-image is needed for the real-photo demo: pip install -r requirements/dev.txt") from exc
    return np.ascontiguousarray(skimage.data.astronaut())


def load_keypoints(path: str | Path = FIXTURE_PATH, image_size: tuple[int, int] = (512, 512)) -> np.ndarray:
    """Read and validate the COCO-17 fixture -> (17, 3) float64 [u px, v px, conf].

    ``image_size`` is (width, height). Raises ValueError if the joint order, the shape, the confidences or
    the image size disagree with the fixture, or if a joint is off the image: a wrong fixture should fail
    loudly, not be cleaned quietly.
    """
    data = json.loads(Path(path).read_text())
    if data.get("joint_set") != "coco17" or tuple(data.get("joint_names", ())) != COCO17.joint_names:
        raise ValueError(f"{path}: expected COCO-17 joints in order {COCO17.joint_names}")
    if tuple(data.get("image_size", ())) != tuple(image_size):
        raise ValueError(f"{path}: annotated on a {data.get('image_size')} image, not {image_size}")
    kp = np.asarray(data["keypoints_px"], dtype=np.float64)
    if kp.shape != (COCO17.num_joints, 3) or not np.all(np.isfinite(kp)):
        raise ValueError(f"{path}: keypoints must be finite, shape (17, 3), got {kp.shape}")
    if np.any((kp[:, 2] < 0) | (kp[:, 2] > 1)):
        raise ValueError(f"{path}: confidences must lie in [0, 1]")
    _, problems = clean_person(kp, image_size, InputLimits())
    if problems:
        raise ValueError(f"{path}: {[p.message for p in problems]}")
    return kp


def assumed_intrinsics(width: int, height: int, focal_scale: float = FOCAL_SCALE) -> Intrinsics:
    """Pinhole guess for an uncalibrated photo: fx = fy = focal_scale x width px, centred principal point."""
    f = focal_scale * width
    return Intrinsics(fx=f, fy=f, cx=(width - 1) / 2, cy=(height - 1) / 2)


def lift_photo(backend: str = "torch", keypoints_path: str | Path = FIXTURE_PATH,
               focal_scale: float = FOCAL_SCALE) -> PhotoLift:
    """Run both shipped models through LiftingPipeline on the photo and the fixture.

    ``backend`` is ``torch`` or ``onnxruntime``. Raises RuntimeError if a model drops the person; the
    pipeline's problem list goes into the message.
    """
    from lbi_ros.runtime.factory import create_backend

    image = load_photo()
    height, width = image.shape[:2]
    keypoints = load_keypoints(keypoints_path, (width, height))
    intrinsics = assumed_intrinsics(width, height, focal_scale)
    people: dict[str, PersonLift] = {}
    for label, weights in MODELS.items():
        pipeline = LiftingPipeline(create_backend(weights, backend, device="cpu", threads=1))
        frame = pipeline.lift(image, intrinsics, [PersonKeypoints("astronaut", 1.0, keypoints)], joint_set="coco17")
        if len(frame.people) != 1:
            raise RuntimeError(f"{label}: the pipeline lifted no person: {[p.message for p in frame.problems]}")
        people[label] = frame.people[0]
    return PhotoLift(image, keypoints, intrinsics, people)


def grey_image_shift(result: PhotoLift, backend: str = "torch") -> dict[str, tuple[float, float]]:
    """How far each model's root-relative joints move when the photo is replaced by a uniform grey image
    (the same keypoints): label -> (mean, max) over joints, metres. 0 for a model that ignores the image;
    a small value says the image branch barely reads this photo."""
    from lbi_ros.runtime.factory import create_backend

    grey = np.full_like(result.image, 128)
    people = [PersonKeypoints("astronaut", 1.0, result.keypoints_px)]
    shifts = {}
    for label, weights in MODELS.items():
        pipeline = LiftingPipeline(create_backend(weights, backend, device="cpu", threads=1))
        lifted = pipeline.lift(grey, result.intrinsics, people, joint_set="coco17").people[0].joints_rel_m
        distance = np.linalg.norm(lifted - result.people[label].joints_rel_m, axis=-1)  # (17,) m
        shifts[label] = (float(distance.mean()), float(distance.max()))
    return shifts


def _draw_bones(ax, pts: np.ndarray, valid: np.ndarray, lw: float = 2.0) -> None:
    """Bones of (17, 2) points: left blue, right red, midline grey. Solid if both ends were in the 2D
    input; dashed if the model had to invent an end (a joint missing in 2D)."""
    for child, parent in enumerate(H36M17.parents):
        if parent < 0:
            continue
        color = "tab:blue" if child in H36M_LEFT else "tab:red" if child in H36M_RIGHT else "0.3"
        ax.plot(pts[[parent, child], 0], pts[[parent, child], 1], "-" if valid[child] and valid[parent] else "--",
                color=color, lw=lw)
    ax.plot(pts[valid, 0], pts[valid, 1], "k.", ms=4)


def draw_figure(result: PhotoLift, path: str | Path = "docs/real_photo.png") -> Path:
    """Save the figure: the photo with the 2D input and each model's reprojection; then front (x-y) and side
    (z-y) views of both 3D skeletons, one row per model. All 3D panels share limits (camera frame, m)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(15, 7.2))
    grid = fig.add_gridspec(len(result.people), 3, width_ratios=[1.35, 1, 1])
    ax_img = fig.add_subplot(grid[:, 0])
    ax_img.imshow(result.image)
    kp = result.keypoints_px
    for a, b in COCO17.edges:
        if kp[a, 2] > 0 and kp[b, 2] > 0:
            ax_img.plot(kp[[a, b], 0], kp[[a, b], 1], "-", color="yellow", lw=2.5)
    shown = kp[:, 2] > 0
    ax_img.plot(kp[shown, 0], kp[shown, 1], "o", mfc="yellow", mec="k", ms=5)
    styles = dict(zip(result.people, ("c", "m", "g", "b"), strict=False))
    for label, person in result.people.items():
        uv = np.asarray(project(person.joints_cam_m, result.intrinsics))
        for child, parent in enumerate(H36M17.parents):
            if parent >= 0:
                ax_img.plot(uv[[parent, child], 0], uv[[parent, child], 1], "-", color=styles[label], lw=1.2)
        ax_img.plot([], [], "-", color=styles[label], label=f"{label} 3D reprojected")
    ax_img.plot([], [], "-", color="yellow", label="2D input (hand-annotated COCO-17)")
    ax_img.set_xlim(0, result.image.shape[1])
    ax_img.set_ylim(result.image.shape[0] + 130, -10)  # room below the frame: reprojected hips/legs land there
    ax_img.legend(loc="lower right", fontsize=7)
    ax_img.set_title(f"skimage.data.astronaut() (NASA, public domain)\nassumed pinhole f = {result.intrinsics.fx:.0f}"
                     f" px, principal point at the centre", fontsize=9)
    ax_img.set_adjustable("box")  # exact limits: the panel shrinks to fit the photo + margin
    ax_img.axis("off")

    allpts = np.concatenate([p.joints_cam_m for p in result.people.values()])
    lo, hi = allpts.min(0) - 0.08, allpts.max(0) + 0.08
    y_lim = (hi[1], lo[1])  # y down in the camera frame: flip so the head is at the top
    span = max(hi[0] - lo[0], hi[2] - lo[2], hi[1] - lo[1]) / 2
    x_mid, z_mid = (lo[0] + hi[0]) / 2, (lo[2] + hi[2]) / 2
    for row, (label, person) in enumerate(result.people.items()):
        j, valid = person.joints_cam_m, person.valid
        for col, (axis, name) in enumerate(((0, "x (m, camera right)"), (2, "z (m, depth from camera)"))):
            ax = fig.add_subplot(grid[row, col + 1])
            _draw_bones(ax, j[:, [axis, 1]], valid)
            mid = x_mid if axis == 0 else z_mid
            ax.set(xlim=(mid - span, mid + span), ylim=y_lim, aspect="equal")
            ax.grid(alpha=0.3)
            ax.set_xlabel(name, fontsize=8)
            ax.set_ylabel("y (m, down)", fontsize=8)
            view = "front view" if axis == 0 else "side view (camera on the left)"
            ax.set_title(f"{label}: {view}; root depth {person.root_cam_m[2]:.2f} m, reproj. "
                         f"{person.reprojection_error_px:.0f} px", fontsize=8)
    fig.suptitle("Real photo, both shipped lifters through LiftingPipeline. Blue = person's left, red = right; "
                 "dashed = bone with a joint missing from the 2D input (invented by the model)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/real_photo.png", help="figure path (PNG)")
    parser.add_argument("--backend", default="torch", choices=("torch", "onnxruntime"))
    parser.add_argument("--keypoints", default=str(FIXTURE_PATH), help="COCO-17 keypoint fixture (JSON)")
    parser.add_argument("--focal-scale", type=float, default=FOCAL_SCALE, help="fx = fy = this x image width")
    parser.add_argument("--peer", action="store_true",
                        help="also print plausibility checks for both lifters and BlazePose's world landmarks "
                             "(the built-in detector on the photo; lbi_ros/evaluation/peer.py)")
    args = parser.parse_args(argv)
    result = lift_photo(args.backend, args.keypoints, args.focal_scale)
    for label, p in result.people.items():
        sh = float(np.linalg.norm(p.joints_cam_m[11] - p.joints_cam_m[14]))
        print(f"{label:8s} root {np.round(p.root_cam_m, 3)} m, shoulder width {sh:.3f} m, "
              f"reprojection {p.reprojection_error_px:.1f} px")
    for label, (mean, most) in grey_image_shift(result, args.backend).items():
        print(f"{label:8s} a grey image instead of the photo moves the root-relative joints by {100 * mean:.1f} cm "
              f"on average, {100 * most:.1f} cm at most")
    if args.peer:  # no 3D truth: plausibility, not accuracy
        from lbi_ros.evaluation.peer import peer_on_image, plausibility

        poses = {label: p.joints_cam_m for label, p in result.people.items()}
        peer = peer_on_image(result.image, result.intrinsics.as_array())
        if peer is not None:
            poses["BlazePose"] = peer
        for label, pose in poses.items():
            c = plausibility(pose)
            print(f"{label:10s} shoulder width {c['shoulder_width_m']:.2f} m, torso {c['torso_m']:.2f} m, left elbow "
                  f"{100 * c['l_elbow_above_shoulder_m']:+.0f} cm above the left shoulder")
    print(f"wrote {draw_figure(result, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
