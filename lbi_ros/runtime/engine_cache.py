"""TensorRT engine build and the on-disk engine cache: keyed, validated, atomic, locked.

An engine is only valid for the exact ONNX file, TensorRT version, GPU model and compute capability,
precision and optimisation profile it was built for. :class:`EngineKey` holds all six; its digest names
the cache file, and a JSON sidecar next to the engine repeats the full key plus the engine's size and
sha256. :meth:`EngineCache.get_or_build` never loads an engine blindly: a missing or unreadable sidecar,
a key mismatch, a size or hash mismatch, an unknown file header or a failed deserialisation all count as
"stale or corrupt": the files are removed and the engine is rebuilt.

Cache layout (``root`` = ``~/.cache/lbi_ros/engines`` by default)::

    <stem>-<key digest 16>.engine        serialized engine (plan)
    <stem>-<key digest 16>.engine.json   sidecar: key, size, sha256, creation time
    <stem>-<key digest 16>.lock          flock'ed while a process validates or builds that engine
    timing/<trt>-<gpu>-sm<cc>.cache      TensorRT timing cache, shared by every engine of one GPU + version

The cache directory is private: created (or tightened) to 0700 and refused when another user owns it,
because whoever can write it could plant an engine and a matching sidecar (:func:`make_private_dir`).
Writes are atomic (temp file in the same directory, fsync, rename): a crash leaves the old file or
none, never half of one, and the sidecar is written after the engine, so an engine without a sidecar
is never trusted. The per-engine lock makes a second process wait for the first one's build and then
reuse its engine instead of building the same engine concurrently.

The build itself (:func:`build_serialized_engine`) takes the TensorRT module as an argument: the node
passes ``tensorrt`` (GPU), the CI op check passes ``tensorrt_rtx``, which parses and builds on a
CPU-only machine. Nothing here imports TensorRT or touches a GPU; deserialising is a callable the
caller supplies (:mod:`lbi_ros.runtime.tensorrt_backend`), so the file handling is testable anywhere.
Building with ``tensorrt`` on a GPU and deserialising there are **not yet run on hardware**; the cache was
exercised with engines that TensorRT-RTX built on a CPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from lbi_ros.runtime.safe_files import (
    DEFAULT_LOCK_TIMEOUT_S,
    CacheFileError,
    atomic_write_bytes,
    file_lock,
    make_private_dir,
    slug,
)

log = logging.getLogger(__name__)

Precision = Literal["fp32", "fp16"]
PRECISIONS: tuple[str, ...] = ("fp32", "fp16")
SIDECAR_FORMAT = 1
ENGINE_MAGICS: tuple[bytes, ...] = (b"ftrt", b"vtrt")
"""First four bytes of a serialized engine: TensorRT plan files, TensorRT-RTX plan files."""

T = TypeVar("T")


EngineCacheError = CacheFileError
"""The engine cache cannot produce a usable engine (unsafe directory, lock timeout, build failure), with the
reason; the same class as :class:`lbi_ros.runtime.safe_files.CacheFileError`, which the file helpers raise."""


class EngineBuildError(EngineCacheError):
    """TensorRT could not parse or build the ONNX graph. ``errors`` holds the parser's messages."""

    def __init__(self, message: str, errors: tuple[str, ...] = ()) -> None:
        super().__init__(message + ("".join(f"\n  {e}" for e in errors) if errors else ""))
        self.errors = errors


@dataclass(frozen=True)
class BatchProfile:
    """The one optimisation profile: the batch (persons) axis ranges over ``min..max``, tuned for ``opt``."""

    min_batch: int = 1
    opt_batch: int = 4
    max_batch: int = 16

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(f"profile needs 1 <= min_batch <= opt_batch <= max_batch, got {self.min_batch}, "
                             f"{self.opt_batch}, {self.max_batch}")

    @classmethod
    def up_to(cls, max_batch: int, opt_batch: int | None = None) -> BatchProfile:
        """Profile 1..``max_batch`` optimised for ``opt_batch`` (default min(4, max_batch))."""
        return cls(1, min(4, max_batch) if opt_batch is None else opt_batch, max_batch)

    def shapes(self, shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) concrete shapes of a tensor whose axis 0 is the batch; the rest must be static."""
        rest = tuple(int(d) for d in shape[1:])
        if any(d < 0 for d in rest):
            raise EngineBuildError(f"only the batch axis may be dynamic, got shape {tuple(shape)}")
        return (self.min_batch, *rest), (self.opt_batch, *rest), (self.max_batch, *rest)


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on. Any change gives another digest and so another cache file."""

    onnx_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: str
    """``"major.minor"``, e.g. ``"8.7"`` for Jetson Orin."""
    precision: Precision
    profile: BatchProfile

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def digest(self) -> str:
        """sha256 over the canonical JSON of the key (hex)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class EnginePaths:
    engine: Path
    sidecar: Path
    lock: Path


@dataclass(frozen=True)
class CachedEngine(Generic[T]):
    """What :meth:`EngineCache.get_or_build` returns: the loaded engine (whatever ``load`` made of the
    bytes; the bytes themselves when no loader is given), where it lives, and whether it was just built."""

    value: T
    path: Path
    built: bool


class EngineCache:
    """Engines under one directory, each validated before use and built at most once at a time."""

    def __init__(self, root: str | Path, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> None:
        self.root = Path(root).expanduser()
        self.lock_timeout_s = lock_timeout_s

    def paths(self, key: EngineKey, stem: str = "lifter") -> EnginePaths:
        base = f"{slug(stem)}-{key.digest()[:16]}"
        return EnginePaths(self.root / f"{base}.engine", self.root / f"{base}.engine.json", self.root / f"{base}.lock")

    def timing_cache_path(self, key: EngineKey) -> Path:
        """Timing caches depend on the GPU and TensorRT version only (not on the ONNX or the profile)."""
        cc = key.compute_capability.replace(".", "")
        return self.root / "timing" / f"{slug(key.trt_version)}-{slug(key.gpu_name)}-sm{cc}.cache"

    def read_timing_cache(self, key: EngineKey) -> bytes:
        path = self.timing_cache_path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return b""

    def write_timing_cache(self, key: EngineKey, data: bytes) -> None:
        if data:
            atomic_write_bytes(self.timing_cache_path(key), data)

    # -- validation -----------------------------------------------------------------------------------
    def validate(self, key: EngineKey, stem: str = "lifter",
                 load: Callable[[bytes], Any] | None = None) -> tuple[Any, str | None]:
        """Check the cached engine for ``key``: returns ``(value, None)`` when usable, else ``(None, reason)``.

        ``value`` is ``load(bytes)`` (e.g. a deserialised ``ICudaEngine``) or the bytes when ``load`` is None.
        ``load`` failing (raising, or returning None) makes the engine corrupt.
        """
        paths = self.paths(key, stem)
        if not paths.engine.is_file():
            return None, "not cached"
        try:
            sidecar = json.loads(paths.sidecar.read_text())
        except FileNotFoundError:
            return None, f"{paths.sidecar.name} is missing (interrupted write?)"
        except (OSError, ValueError) as exc:
            return None, f"{paths.sidecar.name} is unreadable: {exc}"
        if not isinstance(sidecar, dict) or sidecar.get("format") != SIDECAR_FORMAT:
            return None, f"{paths.sidecar.name} has an unknown format"
        if sidecar.get("key") != json.loads(json.dumps(key.to_dict())):
            return None, f"stale: built for {sidecar.get('key')}, need {key.to_dict()}"
        data = paths.engine.read_bytes()
        reason = check_engine_bytes(data, size=sidecar.get("size"), sha256=sidecar.get("sha256"))
        if reason:
            return None, reason
        if load is None:
            return data, None
        try:
            value = load(data)
        except Exception as exc:  # any deserialisation failure means: do not use this file
            return None, f"deserialisation failed: {exc}"
        if value is None:
            return None, "deserialisation failed (TensorRT returned no engine)"
        return value, None

    def remove(self, key: EngineKey, stem: str = "lifter") -> None:
        paths = self.paths(key, stem)
        for path in (paths.sidecar, paths.engine):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def store(self, key: EngineKey, data: bytes, stem: str = "lifter") -> Path:
        """Write engine then sidecar atomically (a reader never sees a sidecar for a half-written engine)."""
        reason = check_engine_bytes(data)
        if reason:
            raise EngineCacheError(f"refusing to cache an invalid engine: {reason}")
        paths = self.paths(key, stem)
        make_private_dir(self.root)
        self.remove(key, stem)
        atomic_write_bytes(paths.engine, data)
        sidecar = {
            "format": SIDECAR_FORMAT,
            "key": key.to_dict(),
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        atomic_write_bytes(paths.sidecar, (json.dumps(sidecar, indent=2) + "\n").encode())
        return paths.engine

    # -- the one entry point ---------------------------------------------------------------------------
    def get_or_build(self, key: EngineKey, build: Callable[[], bytes],
                     load: Callable[[bytes], T] | None = None, stem: str = "lifter") -> CachedEngine[T]:
        """The cached engine for ``key`` if it validates (and loads), else ``build()`` it, store and load it.

        Holds the engine's lock throughout, so concurrent callers build once and the others reuse it.
        """
        paths = self.paths(key, stem)
        make_private_dir(self.root)
        with file_lock(paths.lock, self.lock_timeout_s):
            value, reason = self.validate(key, stem, load)
            if reason is None:
                log.info("using cached engine %s", paths.engine)
                return CachedEngine(value, paths.engine, built=False)
            if reason != "not cached":
                log.warning("cached engine %s rejected (%s); rebuilding", paths.engine, reason)
            self.remove(key, stem)
            start = time.monotonic()
            data = build()
            self.store(key, data, stem)
            log.info("built engine %s (%.1f MB) in %.1f s", paths.engine, len(data) / 1e6, time.monotonic() - start)
            value, reason = self.validate(key, stem, load)
            if reason is not None:
                self.remove(key, stem)
                raise EngineCacheError(f"the freshly built engine {paths.engine} does not load: {reason}")
            return CachedEngine(value, paths.engine, built=True)


def check_engine_bytes(data: bytes, size: int | None = None, sha256: str | None = None) -> str | None:
    """Why ``data`` is not a plausible serialized engine (header, size, hash), or None if it is."""
    if len(data) < 32:
        return f"truncated: {len(data)} bytes"
    if data[:4] not in ENGINE_MAGICS:
        return f"bad header {data[:4]!r} (expected one of {ENGINE_MAGICS})"
    if size is not None and len(data) != size:
        return f"size {len(data)} does not match the recorded {size}"
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        return "sha256 does not match the recorded one (corrupted on disk?)"
    return None


# -- the build step (TensorRT module passed in: tensorrt on a GPU, tensorrt_rtx anywhere) ------------------
def parser_errors(parser: Any) -> tuple[str, ...]:
    """Readable ONNX parser errors: node name, operator and message where the TensorRT version gives them."""
    errors = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        where = []
        for attr in ("node_name", "node_operator"):
            with contextlib.suppress(Exception):
                value = getattr(error, attr)()
                if value:
                    where.append(str(value))
        errors.append(f"[{' '.join(where) or 'graph'}] {error.desc()}")
    return tuple(errors)


def is_tensorrt_rtx(trt: Any) -> bool:
    return getattr(trt, "__name__", "").startswith("tensorrt_rtx")


def build_serialized_engine(trt: Any, onnx_path: str | Path, profile: BatchProfile,
                            timing_cache: bytes | None = None,
                            log_severity: str = "WARNING") -> tuple[bytes, bytes | None]:
    """Parse ``onnx_path`` and build a strongly typed engine with one batch profile.

    Strongly typed: the ONNX graph's own types decide the precision (an fp16 graph from
    :mod:`lbi_ros.runtime.precision` builds an fp16 engine), as TensorRT 11 requires and 10.x accepts.
    ``timing_cache``: bytes of a previous timing cache (``b""`` starts one; None: no timing cache).
    Returns ``(engine bytes, updated timing cache bytes or None)``.
    """
    logger = trt.Logger(getattr(trt.Logger, log_severity))
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise EngineBuildError(f"TensorRT could not parse {onnx_path}", parser_errors(parser))
    config = builder.create_builder_config()
    tf32 = getattr(getattr(trt, "BuilderFlag", None), "TF32", None)
    if tf32 is not None:  # fp32 means fp32 (parity <= 1e-4 with PyTorch); the fast path is the fp16 graph
        config.clear_flag(tf32)
    opt_profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        opt_profile.set_shape(tensor.name, *profile.shapes(tuple(tensor.shape)))
    config.add_optimization_profile(opt_profile)
    use_timing_cache = timing_cache is not None and not is_tensorrt_rtx(trt)  # no-ops (deprecated) in RTX
    if use_timing_cache:
        try:
            cache = config.create_timing_cache(timing_cache)
        except Exception as exc:  # a corrupt timing cache only costs tuning time: start a fresh one
            log.warning("timing cache unusable (%s); starting an empty one", exc)
            cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    new_cache = bytes(memoryview(config.get_timing_cache().serialize())) if use_timing_cache else None
    return bytes(memoryview(serialized)), new_cache
