"""Image/keypoint pairing: exact first, approximate within the slop, bounded queues, counted drops."""

from __future__ import annotations

import pytest

from lbi_ros.ros.synchronizer import StampSynchronizer

MS = 1_000_000


def test_exact_match_either_order():
    sync = StampSynchronizer(slop_s=0.02, queue_size=5)
    assert sync.add_image(100 * MS, "img") is None
    match = sync.add_keypoints(100 * MS, "kp")
    assert match is not None and match.exact and (match.image, match.keypoints) == ("img", "kp")
    assert sync.add_keypoints(200 * MS, "kp2") is None
    match = sync.add_image(200 * MS, "img2")
    assert match.exact and match.stamp_ns == 200 * MS
    assert sync.counters.matched_exact == 2 and sync.pending() == (0, 0)


def test_exact_preferred_over_nearer_approximate():
    sync = StampSynchronizer(slop_s=0.02)
    sync.add_image(100 * MS, "a")
    sync.add_image(101 * MS, "b")
    match = sync.add_keypoints(100 * MS, "kp")
    assert match.image == "a" and match.exact


def test_approximate_within_slop_only():
    sync = StampSynchronizer(slop_s=0.02)
    sync.add_image(100 * MS, "img")
    assert sync.add_keypoints(125 * MS, "far") is None  # 25 ms > 20 ms slop
    match = sync.add_keypoints(115 * MS, "near")
    assert match is not None and not match.exact and match.stamp_ns == 100 * MS  # stamped with the image
    assert sync.counters.matched_approx == 1


def test_bounded_queues_drop_oldest_and_count():
    sync = StampSynchronizer(slop_s=0.0, queue_size=3)
    for i in range(10):
        sync.add_image(i * 100 * MS, i)
    assert sync.pending() == (3, 0) and sync.counters.dropped_images == 7
    assert sync.add_keypoints(100 * MS, "gone") is None  # its image was evicted
    assert sync.add_keypoints(900 * MS, "kp").image == 9


def test_match_evicts_older_unmatched_entries():
    sync = StampSynchronizer(slop_s=0.0, queue_size=10)
    for i in range(5):
        sync.add_image(i * 33 * MS, i)
    sync.add_keypoints(3 * 33 * MS, "kp")  # the detector skipped frames 0-2
    assert sync.pending() == (1, 0) and sync.counters.dropped_images == 3


@pytest.mark.parametrize("slop, size", [(-0.01, 5), (0.06, 5), (0.02, 0)])
def test_invalid_settings_rejected(slop, size):
    with pytest.raises(ValueError):
        StampSynchronizer(slop_s=slop, queue_size=size)
