"""BVH motion files: parser and forward kinematics vectorised over frames.

Semantics (the common reading of the format, as Blender and most mocap tools use it):

* Each joint's local transform is ``T(translation) @ R(rotation)``. The translation is the joint's
  ``OFFSET``, unless the joint has position channels, which then **replace** the offset (the Bandai-Namco
  files give every joint position channels equal to its offset, and the root's absolute position).
* Rotation channels are Euler angles in degrees applied in the listed order as intrinsic rotations:
  ``CHANNELS ... Zrotation Xrotation Yrotation`` means ``R = Rz @ Rx @ Ry``.
* ``End Site`` blocks become extra leaf joints named ``<parent>_end`` with no channels.

Units are whatever the file uses (often centimetres); callers convert.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_ROT = {"Xrotation": "x", "Yrotation": "y", "Zrotation": "z"}
_POS = {"Xposition": 0, "Yposition": 1, "Zposition": 2}


class BVHError(ValueError):
    """A BVH file does not follow the format."""


@dataclass(frozen=True)
class BVHMotion:
    """A parsed BVH file.

    ``names`` (J,), ``parents`` (J,) with -1 for the root, ``offsets`` (J, 3), ``channels[j]`` the channel
    names of joint j, ``channel_start[j]`` its first column in ``motion`` (F, C), ``frame_time`` seconds.
    """

    names: tuple[str, ...]
    parents: tuple[int, ...]
    offsets: np.ndarray
    channels: tuple[tuple[str, ...], ...]
    channel_start: tuple[int, ...]
    motion: np.ndarray
    frame_time: float

    @property
    def num_frames(self) -> int:
        return int(self.motion.shape[0])

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"BVH has no joint {name!r}; joints: {list(self.names)}") from None


def parse_bvh(text: str, source: str = "<string>") -> BVHMotion:
    """Parse BVH text. Raises :class:`BVHError` naming ``source`` and the problem."""
    head, sep, tail = text.partition("MOTION")
    if not sep:
        raise BVHError(f"{source}: no MOTION section")
    tokens = head.split()
    if not tokens or tokens[0] != "HIERARCHY":
        raise BVHError(f"{source}: file must start with HIERARCHY")
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[tuple[str, ...]] = []
    stack: list[int] = []
    pending: int | None = None  # joint declared, waiting for its '{'
    i = 1
    n_tok = len(tokens)

    def need(k: int) -> list[str]:
        if i + k > n_tok:
            raise BVHError(f"{source}: hierarchy ends early")
        return tokens[i : i + k]

    try:
        while i < n_tok:
            tok = tokens[i]
            if tok in ("ROOT", "JOINT"):
                (name,) = need(2)[1:]
                if tok == "ROOT" and (stack or names):
                    raise BVHError(f"{source}: only one ROOT is supported")
                if tok == "JOINT" and not stack:
                    raise BVHError(f"{source}: JOINT {name} outside ROOT")
                names.append(name)
                parents.append(stack[-1] if stack else -1)
                offsets.append([0.0, 0.0, 0.0])
                channels.append(())
                pending = len(names) - 1
                i += 2
            elif tok == "End":
                if not stack:
                    raise BVHError(f"{source}: End Site outside a joint")
                names.append(f"{names[stack[-1]]}_end")
                parents.append(stack[-1])
                offsets.append([0.0, 0.0, 0.0])
                channels.append(())
                pending = len(names) - 1
                i += 2  # 'End' 'Site'
            elif tok == "{":
                if pending is None:
                    raise BVHError(f"{source}: unexpected '{{'")
                stack.append(pending)
                pending = None
                i += 1
            elif tok == "}":
                if not stack:
                    raise BVHError(f"{source}: unbalanced '}}'")
                stack.pop()
                i += 1
            elif tok == "OFFSET":
                if not stack:
                    raise BVHError(f"{source}: OFFSET outside a joint")
                offsets[stack[-1]] = [float(v) for v in need(4)[1:]]
                i += 4
            elif tok == "CHANNELS":
                if not stack:
                    raise BVHError(f"{source}: CHANNELS outside a joint")
                n = int(need(2)[1])
                chans = tuple(need(2 + n)[2:])
                bad = [c for c in chans if c not in _ROT and c not in _POS]
                if bad:
                    raise BVHError(f"{source}: unknown channel(s) {bad} in joint {names[stack[-1]]}")
                channels[stack[-1]] = chans
                i += 2 + n
            else:
                raise BVHError(f"{source}: unexpected token {tok!r} in HIERARCHY")
    except ValueError as exc:
        if isinstance(exc, BVHError):
            raise
        raise BVHError(f"{source}: bad number in HIERARCHY ({exc})") from exc
    if stack or pending is not None:
        raise BVHError(f"{source}: unbalanced braces in HIERARCHY")
    if not names:
        raise BVHError(f"{source}: no joints")

    # MOTION section: "Frames: N", "Frame Time: dt", then N rows of C floats.
    lines = tail.lstrip().split("\n", 2)
    if len(lines) < 2:
        raise BVHError(f"{source}: MOTION section lacks 'Frames:' / 'Frame Time:' lines")
    try:
        key0, val0 = lines[0].split(":", 1)
        key1, val1 = lines[1].split(":", 1)
        if key0.strip() != "Frames" or key1.strip() != "Frame Time":
            raise ValueError("missing keys")
        num_frames = int(val0)
        frame_time = float(val1)
    except ValueError as exc:
        raise BVHError(f"{source}: cannot read 'Frames:' and 'Frame Time:' ({exc})") from exc
    if num_frames < 0 or not (frame_time > 0 and math.isfinite(frame_time)):
        raise BVHError(f"{source}: bad Frames ({num_frames}) or Frame Time ({frame_time})")
    starts, c = [], 0
    for ch in channels:
        starts.append(c)
        c += len(ch)
    body = lines[2] if len(lines) > 2 else ""
    try:
        values = np.array(body.split(), dtype=np.float64)
    except ValueError as exc:
        raise BVHError(f"{source}: non-numeric motion data ({exc})") from exc
    if values.size != num_frames * c:
        raise BVHError(
            f"{source}: motion has {values.size} values, expected {num_frames} frames x {c} channels = "
            f"{num_frames * c}"
        )
    if not np.all(np.isfinite(values)):
        raise BVHError(f"{source}: motion data contains NaN/inf")
    return BVHMotion(
        names=tuple(names),
        parents=tuple(parents),
        offsets=np.array(offsets, dtype=np.float64),
        channels=tuple(channels),
        channel_start=tuple(starts),
        motion=values.reshape(num_frames, c),
        frame_time=frame_time,
    )


def read_bvh(path: str | Path) -> BVHMotion:
    """Read and parse a BVH file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise BVHError(f"{path}: not a text file ({exc})") from exc
    return parse_bvh(text, source=str(path))


def euler_to_matrix(angles_deg: np.ndarray, order: str) -> np.ndarray:
    """Intrinsic Euler angles (F, k) in degrees, axes ``order`` (e.g. ``'zxy'``) -> (F, 3, 3)."""
    f = angles_deg.shape[0]
    out = np.broadcast_to(np.eye(3), (f, 3, 3)).copy()
    for k, axis in enumerate(order):
        a = np.radians(angles_deg[:, k])
        c, s = np.cos(a), np.sin(a)
        r = np.zeros((f, 3, 3))
        if axis == "x":
            r[:, 0, 0] = 1
            r[:, 1, 1], r[:, 1, 2], r[:, 2, 1], r[:, 2, 2] = c, -s, s, c
        elif axis == "y":
            r[:, 1, 1] = 1
            r[:, 0, 0], r[:, 0, 2], r[:, 2, 0], r[:, 2, 2] = c, s, -s, c
        else:
            r[:, 2, 2] = 1
            r[:, 0, 0], r[:, 0, 1], r[:, 1, 0], r[:, 1, 1] = c, -s, s, c
        out = out @ r
    return out


def forward_kinematics(motion: BVHMotion, frames: slice | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Global joint positions (F, J, 3) and rotations (F, J, 3, 3) in the file's units and axes."""
    data = motion.motion if frames is None else motion.motion[frames]
    f = data.shape[0]
    n = len(motion.names)
    pos = np.zeros((f, n, 3))
    rot = np.zeros((f, n, 3, 3))
    for j in range(n):
        chans = motion.channels[j]
        start = motion.channel_start[j]
        local_t = np.broadcast_to(motion.offsets[j], (f, 3)).copy()
        rot_cols = [k for k, c in enumerate(chans) if c in _ROT]
        for k, c in enumerate(chans):
            if c in _POS:
                local_t[:, _POS[c]] = data[:, start + k]
        if rot_cols:
            order = "".join(_ROT[chans[k]] for k in rot_cols)
            local_r = euler_to_matrix(data[:, [start + k for k in rot_cols]], order)
        else:
            local_r = np.broadcast_to(np.eye(3), (f, 3, 3))
        p = motion.parents[j]
        if p < 0:
            pos[:, j] = local_t
            rot[:, j] = local_r
        else:
            pos[:, j] = pos[:, p] + np.einsum("fij,fj->fi", rot[:, p], local_t)
            rot[:, j] = rot[:, p] @ local_r
    return pos, rot


def write_bvh(
    path: str | Path,
    names: list[str],
    parents: list[int],
    offsets: np.ndarray,
    motion: np.ndarray,
    frame_time: float,
    channel_order: str = "ZXY",
) -> None:
    """Write a minimal BVH (root: 6 channels, others: 3 rotations; leaf joints get an End Site).

    Used by tests and fixtures. Joints are written depth-first from the root; ``motion`` (F, 6 + 3 * (J - 1))
    must list the channels in that order (the same as ``names`` when parents come before their children
    and each subtree is contiguous).
    """
    children: dict[int, list[int]] = {i: [] for i in range(len(names))}
    for j, p in enumerate(parents):
        if p >= 0:
            children[p].append(j)
    rot = " ".join(f"{a}rotation" for a in channel_order)
    lines = ["HIERARCHY"]

    def emit(j: int, depth: int) -> None:
        ind = "  " * depth
        kind = "ROOT" if parents[j] < 0 else "JOINT"
        lines.append(f"{ind}{kind} {names[j]}")
        lines.append(f"{ind}{{")
        lines.append(f"{ind}  OFFSET {' '.join(f'{v:.6f}' for v in offsets[j])}")
        if parents[j] < 0:
            lines.append(f"{ind}  CHANNELS 6 Xposition Yposition Zposition {rot}")
        else:
            lines.append(f"{ind}  CHANNELS 3 {rot}")
        for c in children[j]:
            emit(c, depth + 1)
        if not children[j]:
            lines.extend([f"{ind}  End Site", f"{ind}  {{", f"{ind}    OFFSET 0 0 0", f"{ind}  }}"])
        lines.append(f"{ind}}}")

    emit(parents.index(-1), 0)
    lines += ["MOTION", f"Frames: {motion.shape[0]}", f"Frame Time: {frame_time:.7f}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in motion]
    Path(path).write_text("\n".join(lines) + "\n")
