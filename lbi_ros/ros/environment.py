"""The one place that decides the environment of every ROS process the project starts.

Tests, CI, the demo and benchmarks all start ROS processes through :func:`ros_environment` /
:func:`apply_ros_environment` / :func:`popen_ros`, so three rules hold everywhere:

- **Loopback only.** ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``. ROS 2 Kilted ignores the old
  ``ROS_LOCALHOST_ONLY``: with only that set, Fast DDS discovery multicast leaves the machine.
  ``ROS_STATIC_PEERS`` is cleared so no peer outside this host is contacted either.
- **A domain of its own.** ``ROS_DOMAIN_ID`` is unique per run: :func:`reserve_domain_id` takes an
  exclusive ``flock`` on a per-id lock file, so concurrent test runs on one machine never share a
  domain (and never see each other's topics).
- **Logs inside the project.** ``ROS_LOG_DIR`` points into the project's working folder instead of
  ``~/.ros/log``.
- **Frames that arrive.** ``FASTDDS_DEFAULT_PROFILES_FILE`` points at ``config/fastdds_large_frames.xml``:
  a shared-memory segment that holds camera frames (Fast DDS's default 512 KB cannot hold one 640x480
  frame, and best-effort samples that find no room are lost; measured in the README). A profile the
  caller already set (``FASTDDS_...`` or its Fast DDS 2.x name ``FASTRTPS_DEFAULT_PROFILES_FILE``) is kept.

This module does not import rclpy: it must run before rclpy creates its DDS participant, which
reads these variables once.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

LOOPBACK_ENV: Mapping[str, str] = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_STATIC_PEERS": ""}
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")  # Fast DDS 3.x, 2.x
LARGE_FRAMES_PROFILE_NAME = "fastdds_large_frames.xml"

# Fast DDS maps domain ids to UDP ports; 0-101 is the range that is valid on every Linux host.
# 0 is the default everyone uses by hand, so reserved ids start at 1.
DOMAIN_ID_RANGE = range(1, 102)
_LOCK_DIR = Path(tempfile.gettempdir()) / "lbi_ros_domain_locks"


def project_root() -> Path | None:
    """The source checkout this package runs from, or None for an installed package."""
    candidate = Path(__file__).resolve().parents[2]
    return candidate if (candidate / "pyproject.toml").is_file() else None


def default_log_dir() -> Path:
    """``<checkout>/.ros-log`` in a source checkout, else ``~/.cache/lbi_ros/ros-log``."""
    root = project_root()
    return root / ".ros-log" if root else Path.home() / ".cache" / "lbi_ros" / "ros-log"


def large_frames_profile() -> Path | None:
    """The shipped Fast DDS profile for large frames: ``config/`` of the checkout, else ``share/lbi_ros/config``
    of an ament prefix (a colcon install) or of this venv; None if neither has it."""
    root = project_root()
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    candidates = ([root / "config"] if root else []) + [Path(p) / "share" / "lbi_ros" / "config" for p in prefixes]
    return next((c / LARGE_FRAMES_PROFILE_NAME for c in candidates if (c / LARGE_FRAMES_PROFILE_NAME).is_file()),
                None)


@dataclass
class DomainReservation:
    """An exclusively held ROS domain id; the lock is released by :meth:`release` or at exit."""

    domain_id: int
    _handle: object

    def release(self) -> None:
        handle = self._handle
        if handle is not None:
            handle.close()  # closing the file drops the flock
            self._handle = None

    def __enter__(self) -> DomainReservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def reserve_domain_id(preferred: int | None = None) -> DomainReservation:
    """Lock and return a ROS domain id no other live process of this machine holds through here.

    The search starts from a pid-derived id so concurrent runs rarely contend for the same lock.
    Raises RuntimeError when every id in :data:`DOMAIN_ID_RANGE` is held.
    """
    _LOCK_DIR.mkdir(parents=True, exist_ok=True)
    ids = list(DOMAIN_ID_RANGE)
    start = ids.index(preferred) if preferred in DOMAIN_ID_RANGE else os.getpid() % len(ids)
    for offset in range(len(ids)):
        domain_id = ids[(start + offset) % len(ids)]
        handle = open(_LOCK_DIR / f"{domain_id}.lock", "a+")  # noqa: SIM115 - held for the reservation
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        return DomainReservation(domain_id, handle)
    raise RuntimeError(f"all ROS domain ids {DOMAIN_ID_RANGE.start}..{DOMAIN_ID_RANGE.stop - 1} are in use")


def ros_environment(
    domain_id: int,
    log_dir: str | os.PathLike[str] | None = None,
    base: Mapping[str, str] | None = None,
    large_frames: bool = True,
) -> dict[str, str]:
    """Return a copy of ``base`` (default ``os.environ``) set up for a loopback-only ROS process.

    ``large_frames``: point Fast DDS at :func:`large_frames_profile` unless ``base`` names a profile
    already; False removes any profile (Fast DDS defaults: what ``lbi bench node delivery`` compares).
    """
    if domain_id not in DOMAIN_ID_RANGE and domain_id != 0:
        raise ValueError(f"ROS_DOMAIN_ID must be in 0..101, got {domain_id}")
    env = dict(os.environ if base is None else base)
    env.update(LOOPBACK_ENV)
    env.pop("ROS_LOCALHOST_ONLY", None)  # ignored by Kilted; drop it so nobody relies on it
    env["ROS_DOMAIN_ID"] = str(domain_id)
    log_path = Path(log_dir) if log_dir is not None else default_log_dir()
    log_path.mkdir(parents=True, exist_ok=True)
    env["ROS_LOG_DIR"] = str(log_path)
    # ament_index lookups (share/ of message packages) need the venv prefix without a sourced ROS.
    prefixes = [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    if sys.prefix not in prefixes:
        prefixes.append(sys.prefix)
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(prefixes)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if not large_frames:
        for key in PROFILE_VARIABLES:
            env.pop(key, None)
    elif (profile := next((env[k] for k in PROFILE_VARIABLES if env.get(k)), None) or large_frames_profile()):
        env[PROFILE_VARIABLES[0]] = str(profile)  # Kilted's rmw warns that the 2.x name is deprecated
    return env


def apply_ros_environment(domain_id: int, log_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Set up *this* process for ROS (call before ``rclpy.init``); returns the applied environment."""
    env = ros_environment(domain_id, log_dir)
    os.environ.clear()
    os.environ.update(env)
    return env


@contextmanager
def ros_environment_applied(domain_id: int, log_dir: str | os.PathLike[str] | None = None) -> Iterator[dict[str, str]]:
    """:func:`apply_ros_environment` for a ``with`` block; the previous environment comes back after it.

    For code that runs ROS inside a process that outlives it (the demo called from a test, a
    benchmark): leaving another run's ROS_DOMAIN_ID behind would cut that process off its own graph.
    """
    saved = dict(os.environ)
    try:
        yield apply_ros_environment(domain_id, log_dir)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def popen_ros(
    args: Sequence[str],
    domain_id: int,
    log_dir: str | os.PathLike[str] | None = None,
    large_frames: bool = True,
    **popen_kwargs: object,
) -> subprocess.Popen:
    """Start a ROS process with the loopback-only environment of :func:`ros_environment`.

    ``args[0] == "python"`` is replaced by this interpreter: ROS processes must start with the venv's
    own Python so its bootstrapper sets the library path (see the README's pitfalls).
    """
    argv = list(args)
    if argv and argv[0] == "python":
        argv[0] = sys.executable
    env = ros_environment(domain_id, log_dir, base=popen_kwargs.pop("env", None),  # type: ignore[arg-type]
                          large_frames=large_frames)
    # A child of another venv must not inherit that venv's bootstrap guard or library path.
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    proc = subprocess.Popen(argv, env=env, **popen_kwargs)  # type: ignore[call-overload]
    _STARTED.append(proc)
    return proc


_STARTED: list[subprocess.Popen] = []


def stop_started_processes(timeout_s: float = 10.0) -> list[int]:
    """SIGINT, then SIGKILL, every process :func:`popen_ros` started that is still running; their pids.

    A safety net for test sessions and tools: a failed fixture must not leave a node running on the
    machine (it would keep its DDS participant and shared memory, and keep a core busy).
    """
    leftovers = [p for p in _STARTED if p.poll() is None]
    for proc in leftovers:
        proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout_s
    for proc in leftovers:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _STARTED.clear()
    return [p.pid for p in leftovers]
