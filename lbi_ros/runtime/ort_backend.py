"""ONNX Runtime backend (CPU or CUDA execution provider) behind :class:`InferenceBackend`.

The I/O contract comes from the ONNX file's own metadata (written by the exporter), so the backend
needs nothing but the file. Session options follow docs/cpu_budget.md: ORT_ENABLE_ALL, ``intra_op_threads``
intra-op threads, one inter-op thread, and ``session.intra_op.allow_spinning = "0"`` by default: spinning
worker threads busy-wait between calls and steal the cores the rest of the ROS process (DDS, image
conversion, a torch model) needs. Spinning on is faster in isolation (1.5 vs 2.3 ms at batch 1) and can
be turned on where the cores are the lifter's alone.

onnxruntime is imported inside the functions that use it. The CUDA execution provider path is **not yet
run on hardware** (``onnxruntime-gpu`` on a GPU); the CPU provider is what the tests and benchmarks ran.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lbi_ros.runtime.io_spec import IOSpec, io_spec_from_metadata

log = logging.getLogger(__name__)

OrtDevice = Literal["cpu", "cuda"]
CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


def onnxruntime_unavailable_reason(device: OrtDevice = "cpu") -> str | None:
    """None if ONNX Runtime can run on ``device`` here, else why not."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return f"onnxruntime is not installed ({exc})"
    if device == "cuda":
        providers = ort.get_available_providers()
        if CUDA_PROVIDER not in providers:
            return f"this onnxruntime build has no {CUDA_PROVIDER} (providers {providers}; install onnxruntime-gpu)"
        from lbi_ros.runtime.torch_backend import cuda_unavailable_reason

        reason = cuda_unavailable_reason()
        if reason:
            return reason
    return None


def session_options(intra_op_threads: int = 2, allow_spinning: bool = False) -> Any:
    import onnxruntime as ort

    if intra_op_threads < 1:
        raise ValueError(f"intra_op_threads must be >= 1, got {intra_op_threads}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    return options


class OnnxRuntimeBackend:
    """One ``InferenceSession`` over an lbi_ros ONNX file; inputs and outputs by the file's contract names."""

    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path, device: OrtDevice = "cpu", intra_op_threads: int = 2,
                 allow_spinning: bool = False) -> None:
        import onnxruntime as ort

        path = Path(onnx_path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model {path} does not exist")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        reason = onnxruntime_unavailable_reason(device)
        if reason:
            raise RuntimeError(f"ONNX Runtime on {device} is unavailable: {reason}")
        providers: list[Any] = [CPU_PROVIDER]
        if device == "cuda":
            providers = [(CUDA_PROVIDER, {"device_id": 0}), CPU_PROVIDER]
        self.session = ort.InferenceSession(str(path), sess_options=session_options(intra_op_threads, allow_spinning),
                                            providers=providers)
        if device == "cuda" and CUDA_PROVIDER not in self.session.get_providers():
            raise RuntimeError(f"ONNX Runtime fell back to {self.session.get_providers()} instead of CUDA")
        self.io_spec: IOSpec = io_spec_from_metadata(self.session.get_modelmeta().custom_metadata_map)
        graph_inputs = [i.name for i in self.session.get_inputs()]
        graph_outputs = [o.name for o in self.session.get_outputs()]
        if sorted(graph_inputs) != sorted(self.io_spec.input_names) or \
                sorted(graph_outputs) != sorted(self.io_spec.output_names):
            raise ValueError(f"{path}: graph I/O {graph_inputs} -> {graph_outputs} does not match its metadata "
                             f"contract {list(self.io_spec.input_names)} -> {list(self.io_spec.output_names)}")
        onnx_types = {"float32": "tensor(float)", "float16": "tensor(float16)"}
        for value in self.session.get_inputs() + self.session.get_outputs():
            spec = self.io_spec.input(value.name) if value.name in graph_inputs else self.io_spec.output(value.name)
            if value.type != onnx_types.get(spec.dtype):
                raise ValueError(f"{path}: {value.name} is {value.type}, its contract says {spec.dtype}")
        self.path = path
        self.device = device
        self.description = (f"onnxruntime {ort.__version__} {device} ({intra_op_threads} threads, "
                            f"spinning {'on' if allow_spinning else 'off'})")
        self._output_names = list(self.io_spec.output_names)
        log.info("loaded %s on %s", path, self.description)

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``feeds``: exactly ``io_spec.input_names`` -> (B, ...) float32; returns the outputs by name."""
        self.io_spec.check_inputs(feeds)
        return self.io_spec.bind_outputs(self.session.run(self._output_names, dict(feeds)))

    def close(self) -> None:
        self.session = None
