"""``lbi detect``: the built-in 2D detector on an image, a folder (stills, a video, a broken file), JSON out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lbi_ros.cli.main import main
from lbi_ros.pose2d.topology import mediapipe33_to_coco17
from lbi_ros.skeleton import COCO17, MEDIAPIPE33

from .conftest import require_pose_models

FIXTURE = Path(__file__).parent / "fixtures" / "astronaut_coco17.json"


@pytest.fixture(scope="module")
def astronaut_png(tmp_path_factory) -> Path:
    import cv2
    import skimage.data

    require_pose_models()
    path = tmp_path_factory.mktemp("images") / "skimage_astronaut.png"
    cv2.imwrite(str(path), skimage.data.astronaut()[:, :, ::-1])
    return path


def _coco_error(person: dict) -> float:
    ann = json.loads(FIXTURE.read_text())
    truth = np.asarray(ann["keypoints_px"], dtype=np.float64)  # (17, 3), conf 0 = not annotated
    assert ann["joint_names"] == list(COCO17.joint_names)
    found = mediapipe33_to_coco17(np.asarray(person["keypoints"], dtype=np.float64))  # (17, 3)
    seen = truth[:, 2] > 0
    return float(np.linalg.norm(found[seen, :2] - truth[seen, :2], axis=1).mean())


def test_detect_astronaut_finds_one_person_near_the_annotation(astronaut_png, tmp_path):
    out_json, out_dir = tmp_path / "det.json", tmp_path / "drawn"
    assert main(["detect", str(astronaut_png), "--json", str(out_json), "--out", str(out_dir)]) == 0
    entries = json.loads(out_json.read_text())
    assert [e["image"] for e in entries] == ["skimage_astronaut.png"]
    (person,) = entries[0]["people"]
    assert person["skeleton"] == "mediapipe33" and person["joint_names"] == list(MEDIAPIPE33.joint_names)
    kp = np.asarray(person["keypoints"])
    assert kp.shape == (33, 3) and np.all((kp[:, 2] >= 0) & (kp[:, 2] <= 1)) and 0.5 < person["score"] <= 1
    assert np.all(kp[kp[:, 1] > 511.5, 2] == 0), "landmarks below the photo must be 'not seen'"
    error = _coco_error(person)
    print(f"lbi detect, astronaut: mean error over the annotated COCO joints {error:.1f} px")
    assert error <= 35.0
    import cv2

    drawn = cv2.imread(str(out_dir / "skimage_astronaut.png"))
    assert drawn is not None and drawn.shape == (512, 512, 3)


def test_detect_folder_with_video_and_a_broken_file(astronaut_png, tmp_path):
    import cv2

    folder = tmp_path / "inputs"
    folder.mkdir()
    image = cv2.imread(str(astronaut_png))
    cv2.imwrite(str(folder / "a_astronaut.png"), image)
    cv2.imwrite(str(folder / "b_empty.png"), np.full((120, 160, 3), 90, np.uint8))
    (folder / "c_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (folder / "notes.txt").write_text("not an image: skipped, no entry")
    writer = cv2.VideoWriter(str(folder / "d_clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (256, 256))
    for _ in range(2):
        writer.write(cv2.resize(image, (256, 256)))
    writer.release()
    out_json = tmp_path / "det.json"
    assert main(["detect", str(folder), "--json", str(out_json), "--quiet"]) == 3  # some input unreadable
    entries = {e["image"]: e for e in json.loads(out_json.read_text())}
    assert list(entries) == ["a_astronaut.png", "b_empty.png", "c_broken.png", "d_clip.avi#0", "d_clip.avi#1"]
    assert len(entries["a_astronaut.png"]["people"]) == 1 and entries["b_empty.png"]["people"] == []
    assert "cannot read" in entries["c_broken.png"]["error"] and entries["c_broken.png"]["people"] == []
    ids = [[p["id"] for p in entries[f"d_clip.avi#{i}"]["people"]] for i in range(2)]
    assert len(ids[0]) == 1 and ids[1] == ids[0], "a person keeps its id through a video"


def test_detect_missing_path_fails_with_exit_code_1(tmp_path):
    assert main(["detect", str(tmp_path / "nothing_here.png")]) == 1


def test_detector_tiles_cover_wide_frames_with_overlap():
    from lbi_ros.pose2d.keypoint_source import tile_origins

    assert tile_origins(640, 403) == [0, 237] and tile_origins(480, 403) == []  # 640 x 480: two tiles side by side
    assert tile_origins(512, 430) == []  # square: the whole frame is enough
    starts = tile_origins(1920, 907)
    assert starts[0] == 0 and starts[-1] == 1920 - 907
    assert all(b - a <= 0.75 * 907 + 1 for a, b in zip(starts, starts[1:], strict=False))  # >= 25 % overlap
