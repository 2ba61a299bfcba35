"""Mesh people in the synthetic data: labels from the posed body, determinism, held-out appearance, the
imageless (2D-only) stream, the preview sheet and rendered evaluation sets. Runs on the vendored assets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from lbi_ros.geometry import Intrinsics, project
from lbi_ros.render.mesh.anny_body import in_train_region
from lbi_ros.render.mesh.asset_library import HELD_OUT
from lbi_ros.render.mesh.mesh_people import MeshBodyConfig
from lbi_ros.skeleton import H36M17
from lbi_ros.synth.dataset import SyntheticDataConfig, SyntheticPoseDataset

MESH = MeshBodyConfig(fraction=1.0, identity_block=4, distractor_prob=0.5)
CONFIG = SyntheticDataConfig(samples_per_epoch=64, seed=5, mesh=MESH)


@pytest.fixture(scope="module")
def dataset() -> SyntheticPoseDataset:
    return SyntheticPoseDataset(CONFIG)


def _bone_lengths(joints: np.ndarray) -> np.ndarray:
    parents = np.array(H36M17.parents[1:])
    return np.linalg.norm(joints[1:] - joints[parents], axis=-1)


def test_mesh_sample_labels_are_the_posed_body_and_project_onto_the_keypoints(dataset) -> None:
    for index in (0, 5, 9):
        sample = dataset[index]
        assert sample["image_crop"].shape == (3, 128, 96) and np.isfinite(sample["image_crop"]).all()
        joints_cam = sample["joints_3d"] + sample["root_cam"]
        intr = Intrinsics(*sample["intrinsics"].tolist())
        assert np.allclose(project(joints_cam, intr), sample["keypoints_gt_px"], atol=1e-2)
        # Limb lengths are the identity's own (retargeting copies directions only), not the mocap's.
        ident = dataset.mesh_people.identity(dataset.identity_key(0, index))
        limbs = [2, 3, 5, 6, 12, 13, 15, 16]  # knees, ankles, elbows, wrists (child joints)
        got = _bone_lengths(joints_cam)[np.array(limbs) - 1]
        want = _bone_lengths(ident.rest.joints)[np.array(limbs) - 1]
        assert np.allclose(got, want, atol=2e-3), (got, want)


def test_mesh_samples_are_deterministic_and_vary_with_the_index(dataset) -> None:
    a = dataset[3]["image_crop"]
    fresh = SyntheticPoseDataset(CONFIG)  # another process-like instance: new caches, new GL context
    assert np.array_equal(a, fresh[3]["image_crop"])
    assert not np.array_equal(a, dataset[4]["image_crop"])


def test_held_out_appearance_uses_only_held_out_assets_and_shapes() -> None:
    held = SyntheticPoseDataset(dataclasses.replace(CONFIG, mesh=dataclasses.replace(MESH, appearance="heldout")))
    train = SyntheticPoseDataset(CONFIG)
    for key in range(6):
        h = held.mesh_people.identity((1, key))
        t = train.mesh_people.identity((1, key))
        assert not in_train_region(h.shape) and in_train_region(t.shape)
        garments = [p.name for p in h.parts[1:]]
        assert all(name in HELD_OUT for name in garments), garments
        assert not any(p.name in HELD_OUT for p in t.parts[1:])


def test_capsule_only_configs_do_not_touch_the_mesh_stack() -> None:
    ds = SyntheticPoseDataset(dataclasses.replace(CONFIG, mesh=MeshBodyConfig()))
    ds[0]
    assert ds._mesh is None


def test_imageless_stream_keeps_mesh_labels_without_drawing() -> None:
    from lbi_ros.training.data import StepDataset

    drawn = StepDataset(CONFIG, render_images=True)[7]
    blank = StepDataset(CONFIG, render_images=False)[7]
    assert np.array_equal(drawn["joints_3d"], blank["joints_3d"])
    crop = blank["image_crop"]
    assert np.abs(crop - crop[:, :1, :1]).max() == 0  # one colour (black) in each normalised channel
    assert np.abs(drawn["image_crop"]).max() > 0


def test_rendered_eval_set_with_mesh_people() -> None:
    from lbi_ros.evaluation import rendered_eval_set

    data = dataclasses.replace(CONFIG, mesh=dataclasses.replace(MESH, appearance="heldout"))
    eval_set = rendered_eval_set("", None, 4, seed=2, data=data)
    assert eval_set.joints_3d.shape == (4, 17, 3) and np.isfinite(eval_set.joints_3d).all()


def test_preview_writes_a_contact_sheet_of_mesh_people(tmp_path: Path) -> None:
    import cv2

    from lbi_ros.cli.main import main as cli_main

    out = tmp_path / "sheet.png"
    assert cli_main(["data", "preview", "--body", "mesh", "--out", str(out)]) == 0
    sheet = cv2.imread(str(out))
    assert sheet is not None and sheet.shape == (4 * 256, 4 * 192, 3)


def test_mesh_config_is_validated() -> None:
    with pytest.raises(ValueError, match="fraction"):
        MeshBodyConfig(fraction=1.5)
    with pytest.raises(ValueError, match="appearance"):
        MeshBodyConfig(appearance="test")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="jpeg_quality"):
        MeshBodyConfig(jpeg_quality=(90, 20))


def test_demo_scene_with_mesh_people_is_deterministic_and_occludes() -> None:
    """The demo's player and recorder rebuild the scene separately: they must agree on every pixel and label."""
    from lbi_ros.demo.scene import DemoScene

    a, b = DemoScene(4, seed=1, body="mesh"), DemoScene(4, seed=1, body="mesh")
    fa, fb = a.frame(7), b.frame(7)
    assert np.array_equal(fa.image_rgb, fb.image_rgb) and np.array_equal(fa.joints_cam_m, fb.joints_cam_m)
    capsule = DemoScene(4, seed=1).frame(7)
    assert not np.array_equal(fa.joints_cam_m, capsule.joints_cam_m)  # labels are the bodies' joints
    # the bodies stand where the takes put them, up to the root path scaled by the height ratio (world origin)
    assert np.abs(fa.joints_cam_m[:, 0] - capsule.joints_cam_m[:, 0]).max() < 0.6
    ids = a.mesh.draw(a._posed[a.pose_index(7)], a, *_scene_camera()).person_ids
    assert len(set(np.unique(ids)) - {-1}) == 4  # four people drawn, z-buffered together


def _scene_camera() -> tuple:
    from lbi_ros.demo.scene import IMAGE_HEIGHT, IMAGE_WIDTH, INTRINSICS

    return INTRINSICS, IMAGE_HEIGHT, IMAGE_WIDTH, np.random.default_rng(0)


def test_bench_render_reports_mesh_throughput(tmp_path: Path) -> None:
    import json

    from lbi_ros.cli.main import main as cli_main

    out = tmp_path / "bench.json"
    assert cli_main(["bench", "render", "--body", "mesh", "--samples", "12", "--warmup", "2",
                     "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["body"] == "mesh" and result["crops_per_s_per_core"] > 0 and result["crop"] == [128, 96]
