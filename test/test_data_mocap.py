"""Mocap reader and cache on generated Bandai-Namco-style clips (a made-up rig with the same joint names)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from lbi_ros.cli.main import main as lbi_main
from lbi_ros.mocap.bvh import write_bvh
from lbi_ros.mocap.cache import MocapError, load_mocap_cache
from lbi_ros.mocap.clips import ClipLabel, assign_split, parse_clip_name, prepare_mocap
from lbi_ros.skeleton import H36M17

# name, parent, offset (cm, Y up, person facing +Z, left = +X); T-pose at zero rotation.
RIG = [
    ("joint_Root", -1, (0, 0, 0)),
    ("Hips", 0, (0, 95, 0)),
    ("Spine", 1, (0, 12, 0)),
    ("Chest", 2, (0, 12, 0)),
    ("Neck", 3, (0, 22, 0)),
    ("Head", 4, (0, 8, 0)),
    ("Shoulder_L", 3, (4, 20, 0)),
    ("UpperArm_L", 6, (14, 0, 0)),
    ("LowerArm_L", 7, (28, 0, 0)),
    ("Hand_L", 8, (25, 0, 0)),
    ("Shoulder_R", 3, (-4, 20, 0)),
    ("UpperArm_R", 10, (-14, 0, 0)),
    ("LowerArm_R", 11, (-28, 0, 0)),
    ("Hand_R", 12, (-25, 0, 0)),
    ("UpperLeg_L", 1, (9, -5, 0)),
    ("LowerLeg_L", 14, (0, -44, 0)),
    ("Foot_L", 15, (0, -43, 0)),
    ("Toes_L", 16, (0, -6, 13)),
    ("UpperLeg_R", 1, (-9, -5, 0)),
    ("LowerLeg_R", 18, (0, -44, 0)),
    ("Foot_R", 19, (0, -43, 0)),
    ("Toes_R", 20, (0, -6, 13)),
]
CONTENTS_1 = ["walk", "run", "bow"]
STYLES_1 = ["normal", "happy", "old"]
CONTENTS_2 = ["walk", "wave-left-hand"]
STYLES_2 = ["normal", "elderly", "youthful", "sleepy"]


def write_clip(path: Path, frames: int = 6, seed: int = 0) -> None:
    """A short walking-ish clip: root moving along +Z, knees/elbows bending, head rotated so its local x
    points up and local y forward (as in the real rig)."""
    rng = np.random.default_rng(seed)
    names = [r[0] for r in RIG]
    parents = [r[1] for r in RIG]
    offsets = np.array([r[2] for r in RIG], dtype=float)
    motion = np.zeros((frames, 6 + 3 * (len(RIG) - 1)))
    motion[:, 2] = np.linspace(0, 50, frames)  # root z position
    col = {n: 6 + 3 * (i - 1) for i, n in enumerate(names) if i > 0}  # Z, X, Y rotation columns
    motion[:, col["Head"]] = 90.0  # Rz(90) Rx(90): local x -> up, local y -> forward (+Z)
    motion[:, col["Head"] + 1] = 90.0
    for joint in ("LowerLeg_L", "LowerLeg_R"):
        motion[:, col[joint] + 1] = rng.uniform(0, 60, frames)  # knee flexion about X
    for joint in ("LowerArm_L", "LowerArm_R"):
        motion[:, col[joint]] = rng.uniform(-60, 0, frames)
    write_bvh(path, names, parents, offsets, motion, 1 / 30)


def make_source(root: Path, broken: bool = False) -> Path:
    """dataset-1 raw files and a dataset-2 .tar.xz archive, each with cfg/ label lists."""
    d1 = root / "dataset-1"
    (d1 / "data").mkdir(parents=True)
    (d1 / "cfg").mkdir()
    (d1 / "cfg" / "content_label.txt").write_text("\n".join(f"dataset-1_{c}" for c in CONTENTS_1))
    (d1 / "cfg" / "style_label.txt").write_text("\n".join(f"dataset-1_{s}" for s in STYLES_1))
    seed = 0
    for ci, content in enumerate(CONTENTS_1):
        for si, style in enumerate(STYLES_1):
            stem = f"dataset-1_{content}_{style}_001"
            write_clip(d1 / "data" / f"{stem}.bvh", frames=5 + ci, seed=seed)
            (d1 / "data" / f"{stem}.json").write_text(json.dumps({"content": ci, "style": si}))
            seed += 1
    d2 = root / "dataset-2"
    (d2 / "cfg").mkdir(parents=True)
    (d2 / "cfg" / "content_label.txt").write_text("\n".join(f"dataset-2_{c}" for c in CONTENTS_2))
    (d2 / "cfg" / "style_label.txt").write_text("\n".join(f"dataset-2_{s}" for s in STYLES_2))
    staging = root / "staging"
    staging.mkdir()
    members = []
    for si, style in enumerate(STYLES_2):
        stem = f"dataset-2_wave-left-hand_{style}_001"
        write_clip(staging / f"{stem}.bvh", frames=4, seed=seed)
        (staging / f"{stem}.json").write_text(json.dumps({"content": 1, "style": si}))
        members += [f"{stem}.bvh", f"{stem}.json"]
        seed += 1
    if broken:
        # labels that disagree with the file name, and a truncated BVH
        (d1 / "data" / "dataset-1_run_happy_001.json").write_text(json.dumps({"content": 0, "style": 0}))
        text = (d1 / "data" / "dataset-1_bow_old_001.bvh").read_text()
        (d1 / "data" / "dataset-1_bow_old_001.bvh").write_text(text[: len(text) - 40])
    with tarfile.open(d2 / "dataset-2_wave-left-hand.tar.xz", "w:xz") as tf:
        for m in members:
            tf.add(staging / m, arcname=m)
    for m in members:
        (staging / m).unlink()
    staging.rmdir()
    return root


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("mocap")
    src = make_source(root / "src")
    report = prepare_mocap(src, root / "cache")
    return root / "cache", report


def test_split_rules() -> None:
    assert assign_split(ClipLabel("x", "dataset-2", "walk", "youthful", 1)) == "val"
    assert assign_split(ClipLabel("x", "dataset-2", "walk", "elderly", 1)) == "test"
    assert assign_split(ClipLabel("x", "dataset-1", "walk", "normal", 1)) == "train"
    assert assign_split(ClipLabel("x", "dataset-1", "moonwalk", "normal", 1)) == "test"  # unknown content
    assert assign_split(ClipLabel("x", "dataset-3", "walk", "normal", 1)) == "test"  # unknown dataset
    assert parse_clip_name("dataset-1_walk-left_not-confident_012") == ClipLabel(
        "dataset-1_walk-left_not-confident_012", "dataset-1", "walk-left", "not-confident", 12
    )
    with pytest.raises(MocapError):
        parse_clip_name("walk_normal")


def test_prepare_reads_raw_and_archives_and_splits(cache_dir: tuple[Path, object]) -> None:
    path, report = cache_dir
    cache = load_mocap_cache(path)
    assert len(cache.clips) == 9 + 4
    by_name = {c.name: c for c in cache.clips}
    assert by_name["dataset-1_walk_happy_001"].split == "val"  # held-out style
    assert by_name["dataset-1_bow_old_001"].split == "test"
    assert by_name["dataset-1_run_normal_001"].split == "train"
    assert by_name["dataset-2_wave-left-hand_sleepy_001"].split == "test"  # style unknown to the split
    assert by_name["dataset-2_wave-left-hand_youthful_001"].split == "val"
    assert report.clips == {"train": 4, "val": 4, "test": 5}
    assert sum(report.frames.values()) == cache.joints.shape[0] == 3 * (5 + 6 + 7) + 4 * 4
    assert cache.frame_indices("val").size == report.frames["val"]
    assert set(cache.frame_labels(cache.frame_indices("train"), "content")) == {"walk", "run", "bow", "wave-left-hand"}
    index = json.loads((path / "index.json").read_text())
    assert index["joint_set"] == "h36m17" and "non-commercial" in index["source"]


def test_h36m_joints_have_plausible_bone_lengths_and_axes(cache_dir: tuple[Path, object]) -> None:
    cache = load_mocap_cache(cache_dir[0])
    j = cache.joints.astype(np.float64)
    length = {H36M17.joint_names[c]: np.linalg.norm(j[:, c] - j[:, p], axis=-1) for p, c in H36M17.bones}
    expected = {"r_hip": 0.09, "r_knee": 0.44, "r_ankle": 0.43, "l_knee": 0.44, "l_elbow": 0.28,
                "r_wrist": 0.25, "spine": np.hypot(0.17, 0.0), "l_shoulder": 0.18}
    for name, value in expected.items():
        assert np.allclose(length[name], value, atol=2e-3), name  # constant over frames, in metres
    # Z up, floor near 0, the head above the thorax above the pelvis above the ankles
    z = j[..., 2]
    assert np.all(z[:, 10] > z[:, 9]) and np.all(z[:, 9] > z[:, 8]) and np.all(z[:, 8] > z[:, 0])
    assert np.all(z[:, 0] > z[:, 3]) and 0.0 < z[:, [3, 6]].min() < 0.2
    # synthesized head points: Head joint + (14 cm up, 2 cm forward); forward = +Z_bvh = -Y_world
    head_joint = j[:, 8] + np.array([0.0, 0.0, 0.22 + 0.08 - 0.20])  # thorax (shoulder line) -> Head joint
    assert np.allclose(j[:, 10] - head_joint, [0.0, -0.02, 0.14], atol=1e-6)
    assert np.allclose(j[:, 9] - head_joint, [0.0, -0.07, 0.03], atol=1e-6)
    assert np.all(np.isfinite(cache.toes)) and np.all(cache.toes[..., 2] < j[:, [6, 3], 2])


def test_malformed_clips_are_skipped_and_reported(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", broken=True)
    report = prepare_mocap(src, tmp_path / "cache")
    skipped = sorted(Path(s).name for s in report.skipped)
    assert skipped == ["dataset-1_bow_old_001.bvh", "dataset-1_run_happy_001.bvh"]
    assert sum(report.clips.values()) == 13 - 2


def test_cache_loader_rejects_corruption(cache_dir: tuple[Path, object], tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(cache_dir[0], bad)
    index = json.loads((bad / "index.json").read_text())
    index["version"] = 99
    (bad / "index.json").write_text(json.dumps(index))
    with pytest.raises(MocapError, match="version"):
        load_mocap_cache(bad)
    index["version"] = 1
    index["clips"][0]["frames"] += 1
    (bad / "index.json").write_text(json.dumps(index))
    with pytest.raises(MocapError, match="inconsistent|cover"):
        load_mocap_cache(bad)
    np.savez(bad / "mocap_h36m17.npz", joints=np.zeros((3, 16, 3)), toes=np.zeros((3, 2, 3)))
    with pytest.raises(MocapError, match=r"\(N, 17, 3\)"):
        load_mocap_cache(bad)
    with pytest.raises(FileNotFoundError, match="prepare-mocap"):
        load_mocap_cache(tmp_path / "nothing")


def test_cli_prepare_mocap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_source(tmp_path / "src")
    assert lbi_main(["data", "prepare-mocap", "--src", str(src), "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "train" in out and (tmp_path / "c" / "index.json").is_file()
    assert lbi_main(["data", "prepare-mocap", "--src", str(tmp_path / "empty_missing"), "--out", str(tmp_path / "d")]) == 1
