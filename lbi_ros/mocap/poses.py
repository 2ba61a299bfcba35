"""Pose sources for synthetic data: mocap frames from a cache, or procedurally generated poses.

All poses are H36M-17 joints (17, 3) plus toes (2, 3) [left, right] in the world frame (metres, Z up,
floor z = 0). Procedural poses cover postures the mocap lacks (sitting, crouching, reaching, leaning) with
randomised joint angles inside loose anatomical ranges; they are less natural than mocap and are meant as
a minority of training samples and for previews/benchmarks without a cache.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from lbi_ros.mocap.cache import MocapCache


class PoseSource(Protocol):
    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """-> (joints (17, 3), toes (2, 3)) world metres."""
        ...


def _rx(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


# Mean bone lengths (m), roughly Human3.6M-sized adults.
_BONES = {
    "hip": 0.12, "thigh": 0.44, "shin": 0.43, "low_spine": 0.23, "up_spine": 0.25, "neck": 0.115,
    "head": 0.115, "clavicle": 0.16, "upper_arm": 0.28, "forearm": 0.25,
}  # fmt: skip


def random_pose(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random plausible-ish standing/sitting/crouching/reaching pose. Body frame: x forward, y left, z up."""
    # Draw all random numbers at once (scalar Generator calls cost ~1 us each).
    gauss = iter(rng.standard_normal(24).tolist())
    unif = iter(rng.random(32).tolist())

    def normal(mean: float, std: float) -> float:
        return mean + std * next(gauss)

    def uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * next(unif)

    scale = uniform(0.85, 1.12)
    b = {k: v * scale * uniform(0.95, 1.05) for k, v in _BONES.items()}
    m = next(unif)
    mode = 0 if m < 0.45 else 1 if m < 0.65 else 2 if m < 0.8 else 3  # stand/walk, sit, crouch, free
    j = np.zeros((17, 3))
    # Pelvis orientation: yaw, small roll; torso lean relative to pelvis.
    r_pelvis = _rz(uniform(0, 2 * math.pi)) @ _rx(normal(0, 0.06))
    lean = (normal(0.08, 0.15), normal(0.1, 0.2), uniform(0.3, 0.9), uniform(-0.3, 1.3))[mode]
    r_torso = r_pelvis @ _ry(lean) @ _rx(normal(0, 0.1)) @ _rz(normal(0, 0.25))
    j[7] = r_pelvis @ _ry(lean * 0.5)[:, 2] * b["low_spine"]
    j[8] = j[7] + r_torso[:, 2] * b["up_spine"]
    r_head = r_torso @ _ry(normal(0.0, 0.25)) @ _rz(normal(0, 0.5)) @ _rx(normal(0, 0.15))
    j[9] = j[8] + r_head @ np.array([0.09, 0.0, 0.07]) * b["neck"] / 0.115
    j[10] = j[9] + r_head @ np.array([-0.04, 0.0, 0.108]) * b["head"] / 0.115

    toes = np.zeros((2, 3))
    for side, (hip, knee, ankle, sgn) in enumerate(((4, 5, 6, 1.0), (1, 2, 3, -1.0))):
        j[hip] = r_pelvis[:, 1] * (sgn * b["hip"])
        if mode == 0:
            flex, knee_f = normal(0.0, 0.35), abs(normal(0.1, 0.35))
        elif mode == 1:
            flex, knee_f = normal(1.45, 0.2), normal(1.5, 0.25)
        elif mode == 2:
            flex, knee_f = uniform(1.6, 2.2), uniform(2.0, 2.5)
        else:
            flex, knee_f = uniform(-0.5, 2.0), uniform(0.0, 2.4)
        knee_f = min(max(knee_f, 0.0), 2.6)
        abd = normal(0.05, 0.12)
        r_thigh = r_pelvis @ _rz(sgn * normal(0, 0.2)) @ _rx(-sgn * abd) @ _ry(-flex)
        j[knee] = j[hip] - r_thigh[:, 2] * b["thigh"]
        r_shin = r_thigh @ _ry(knee_f)
        j[ankle] = j[knee] - r_shin[:, 2] * b["shin"]
        r_foot = r_shin @ _ry(-knee_f * 0.5 + normal(0, 0.15))
        toes[side] = j[ankle] + r_foot @ np.array([0.13, 0.0, -0.05])

    for sh, el, wr, sgn in ((11, 12, 13, 1.0), (14, 15, 16, -1.0)):
        j[sh] = j[8] + r_torso @ np.array([-0.01, sgn * b["clavicle"], -0.02])
        # Upper-arm direction: elevation from hanging down (0) to overhead (pi), azimuth forward/side/back.
        elev = uniform(0, math.pi * 0.95) if next(unif) < 0.6 else abs(normal(0.2, 0.3))
        azim = uniform(-0.6, 1.9)  # 0 = sideways, pi/2 = forward
        se = math.sin(elev)
        d_upper = np.array([se * math.sin(azim), sgn * se * math.cos(azim), -math.cos(elev)])
        j[el] = j[sh] + r_torso @ d_upper * b["upper_arm"]
        # Elbow flexion bends the forearm towards the front of the upper arm (Rodrigues about d x forward).
        bend = uniform(0, 2.4)
        n = math.hypot(d_upper[1], d_upper[2])
        ax = (0.0, d_upper[2] / n, -d_upper[1] / n) if n > 1e-6 else (0.0, 1.0, 0.0)
        k = np.array([[0, -ax[2], ax[1]], [ax[2], 0, -ax[0]], [-ax[1], ax[0], 0]])
        r_bend = np.eye(3) + math.sin(bend) * k + (1 - math.cos(bend)) * (k @ k)
        j[wr] = j[el] + r_torso @ (r_bend @ d_upper) * b["forearm"]

    # Place on the floor: the lowest of ankles/toes at ankle height (sitting/crouching poses float a bit).
    ground = min(j[3, 2] - 0.08, j[6, 2] - 0.08, toes[0, 2] - 0.02, toes[1, 2] - 0.02)
    j[:, 2] -= ground
    toes[:, 2] -= ground
    return j.astype(np.float32), toes.astype(np.float32)


class ProceduralPoseSource:
    """Random poses from :func:`random_pose`."""

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return random_pose(rng)


@dataclass
class MocapPoseSource:
    """Frames of one split of a mocap cache, sampled uniformly over frames or over content labels.

    ``sampling="content"`` weights each frame by 1 / (frames of its content in the split), so the few
    non-locomotion contents are not drowned by walking.
    """

    cache: MocapCache
    split: str
    sampling: Literal["frames", "content"] = "content"

    def __post_init__(self) -> None:
        self.indices = self.cache.frame_indices(self.split)
        if self.indices.size == 0:
            raise ValueError(f"mocap cache has no frames in split {self.split!r}")
        if self.sampling == "content":
            labels = self.cache.frame_labels(self.indices, "content")
            _, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
            w = 1.0 / counts[inv]
        elif self.sampling == "frames":
            w = np.ones(self.indices.size)
        else:
            raise ValueError(f"sampling must be 'frames' or 'content', got {self.sampling!r}")
        self.cdf = np.cumsum(w / w.sum())

    def __len__(self) -> int:
        return int(self.indices.size)

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        k = int(np.searchsorted(self.cdf, rng.random(), side="right"))
        g = self.indices[min(k, self.indices.size - 1)]
        return self.cache.joints[g], self.cache.toes[g]
