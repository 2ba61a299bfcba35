"""A light, deterministic person tracker: stable ids across frames from per-frame person boxes.

Why so simple: the landmark ROI of the previous frame already follows each person (MediaPipe's own
tracking), so the tracker only has to say *which* person of this frame is which of the last one. Greedy
association on a box affinity is enough at a handful of people, costs microseconds, and is deterministic
(no random tie-breaks, no solver tolerances), which keeps the node's output reproducible.

Rule per frame, boxes ``[xmin, ymin, xmax, ymax]`` in pixels:

1. Each live track predicts its box: the last box shifted by the last centre displacement (constant
   velocity; off with ``use_velocity=False``).
2. A (track, box) pair may match when their IoU >= ``min_iou`` **or** their centres lie within
   ``max_center_distance`` x the predicted box's diagonal (fast motion breaks IoU before it breaks the
   centre test).
3. Matching is greedy: pairs sorted by IoU (descending), then centre distance (ascending), then track id,
   then box index; a pair is taken when neither side is taken yet.
4. Unmatched boxes open new tracks with fresh ids (a counter that never goes back, so ids are never
   reused); unmatched tracks count a miss and are retired after more than ``max_missed`` missed frames.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from lbi_ros.pose2d.anchors import box_iou

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackerConfig:
    """Association and retirement parameters (see the module docstring)."""

    min_iou: float = 0.2
    max_center_distance: float = 0.5  # fraction of the predicted box diagonal
    max_missed: int = 5  # frames a track may go unseen before it is retired
    use_velocity: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_iou <= 1.0:
            raise ValueError(f"min_iou must be in [0, 1], got {self.min_iou}")
        if self.max_center_distance < 0:
            raise ValueError(f"max_center_distance must be >= 0, got {self.max_center_distance}")
        if self.max_missed < 0:
            raise ValueError(f"max_missed must be >= 0, got {self.max_missed}")


@dataclass
class _Track:
    track_id: int
    box: np.ndarray  # (4,)
    velocity: np.ndarray  # (2,) centre displacement per frame, pixels
    missed: int = 0

    def predicted(self, use_velocity: bool) -> np.ndarray:
        if not use_velocity or self.missed > 0:
            return self.box
        return self.box + np.tile(self.velocity, 2)


def _centres(boxes: np.ndarray) -> np.ndarray:
    return 0.5 * (boxes[:, :2] + boxes[:, 2:])


class PersonTracker:
    """Keeps person ids across frames; call :meth:`update` once per frame with that frame's boxes."""

    def __init__(self, config: TrackerConfig = TrackerConfig()) -> None:
        self.config = config
        self._tracks: list[_Track] = []
        self._next_id = 0

    @property
    def active_ids(self) -> tuple[int, ...]:
        """Ids of the tracks still alive (seen within the last ``max_missed`` frames), oldest first."""
        return tuple(t.track_id for t in self._tracks)

    def reset(self) -> None:
        """Forget all tracks. Ids keep counting up, so an id is never handed out twice by one tracker."""
        self._tracks = []

    def update(self, boxes: np.ndarray) -> list[int]:
        """Assign an id to each of this frame's (N, 4) boxes (pixels); returns N ids in box order."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if not np.all(np.isfinite(boxes)):
            raise ValueError("tracker boxes must be finite")
        cfg = self.config
        n = boxes.shape[0]
        pairs: list[tuple[float, float, int, int, int]] = []  # (-iou, dist, track id, track idx, box idx)
        if n and self._tracks:
            centres = _centres(boxes)
            for ti, track in enumerate(self._tracks):
                pred = track.predicted(cfg.use_velocity)
                iou = box_iou(pred, boxes)  # (N,)
                diag = float(np.hypot(pred[2] - pred[0], pred[3] - pred[1]))
                dist = np.linalg.norm(centres - _centres(pred[None])[0], axis=1) / max(diag, 1e-9)  # (N,)
                ok = (iou >= cfg.min_iou) | (dist <= cfg.max_center_distance)
                pairs += [(-float(iou[j]), float(dist[j]), track.track_id, ti, j) for j in np.flatnonzero(ok)]
        pairs.sort()
        ids = [-1] * n
        matched_tracks: set[int] = set()
        for _, _, _, ti, j in pairs:
            if ti in matched_tracks or ids[j] >= 0:
                continue
            track = self._tracks[ti]
            shift = _centres(boxes[j][None])[0] - _centres(track.box[None])[0]
            track.velocity = shift / (track.missed + 1)  # per frame, also across missed frames
            track.box, track.missed = boxes[j].copy(), 0
            ids[j] = track.track_id
            matched_tracks.add(ti)
        survivors = []
        for ti, track in enumerate(self._tracks):
            if ti not in matched_tracks:
                track.missed += 1
                if track.missed > cfg.max_missed:
                    log.debug("retiring person id %d after %d missed frames", track.track_id, track.missed)
                    continue
            survivors.append(track)
        for j in range(n):
            if ids[j] < 0:
                ids[j] = self._next_id
                survivors.append(_Track(self._next_id, boxes[j].copy(), np.zeros(2)))
                self._next_id += 1
        self._tracks = survivors
        return ids
