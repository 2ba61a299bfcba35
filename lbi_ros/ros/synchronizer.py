"""Pair images with their 2D keypoints by stamp: exact match first, approximate within a slop.

2D detectors copy the image header into their output, so the common case is an exact stamp match
and the keypoints arrive a few tens of milliseconds after their image. Drivers that re-stamp need an
approximate match; ``slop`` bounds how far apart two stamps may be (default 0.02 s, at most 0.05 s,
so a 30 Hz stream can never pair neighbouring frames, which are 0.033 s apart).

Why not ``message_filters``: it is not installable without a ROS install, and its
ApproximateTimeSynchronizer has no "exact first" preference and no drop counters. This class has
the same semantics everywhere, pure Python and unit-tested, so nothing ROS-specific lives here.

At high frame rates a fixed slop is not enough: at 120 Hz frames are 8.3 ms apart, so with a 20 ms
slop a lost image would let the next image pair with the lost one's keypoints, a false frame. The slop
actually used is therefore also kept below ``PERIOD_FRACTION`` of the shortest recent interval between
image stamps (:meth:`StampSynchronizer.effective_slop_ns`); exact matches are never affected.

Both queues are bounded; the oldest unmatched entry is evicted and counted. Matching consumes both
entries, and entries older than a match are evicted too (the detector processed a newer frame, so
it skipped them), which keeps latency bounded under overload.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Generic, TypeVar

A = TypeVar("A")
B = TypeVar("B")

MAX_SLOP_S = 0.05
PERIOD_FRACTION = 0.45
"""The effective slop stays below this fraction of the image interval: a stamp can then be within the slop
of at most one frame."""
RECENT_IMAGES = 16


@dataclass
class SyncCounters:
    matched_exact: int = 0
    matched_approx: int = 0
    dropped_images: int = 0
    dropped_keypoints: int = 0


@dataclass(frozen=True)
class Match(Generic[A, B]):
    stamp_ns: int  # the image stamp: outputs carry the source image stamp
    image: A
    keypoints: B
    exact: bool


class StampSynchronizer(Generic[A, B]):
    """Two bounded stamp-keyed queues (images, keypoints) and a matching rule; not thread-safe."""

    def __init__(self, slop_s: float = 0.02, queue_size: int = 10) -> None:
        if not 0.0 <= slop_s <= MAX_SLOP_S:
            raise ValueError(f"sync_slop must be in [0, {MAX_SLOP_S}] s, got {slop_s}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.slop_ns = int(round(slop_s * 1e9))
        self.queue_size = queue_size
        self._images: OrderedDict[int, A] = OrderedDict()
        self._keypoints: OrderedDict[int, B] = OrderedDict()
        self._recent_image_stamps: deque[int] = deque(maxlen=RECENT_IMAGES + 1)
        self.counters = SyncCounters()

    def effective_slop_ns(self) -> int:
        """``slop_ns``, clamped below ``PERIOD_FRACTION`` x the shortest recent image interval (once 3 are known)."""
        stamps = sorted(set(self._recent_image_stamps))
        intervals = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
        if len(intervals) < 3:
            return self.slop_ns
        return min(self.slop_ns, int(PERIOD_FRACTION * min(intervals)))

    def add_image(self, stamp_ns: int, image: A) -> Match[A, B] | None:
        self._recent_image_stamps.append(stamp_ns)
        stamp = self._nearest(self._keypoints, stamp_ns)
        if stamp is None:
            self._push(self._images, stamp_ns, image, "dropped_images")
            return None
        return self._match(stamp_ns, image, stamp, self._keypoints.pop(stamp))

    def add_keypoints(self, stamp_ns: int, keypoints: B) -> Match[A, B] | None:
        stamp = self._nearest(self._images, stamp_ns)
        if stamp is None:
            self._push(self._keypoints, stamp_ns, keypoints, "dropped_keypoints")
            return None
        return self._match(stamp, self._images.pop(stamp), stamp_ns, keypoints)

    def pending(self) -> tuple[int, int]:
        """(unmatched images, unmatched keypoint messages) currently queued."""
        return len(self._images), len(self._keypoints)

    def expire_before(self, stamp_ns: int) -> int:
        """Drop (and count) unmatched entries stamped before ``stamp_ns``: a partner that late could only
        make a stale frame. Returns how many were dropped. Without this, a keypoint message whose image
        never came would wait until a later match or queue overflow pushed it out."""
        dropped = 0
        for queue, counter in ((self._images, "dropped_images"), (self._keypoints, "dropped_keypoints")):
            old = [s for s in queue if s < stamp_ns]
            for s in old:
                del queue[s]
            setattr(self.counters, counter, getattr(self.counters, counter) + len(old))
            dropped += len(old)
        return dropped

    def clear(self) -> None:
        self.counters.dropped_images += len(self._images)
        self.counters.dropped_keypoints += len(self._keypoints)
        self._images.clear()
        self._keypoints.clear()

    # -- internals ---------------------------------------------------------------------------------
    def _nearest(self, queue: OrderedDict[int, object], stamp_ns: int) -> int | None:
        if stamp_ns in queue:
            return stamp_ns
        best = min(queue, key=lambda s: abs(s - stamp_ns), default=None)
        if best is not None and abs(best - stamp_ns) <= self.effective_slop_ns():
            return best
        return None

    def _push(self, queue: OrderedDict, stamp_ns: int, item: object, counter: str) -> None:
        if stamp_ns in queue:  # a duplicate stamp replaces the older message of that stamp
            queue.pop(stamp_ns)
            setattr(self.counters, counter, getattr(self.counters, counter) + 1)
        queue[stamp_ns] = item
        while len(queue) > self.queue_size:
            queue.popitem(last=False)
            setattr(self.counters, counter, getattr(self.counters, counter) + 1)

    def _match(self, image_stamp: int, image: A, keypoints_stamp: int, keypoints: B) -> Match[A, B]:
        exact = image_stamp == keypoints_stamp
        if exact:
            self.counters.matched_exact += 1
        else:
            self.counters.matched_approx += 1
        newest = max(image_stamp, keypoints_stamp)
        slop = self.effective_slop_ns()
        for queue, counter in ((self._images, "dropped_images"), (self._keypoints, "dropped_keypoints")):
            stale = [s for s in queue if s < newest - slop]
            for s in stale:
                del queue[s]
            setattr(self.counters, counter, getattr(self.counters, counter) + len(stale))
        return Match(image_stamp, image, keypoints, exact)
