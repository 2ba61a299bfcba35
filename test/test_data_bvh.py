"""BVH parsing and forward kinematics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lbi_ros.geometry import rotation_matrix
from lbi_ros.mocap.bvh import BVHError, euler_to_matrix, forward_kinematics, parse_bvh, read_bvh, write_bvh

CHAIN = """HIERARCHY
ROOT root
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT a
  {
    OFFSET 0 10 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 5 0 0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.0333333
1 2 3 0 0 0 0 0 0
0 0 0 90 0 0 0 0 90
"""


def test_parse_and_fk_of_a_chain() -> None:
    m = parse_bvh(CHAIN)
    assert m.names == ("root", "a", "a_end") and m.parents == (-1, 0, 1)
    assert m.num_frames == 2 and m.fps == pytest.approx(30.0, rel=1e-4)
    pos, rot = forward_kinematics(m)
    assert np.allclose(pos[0], [[1, 2, 3], [1, 12, 3], [6, 12, 3]])
    # frame 1: root rotated 90 deg about z -> offset (0, 10, 0) goes to (-10, 0, 0); joint a rotates 90 about y
    assert np.allclose(pos[1, 1], [-10, 0, 0])
    expected_end = pos[1, 1] + rotation_matrix("z", np.pi / 2) @ rotation_matrix("y", np.pi / 2) @ [5, 0, 0]
    assert np.allclose(pos[1, 2], expected_end)
    assert np.allclose(rot[1, 0], rotation_matrix("z", np.pi / 2))


def test_euler_order_is_intrinsic_channel_order() -> None:
    angles = np.array([[30.0, -50.0, 70.0]])
    r = euler_to_matrix(angles, "zxy")[0]
    ref = rotation_matrix("z", np.radians(30)) @ rotation_matrix("x", np.radians(-50)) @ rotation_matrix("y", np.radians(70))
    assert np.allclose(r, ref)


def test_position_channels_replace_offsets() -> None:
    text = CHAIN.replace("CHANNELS 3 Zrotation Xrotation Yrotation", "CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation")
    text = text.replace("1 2 3 0 0 0 0 0 0\n0 0 0 90 0 0 0 0 90", "0 0 0 0 0 0 0 7 0 0 0 0\n0 0 0 0 0 0 0 7 0 0 0 0")
    pos, _ = forward_kinematics(parse_bvh(text))
    assert np.allclose(pos[0, 1], [0, 7, 0])


def test_write_read_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    offsets = np.array([[0, 0, 0], [0, 10, 0], [0, 8, 0], [5, 0, 0]], dtype=float)
    motion = rng.uniform(-40, 40, (6, 6 + 3 * 3))
    path = tmp_path / "x.bvh"
    write_bvh(path, ["r", "a", "b", "c"], [-1, 0, 1, 0], offsets, motion, 1 / 30)
    m = read_bvh(path)
    assert [n for n in m.names if not n.endswith("_end")] == ["r", "a", "b", "c"]
    assert np.allclose(m.motion, motion, atol=1e-5)
    pos, _ = forward_kinematics(m)
    ia, ib = m.index("a"), m.index("b")
    assert np.allclose(np.linalg.norm(pos[:, ib] - pos[:, ia], axis=-1), 8.0)  # bone lengths preserved


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.replace("MOTION", "MOTON"), "no MOTION"),
        (lambda t: t.replace("HIERARCHY", "HIERARCHX"), "HIERARCHY"),
        (lambda t: t.replace("0 0 0 90 0 0 0 0 90\n", "0 0 0 90 0 0 0 0\n"), "expected 2 frames x 9 channels"),
        (lambda t: t.replace("1 2 3", "1 x 3"), "non-numeric"),
        (lambda t: t.replace("  }\n}\nMOTION", "}\nMOTION"), "unbalanced"),
        (lambda t: t.replace("Zrotation Xrotation Yrotation\n    End", "Zrotation Wrotation Yrotation\n    End"), "unknown channel"),
        (lambda t: t.replace("Frame Time: 0.0333333", "Frame Time: 0"), "Frame Time"),
        (lambda t: t.replace("1 2 3", "1 nan 3"), "NaN"),
    ],
)
def test_malformed_files_are_rejected(mutate, message: str) -> None:  # noqa: ANN001
    with pytest.raises(BVHError, match=message):
        parse_bvh(mutate(CHAIN), source="fixture.bvh")


def test_binary_file_rejected(tmp_path: Path) -> None:
    p = tmp_path / "bad.bvh"
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(BVHError):
        read_bvh(p)
