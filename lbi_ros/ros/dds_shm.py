"""Fast DDS shared memory: remove the segments killed processes leave in /dev/shm; size the frames profile.

The profile every project process gets is ``config/fastdds_large_frames.xml`` (16 MB segment, see
:mod:`lbi_ros.ros.environment`); :func:`write_large_frames_profile` writes a copy with another segment
size for larger frames (8K tests).

A ROS process that exits normally removes its Fast DDS segment; one killed with SIGKILL (the OOM
killer, a watchdog, ``kill -9``) leaves ``fastdds_<16 hex>`` (0.5 MB by default, 16 MB with the frames
profile, of which /dev/shm holds only the pages that were written) and its ``_el`` lock file behind. They do not stop the next start, but they add up: Docker's default 64 MB /dev/shm is full
after about a hundred crash-restarts, and then Fast DDS cannot create segments at all.

Each segment's lock file is ``flock``-ed by its live owner, and the kernel drops that lock when the
owner dies, so a lock file that can be locked belongs to a dead process: the same test as
``fastdds shm clean``. Only per-participant segments are removed, never the shared ``fastdds_port*``
files (another node may be opening one at this instant, and Fast DDS repairs stale ports itself);
segments younger than ``min_age_s`` are left alone, since their owner may be creating them right now.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import time
from pathlib import Path

log = logging.getLogger(__name__)

SHM_DIR = Path("/dev/shm")
SEGMENT_LOCK = re.compile(r"^fastdds_[0-9a-z]{16}_(el|sl)$")


def _lock_is_free(path: Path) -> bool:
    """True if nobody holds ``path``'s flock (its owner is dead); never creates the file."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def clean_stale_segments(shm_dir: str | Path = SHM_DIR, min_age_s: float = 2.0) -> list[str]:
    """Remove Fast DDS segments of dead processes (owned by this user) from ``shm_dir``; return their names."""
    shm_dir = Path(shm_dir)
    try:
        names = os.listdir(shm_dir)
    except OSError:
        return []
    removed = []
    now = time.time()
    for name in names:
        if not SEGMENT_LOCK.match(name):
            continue
        lock = shm_dir / name
        try:
            info = lock.stat()
        except OSError:
            continue
        if info.st_uid != os.getuid() or now - info.st_mtime < min_age_s or not _lock_is_free(lock):
            continue
        segment = shm_dir / name[:-3]
        for path in (segment, lock):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        removed.append(segment.name)
    if removed:
        log.info("removed %d shared-memory segment(s) of dead Fast DDS processes: %s", len(removed), removed)
    return removed


def write_large_frames_profile(path: str | Path, segment_bytes: int) -> Path:
    """Write a copy of the shipped ``config/fastdds_large_frames.xml`` with a ``segment_bytes`` shared-memory
    segment (e.g. for 8K frames); point FASTDDS_DEFAULT_PROFILES_FILE at it. The shipped file itself is what
    every process the project starts gets (:mod:`lbi_ros.ros.environment`)."""
    from lbi_ros.ros.environment import large_frames_profile

    shipped = large_frames_profile()
    if shipped is None:
        raise FileNotFoundError("config/fastdds_large_frames.xml is not in this checkout or install")
    text, count = re.subn(r"<segment_size>\d+</segment_size>", f"<segment_size>{int(segment_bytes)}</segment_size>",
                          shipped.read_text())
    if count != 1:
        raise ValueError(f"{shipped} has {count} <segment_size> elements, expected 1")
    path = Path(path)
    path.write_text(text)
    return path
