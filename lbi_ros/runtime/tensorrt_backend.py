"""TensorRT backend: a cached engine run with tensors bound by name, behind :class:`InferenceBackend`.

Two separate steps, as in the TensorRT samples:

* **build** (:func:`ensure_engine`, also ``lbi build-engine``): ONNX -> engine through the validated,
  locked :class:`~lbi_ros.runtime.engine_cache.EngineCache`, with one optimisation profile 1..N persons;
* **run** (:class:`TensorRTBackend`): one object owns the runtime, engine, execution context, CUDA
  stream and every buffer (torch CUDA tensors, allocated once at the profile's max batch; pinned host
  staging buffers), binds each tensor by name with ``set_tensor_address`` and runs ``execute_async_v3``.
  Batches larger than the profile's max are run in chunks.

``tensorrt`` is imported lazily and only after ``torch.cuda.is_available()`` confirmed a CUDA device:
creating a TensorRT runtime without a GPU can crash the process. TensorRT itself comes from NVIDIA
(JetPack's system package on Jetson, or pip with NVIDIA's index on a desktop), not from requirements/.

**Not yet run on hardware**: this backend has not run on a GPU or a Jetson in this project (its tests are
``gpu``-marked). What was checked instead: the same engine build path with TensorRT-RTX on a CPU (the
TensorRT op check of ``lbi export``, :mod:`lbi_ros.runtime.trt_check`) and the engine cache with engines
TensorRT-RTX built (docs/deployment.md, "Hardware status").
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lbi_ros.runtime.engine_cache import (
    BatchProfile,
    CachedEngine,
    EngineCache,
    EngineKey,
    Precision,
    build_serialized_engine,
)
from lbi_ros.runtime.io_spec import IOSpec, IOSpecError, io_spec_from_metadata
from lbi_ros.runtime.safe_files import sha256_file

log = logging.getLogger(__name__)


def tensorrt_unavailable_reason() -> str | None:
    """None if TensorRT can run here, else why not. Checks for a CUDA device *before* importing tensorrt."""
    from lbi_ros.runtime.torch_backend import cuda_unavailable_reason

    reason = cuda_unavailable_reason()
    if reason:
        return reason
    if importlib.util.find_spec("tensorrt") is None:
        return ("the tensorrt Python package is not installed (JetPack ships it; on a desktop install it from "
                "NVIDIA: pip install tensorrt with NVIDIA's index; see docs/deployment.md)")
    return None


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or RuntimeError with the reason it cannot be used."""
    reason = tensorrt_unavailable_reason()
    if reason:
        raise RuntimeError(f"TensorRT is unavailable: {reason}")
    return importlib.import_module("tensorrt")


def read_onnx_contract(onnx_path: str | Path) -> tuple[IOSpec, str]:
    """The I/O contract and precision (``fp32``/``fp16``) an lbi_ros ONNX file carries in its metadata."""
    import onnx

    from lbi_ros.runtime.precision import model_precision

    proto = onnx.load(str(onnx_path), load_external_data=False)
    metadata = {p.key: p.value for p in proto.metadata_props}
    return io_spec_from_metadata(metadata), model_precision(metadata)


def engine_key(trt: Any, onnx_path: str | Path, precision: Precision, profile: BatchProfile,
               device_index: int = 0) -> EngineKey:
    import torch

    major, minor = torch.cuda.get_device_capability(device_index)
    return EngineKey(onnx_sha256=sha256_file(onnx_path), trt_version=trt.__version__,
                     gpu_name=torch.cuda.get_device_name(device_index), compute_capability=f"{major}.{minor}",
                     precision=precision, profile=profile)


def ensure_engine(onnx_path: str | Path, cache_dir: str | Path, profile: BatchProfile,
                  runtime: Any = None, device_index: int = 0) -> CachedEngine[Any]:
    """Build (or reuse) the engine for ``onnx_path`` on this GPU. Returns the deserialised ``ICudaEngine``
    (through ``runtime``; a temporary runtime when None) and the engine file's path."""
    trt = import_tensorrt()
    _, precision = read_onnx_contract(onnx_path)
    key = engine_key(trt, onnx_path, precision, profile, device_index)  # type: ignore[arg-type]
    cache = EngineCache(cache_dir)
    runtime = runtime or trt.Runtime(trt.Logger(trt.Logger.WARNING))

    def build() -> bytes:
        log.info("building a TensorRT %s engine for %s (persons %d..%d, opt %d); this takes a while", precision,
                 onnx_path, profile.min_batch, profile.max_batch, profile.opt_batch)
        data, timing = build_serialized_engine(trt, onnx_path, profile, timing_cache=cache.read_timing_cache(key))
        if timing:
            cache.write_timing_cache(key, timing)
        return data

    return cache.get_or_build(key, build, load=runtime.deserialize_cuda_engine, stem=Path(onnx_path).stem)


class TensorRTBackend:
    """Runs one engine. Owns runtime, engine, context, stream and buffers; :meth:`close` frees them."""

    name = "tensorrt"

    def __init__(self, trt: Any, runtime: Any, engine: Any, io_spec: IOSpec, device_index: int = 0,
                 description: str = "", logger: Any = None) -> None:
        import torch

        self.io_spec = io_spec
        self._trt, self._logger, self._runtime, self._engine = trt, logger, runtime, engine
        self.device = torch.device("cuda", device_index)
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if sorted(inputs) != sorted(io_spec.input_names) or sorted(outputs) != sorted(io_spec.output_names):
            raise IOSpecError(f"engine I/O {inputs} -> {outputs} does not match the contract "
                              f"{list(io_spec.input_names)} -> {list(io_spec.output_names)}")
        first = io_spec.input_names[0]
        self.max_batch = int(engine.get_tensor_profile_shape(first, 0)[2][0])
        self._context = engine.create_execution_context()
        self._stream = torch.cuda.Stream(device=self.device)
        self._device_buffers: dict[str, torch.Tensor] = {}
        self._host_buffers: dict[str, torch.Tensor] = {}
        for spec in io_spec.inputs + io_spec.outputs:
            dtype = {trt.float32: torch.float32, trt.float16: torch.float16}.get(engine.get_tensor_dtype(spec.name))
            if dtype != torch.float32:
                raise IOSpecError(f"engine tensor {spec.name} is {engine.get_tensor_dtype(spec.name)}; the contract "
                                  "keeps every input and output float32")
            shape = spec.concrete_shape(self.max_batch)
            self._device_buffers[spec.name] = torch.empty(shape, dtype=dtype, device=self.device)
            self._host_buffers[spec.name] = torch.empty(shape, dtype=dtype, pin_memory=True)
            # buffers are allocated once at max batch: the address never changes, so bind it once
            if not self._context.set_tensor_address(spec.name, self._device_buffers[spec.name].data_ptr()):
                raise RuntimeError(f"TensorRT refused the address of {spec.name}")
        self.description = description or f"tensorrt {trt.__version__} {torch.cuda.get_device_name(device_index)}"

    @classmethod
    def from_onnx(cls, onnx_path: str | Path, cache_dir: str | Path, profile: BatchProfile | None = None,
                  device_index: int = 0) -> TensorRTBackend:
        """Build or reuse the cached engine for ``onnx_path`` and load it (the node's first start builds)."""
        trt = import_tensorrt()
        profile = profile or BatchProfile()
        spec, precision = read_onnx_contract(onnx_path)
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        cached = ensure_engine(onnx_path, cache_dir, profile, runtime=runtime, device_index=device_index)
        import torch

        description = (f"tensorrt {trt.__version__} {precision} {torch.cuda.get_device_name(device_index)} "
                       f"(persons {profile.min_batch}..{profile.max_batch}; {cached.path.name})")
        return cls(trt, runtime, cached.value, spec, device_index, description, logger)

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``feeds``: exactly ``io_spec.input_names`` -> (B, ...) float32; returns the outputs by name."""
        import torch

        if self._context is None:
            raise RuntimeError("this TensorRT backend is closed")
        batch = self.io_spec.check_inputs(feeds)
        results = {t.name: np.empty(t.concrete_shape(batch), np.float32) for t in self.io_spec.outputs}
        for start in range(0, batch, self.max_batch):
            n = min(self.max_batch, batch - start)
            with torch.cuda.device(self.device), torch.cuda.stream(self._stream):
                for name in self.io_spec.input_names:
                    host = self._host_buffers[name][:n]
                    host.numpy()[...] = feeds[name][start:start + n]
                    self._device_buffers[name][:n].copy_(host, non_blocking=True)
                    if not self._context.set_input_shape(name, tuple(host.shape)):
                        raise RuntimeError(f"TensorRT refused shape {tuple(host.shape)} for {name}")
                if not self._context.execute_async_v3(self._stream.cuda_stream):
                    raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")
                for name in self.io_spec.output_names:
                    self._host_buffers[name][:n].copy_(self._device_buffers[name][:n], non_blocking=True)
            self._stream.synchronize()
            for name in self.io_spec.output_names:
                results[name][start:start + n] = self._host_buffers[name][:n].numpy()
        return results

    def close(self) -> None:
        """Free in reverse order of creation: context, buffers, stream, engine, runtime."""
        if self._stream is not None:
            self._stream.synchronize()
        self._context = None
        self._device_buffers.clear()
        self._host_buffers.clear()
        self._stream = None
        self._engine = None
        self._runtime = None
        self._logger = None

    def __enter__(self) -> TensorRTBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
