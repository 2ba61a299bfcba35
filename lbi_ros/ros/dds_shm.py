"""Remove the shared-memory segments that killed Fast DDS processes leave in /dev/shm.

A ROS process that exits normally removes its Fast DDS segment; one killed with SIGKILL (the OOM
killer, a watchdog, ``kill -9``) leaves ``fastdds_<16 hex>`` (about 0.5 MB) and its ``_el`` lock file
behind. They do not stop the next start, but they add up: Docker's default 64 MB /dev/shm is full
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


# A Fast DDS profile for a process that publishes large frames: a shared-memory segment that holds them.
# With the default 512 KB segment, larger samples go over UDP fragments, and best effort loses them.
LARGE_SHM_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<dds xmlns="http://www.eprosima.com"><profiles>
  <transport_descriptors>
    <transport_descriptor><transport_id>shm_large</transport_id><type>SHM</type>
      <segment_size>{segment_bytes}</segment_size></transport_descriptor>
    <transport_descriptor><transport_id>udp</transport_id><type>UDPv4</type></transport_descriptor>
  </transport_descriptors>
  <participant profile_name="large_frames" is_default_profile="true"><rtps>
    <userTransports><transport_id>shm_large</transport_id><transport_id>udp</transport_id></userTransports>
    <useBuiltinTransports>false</useBuiltinTransports>
  </rtps></participant>
</profiles></dds>
"""


def write_large_frames_profile(path: str | Path, segment_bytes: int) -> Path:
    """Write :data:`LARGE_SHM_PROFILE` for ``segment_bytes``; point FASTDDS_DEFAULT_PROFILES_FILE at it."""
    path = Path(path)
    path.write_text(LARGE_SHM_PROFILE.format(segment_bytes=int(segment_bytes)))
    return path
