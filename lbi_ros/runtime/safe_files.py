"""Files that must not be half-written, shared with another user, or written by two processes at once.

Used by the TensorRT engine cache (:mod:`lbi_ros.runtime.engine_cache`): an engine is code the GPU runs,
so its directory is private, writes are atomic (temp file, fsync, rename) and builds are serialised by a
per-engine ``flock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_LOCK_TIMEOUT_S = 1800.0
"""A Jetson Orin Nano can take minutes to build; a lock held longer than this means a stuck process."""


class CacheFileError(RuntimeError):
    """A cache directory or lock that cannot be used safely (another owner, not writable, stuck lock)."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def slug(text: str) -> str:
    """File-name-safe form of a version or GPU name (``NVIDIA Jetson AGX Orin`` -> ``nvidia-jetson-agx-orin``)."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-") or "unknown"


def make_private_dir(path: str | Path) -> Path:
    """Create ``path`` (and parents) with user-only permissions, or tighten an existing one of ours to 0700.

    Raises :class:`CacheFileError` when the directory belongs to another user (its owner could replace
    engines), ``OSError`` when it cannot be created (a file in the way, no permission).
    """
    path = Path(path).expanduser()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise CacheFileError(f"{path} belongs to uid {info.st_uid}, not to this user ({os.getuid()}): engines "
                               "from a directory another user can write are not trusted; choose another engine_cache_dir")
    if info.st_mode & 0o077:
        log.warning("%s was accessible to other users (mode %o); restricting it to 0700", path, info.st_mode & 0o777)
        os.chmod(path, 0o700)
    if not os.access(path, os.W_OK | os.X_OK):
        raise CacheFileError(f"{path} is not writable by this user")
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same directory, fsync and rename (POSIX-atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # persist the rename itself
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


@contextlib.contextmanager
def file_lock(path: str | Path, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S, poll_s: float = 0.1) -> Iterator[None]:
    """Exclusive ``flock`` on ``path`` (created if missing), waiting at most ``timeout_s``.

    flock locks belong to the open file description, so they exclude other processes and other
    threads of this process alike, and the kernel releases them if the holder dies.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout_s
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise CacheFileError(f"{path} has been locked by another process for over {timeout_s:.0f} s "
                                           "(is a build stuck? remove the lock file if no lbi process runs)") from None
                if not waited:
                    log.info("waiting for another process to finish with %s", path)
                    waited = True
                time.sleep(poll_s)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
