"""Engine cache: the key covers every component, a stale or corrupt engine is rejected and rebuilt, atomic
files, one build at a time. Engines are real: built by TensorRT-RTX, which builds on a CPU-only machine
(skipped with the reason where tensorrt_rtx is absent; a failure under CI=true, where setup installs it). Deserialising needs a GPU, so the loader step is
exercised through its contract (raise / return None = deserialisation failed); the GPU tests do it for real.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import pytest
import torch

from lbi_ros.model import ModelConfig, build_model
from lbi_ros.runtime.engine_cache import (
    BatchProfile,
    EngineCache,
    EngineCacheError,
    EngineKey,
    build_serialized_engine,
    check_engine_bytes,
)
from lbi_ros.runtime.safe_files import file_lock, sha256_file
from lbi_ros.runtime.trt_check import import_tensorrt_rtx

from .conftest import require, require_module

require_module("onnxruntime")
RTX, RTX_REASON = import_tensorrt_rtx()
needs_rtx = pytest.mark.usefixtures("_require_rtx")


@pytest.fixture
def _require_rtx() -> None:
    require(RTX is not None, f"no real TensorRT builder on this machine: {RTX_REASON}")
PROFILE = BatchProfile(1, 2, 4)
TINY = ModelConfig(kind="lift2d", dim=32, num_heads=2, depth_lift2d=1)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lbi_ros.runtime.onnx_export import export_onnx

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_onnx(build_model(TINY), path)
    return path


@pytest.fixture(scope="module")
def real_engine(tiny_onnx: Path) -> bytes:
    """A real serialized engine (TensorRT-RTX, built on this CPU)."""
    require(RTX is not None, f"no real TensorRT builder on this machine: {RTX_REASON}")
    data, _ = build_serialized_engine(RTX, tiny_onnx, PROFILE)
    return data


def make_key(onnx: Path, **changes: object) -> EngineKey:
    key = EngineKey(onnx_sha256=sha256_file(onnx), trt_version="rtx-1.7.1", gpu_name="NVIDIA Jetson AGX Orin",
                    compute_capability="8.7", precision="fp32", profile=PROFILE)
    return dataclasses.replace(key, **changes)


# --- the key --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change", [
    {"onnx_sha256": "0" * 64}, {"trt_version": "10.3.0"}, {"gpu_name": "NVIDIA GeForce RTX 4090"},
    {"compute_capability": "8.9"}, {"precision": "fp16"}, {"profile": BatchProfile(1, 4, 16)},
    {"profile": BatchProfile(1, 2, 8)}, {"profile": BatchProfile(2, 2, 4)},
], ids=lambda c: next(iter(c)) + "=" + str(next(iter(c.values())))[:12])
def test_cache_key_changes_with_every_component(change: dict, tiny_onnx: Path, tmp_path: Path) -> None:
    base, other = make_key(tiny_onnx), make_key(tiny_onnx, **change)
    assert base.digest() != other.digest()
    cache = EngineCache(tmp_path)
    assert cache.paths(base).engine != cache.paths(other).engine
    assert make_key(tiny_onnx).digest() == base.digest(), "the digest is deterministic"


def test_onnx_bytes_change_the_key(tiny_onnx: Path, tmp_path: Path) -> None:
    copy = tmp_path / "tiny.onnx"
    copy.write_bytes(tiny_onnx.read_bytes() + b"\0")
    assert make_key(copy).digest() != make_key(tiny_onnx).digest()


def test_timing_cache_is_shared_per_gpu_and_version_only(tiny_onnx: Path, tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    base = make_key(tiny_onnx)
    assert cache.timing_cache_path(base) == cache.timing_cache_path(make_key(tiny_onnx, profile=BatchProfile()))
    assert cache.timing_cache_path(base) != cache.timing_cache_path(make_key(tiny_onnx, compute_capability="8.9"))
    cache.write_timing_cache(base, b"tuning")
    assert cache.read_timing_cache(base) == b"tuning"
    assert cache.read_timing_cache(make_key(tiny_onnx, trt_version="10.3.0")) == b""


def test_profile_validation() -> None:
    with pytest.raises(ValueError, match="min_batch <= opt_batch <= max_batch"):
        BatchProfile(1, 8, 4)
    assert BatchProfile.up_to(2) == BatchProfile(1, 2, 2)
    assert BatchProfile().shapes((-1, 17, 3)) == ((1, 17, 3), (4, 17, 3), (16, 17, 3))


# --- build, reuse, reject, rebuild --------------------------------------------------------------------
@needs_rtx
def test_real_engine_is_built_once_then_reused(tiny_onnx: Path, tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    key = make_key(tiny_onnx)
    builds: list[int] = []

    def build() -> bytes:
        builds.append(1)
        return build_serialized_engine(RTX, tiny_onnx, key.profile)[0]

    first = cache.get_or_build(key, build)
    assert first.built and len(builds) == 1
    assert check_engine_bytes(first.value) is None
    sidecar = json.loads(cache.paths(key).sidecar.read_text())
    assert sidecar["key"] == json.loads(json.dumps(key.to_dict()))
    assert sidecar["size"] == len(first.value) == first.path.stat().st_size
    again = cache.get_or_build(key, build)
    assert not again.built and len(builds) == 1 and again.value == first.value

    # a flipped byte in the middle of a real engine: caught by the hash, rebuilt by the real builder
    data = bytearray(first.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.path.write_bytes(bytes(data))
    assert cache.validate(key)[1] is not None
    rebuilt = cache.get_or_build(key, build)
    assert rebuilt.built and len(builds) == 2
    assert cache.validate(key)[1] is None
    assert not list(tmp_path.glob(".*.tmp")), "no temp files left behind"


def _flip(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))


CORRUPTIONS = {
    "truncated": lambda paths: paths.engine.write_bytes(paths.engine.read_bytes()[: paths.engine.stat().st_size // 2]),
    "bit-flip": lambda paths: _flip(paths.engine),
    "bad-header": lambda paths: paths.engine.write_bytes(b"PK\x03\x04" + paths.engine.read_bytes()[4:]),
    "empty": lambda paths: paths.engine.write_bytes(b""),
    "sidecar-missing": lambda paths: paths.sidecar.unlink(),
    "sidecar-garbage": lambda paths: paths.sidecar.write_text("{not json"),
    "sidecar-stale-key": lambda paths: paths.sidecar.write_text(json.dumps(
        {**json.loads(paths.sidecar.read_text()), "key": {"trt_version": "8.6"}})),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupt_or_stale_engine_is_rejected_and_rebuilt(corruption: str, real_engine: bytes, tiny_onnx: Path,
                                                         tmp_path: Path) -> None:
    """``build`` hands out the real engine built once for this module: what is under test is the detection."""
    cache = EngineCache(tmp_path)
    key = make_key(tiny_onnx)
    builds: list[int] = []

    def build() -> bytes:
        builds.append(1)
        return real_engine

    cache.get_or_build(key, build)
    CORRUPTIONS[corruption](cache.paths(key))
    value, reason = cache.validate(key)
    assert value is None and reason, "a damaged cache entry must not validate"
    result = cache.get_or_build(key, build)
    assert result.built and len(builds) == 2
    assert result.value == real_engine and cache.paths(key).engine.read_bytes() == real_engine


def test_deserialisation_failure_rejects_the_engine(real_engine: bytes, tiny_onnx: Path, tmp_path: Path) -> None:
    """TensorRT's ``deserialize_cuda_engine`` returns None (or raises) for an engine it cannot load, e.g.
    one from another TensorRT build with the same version string: the cache must then rebuild."""
    cache = EngineCache(tmp_path)
    key = make_key(tiny_onnx)
    cache.store(key, real_engine)
    loads: list[bytes] = []

    def load_fails_once(data: bytes) -> object | None:
        loads.append(data)
        return None if len(loads) == 1 else {"engine": len(data)}

    builds: list[int] = []
    result = cache.get_or_build(key, lambda: builds.append(1) or real_engine, load=load_fails_once)
    assert result.built and len(builds) == 1 and result.value == {"engine": len(real_engine)}

    def always_raises(data: bytes) -> object:
        raise RuntimeError("Serialization assertion failed")

    with pytest.raises(EngineCacheError, match="does not load"):
        cache.get_or_build(key, lambda: real_engine, load=always_raises)
    assert not cache.paths(key).engine.exists(), "an engine that does not load is not left in the cache"


def test_store_refuses_non_engines(tiny_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(EngineCacheError, match="bad header"):
        EngineCache(tmp_path).store(make_key(tiny_onnx), b"this is not a TensorRT plan file at all")


# --- concurrency -------------------------------------------------------------------------------------------
def test_concurrent_callers_build_once(real_engine: bytes, tiny_onnx: Path, tmp_path: Path) -> None:
    key = make_key(tiny_onnx)
    builds: list[int] = []
    results: list[bool] = []
    start = threading.Barrier(3)

    def build() -> bytes:
        builds.append(1)
        threading.Event().wait(0.3)  # a slow build: the others must wait for it, not start their own
        return real_engine

    def worker() -> None:
        start.wait()
        results.append(EngineCache(tmp_path).get_or_build(key, build).built)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(builds) == 1 and sorted(results) == [False, False, True]


def test_lock_timeout_is_a_clear_error(tiny_onnx: Path, tmp_path: Path) -> None:
    cache = EngineCache(tmp_path, lock_timeout_s=0.3)
    key = make_key(tiny_onnx)
    with file_lock(cache.paths(key).lock), pytest.raises(EngineCacheError, match="locked by another process"):
        cache.get_or_build(key, lambda: pytest.fail("must not build without the lock"))


# --- the GPU path -------------------------------------------------------------------------------------------
def test_build_engine_cli_without_gpu_exits_nonzero(tiny_onnx: Path, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine without a GPU (the check is patched, so it runs on GPU machines too)."""
    from lbi_ros.cli.main import main
    from lbi_ros.runtime import tensorrt_backend

    reason = "no CUDA device (patched)"
    monkeypatch.setattr(tensorrt_backend, "tensorrt_unavailable_reason", lambda: reason)
    assert main(["build-engine", str(tiny_onnx), "--cache-dir", str(tmp_path)]) == 1
    assert "cannot build a TensorRT engine on this machine" in caplog.text and reason in caplog.text
    assert not list(tmp_path.glob("*.engine"))


@pytest.mark.gpu
def test_tensorrt_engine_cache_on_gpu(tiny_onnx: Path, tmp_path: Path) -> None:
    from lbi_ros.runtime.tensorrt_backend import ensure_engine, tensorrt_unavailable_reason

    reason = tensorrt_unavailable_reason()
    if reason:
        pytest.skip(f"TensorRT GPU test: {reason}")
    first = ensure_engine(tiny_onnx, tmp_path, PROFILE)
    assert first.built and first.value is not None
    again = ensure_engine(tiny_onnx, tmp_path, PROFILE)
    assert not again.built
    _flip(first.path)
    assert ensure_engine(tiny_onnx, tmp_path, PROFILE).built, "a corrupt engine is rebuilt on the GPU too"
