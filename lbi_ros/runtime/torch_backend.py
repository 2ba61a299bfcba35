"""PyTorch backend: the lifter run eagerly on CPU or CUDA, behind :class:`InferenceBackend`.

The reference every other backend is checked against, and the fallback when neither TensorRT nor ONNX
Runtime is present. On a GPU three options trade start-up time for latency, each off by default:

* ``cuda_graphs``: capture one CUDA graph per batch size on first use and replay it (static input and
  output buffers owned by the backend); removes the per-kernel launch cost that dominates at batch 1;
* ``compile``: ``torch.compile`` the model (inductor; the first call per shape compiles, tens of seconds);
* ``precision`` ``fp16``/``bf16``: autocast the forward (outputs are returned as float32).

None of them exist on the CPU (they raise ``ValueError`` there): CPU speed comes from ONNX Runtime.
``head_only``: a gated lifter's head, ``features`` in place of ``image_crop`` (:mod:`lbi_ros.runtime.io_spec`).
The CUDA paths are **not yet run on hardware** (no GPU in this project's runs so far; their tests are
``gpu``-marked); the CPU path is the tested reference.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from lbi_ros.runtime.io_spec import IOSpec, build_io_spec
from lbi_ros.runtime.onnx_export import call_lifter, head_features_shape

log = logging.getLogger(__name__)

TorchPrecision = Literal["fp32", "fp16", "bf16"]
_AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


def cuda_unavailable_reason() -> str | None:
    """None if a CUDA device is usable from torch, else why not (checked before anything touches CUDA)."""
    if not torch.cuda.is_available():
        build = "CPU-only torch build" if torch.version.cuda is None else f"torch built for CUDA {torch.version.cuda}"
        return f"no CUDA device (torch.cuda.is_available() is False; {build})"
    return None


class TorchBackend:
    """A lifter ``nn.Module`` (from :func:`lbi_ros.checkpoint.load_model`) behind the named-tensor interface."""

    name = "torch"

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu", *, precision: TorchPrecision = "fp32",
                 cuda_graphs: bool = False, compile: bool = False, threads: int | None = None,
                 include_coarse: bool = False, head_only: bool = False) -> None:
        config = getattr(model, "config", None)
        if config is None:
            raise TypeError("TorchBackend needs a lifter built by build_model (it reads model.config)")
        self.device = torch.device(device)
        gpu_only = {"cuda_graphs": cuda_graphs, "compile": compile, "precision fp16/bf16": precision != "fp32"}
        if self.device.type != "cuda" and any(gpu_only.values()):
            raise ValueError(f"{[k for k, v in gpu_only.items() if v]} need a CUDA device; got device {self.device}")
        if precision not in ("fp32", *_AUTOCAST):
            raise ValueError(f"precision must be fp32, fp16 or bf16, got {precision!r}")
        if self.device.type == "cuda":
            reason = cuda_unavailable_reason()
            if reason:
                raise RuntimeError(reason)
        if threads is not None:
            torch.set_num_threads(threads)  # process-wide: torch has no per-module thread pool
        self.io_spec: IOSpec = build_io_spec(config, include_coarse=include_coarse,
                                             features_shape=head_features_shape(model) if head_only else None)
        self.model = model.to(self.device).eval()
        self._forward_module: Any = torch.compile(self.model) if compile else self.model
        self._autocast = _AUTOCAST.get(precision)
        self._graphs: dict[int, _GraphRunner] | None = {} if cuda_graphs else None
        self.description = (f"torch {torch.__version__} {self.device} {precision}"
                            f"{' cuda-graphs' if cuda_graphs else ''}{' compiled' if compile else ''}"
                            f"{' head only' if head_only else ''}"
                            f"{f' ({torch.get_num_threads()} threads)' if self.device.type == 'cpu' else ''}")

    def forward(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Named device tensors in, named device tensors out (no checks, no copies)."""
        if self._autocast is not None:
            with torch.autocast(self.device.type, dtype=self._autocast):
                outputs = call_lifter(self._forward_module, inputs)
        else:
            outputs = call_lifter(self._forward_module, inputs)
        return {name: getattr(outputs, name) for name in self.io_spec.output_names}

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``feeds``: exactly ``io_spec.input_names`` -> (B, ...) float32; returns float32 outputs by name."""
        batch = self.io_spec.check_inputs(feeds)
        with torch.inference_mode():
            inputs = {name: torch.from_numpy(np.ascontiguousarray(feeds[name])).to(self.device, non_blocking=True)
                      for name in self.io_spec.input_names}
            if self._graphs is not None:
                runner = self._graphs.get(batch)
                if runner is None:
                    runner = self._graphs[batch] = _GraphRunner(self, inputs)
                outputs = runner.replay(inputs)
            else:
                outputs = self.forward(inputs)
            return {name: t.float().cpu().numpy() for name, t in outputs.items()}

    def close(self) -> None:
        self._graphs = {} if self._graphs is not None else None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


class _GraphRunner:
    """One captured CUDA graph for one batch size, with the static buffers it reads and writes."""

    def __init__(self, backend: TorchBackend, example: Mapping[str, Tensor], warmup: int = 3) -> None:
        self.inputs = {name: t.clone() for name, t in example.items()}
        stream = torch.cuda.Stream(device=backend.device)
        stream.wait_stream(torch.cuda.current_stream(backend.device))
        with torch.cuda.stream(stream):  # warm-up off the default stream, as torch.cuda.graphs requires
            for _ in range(warmup):
                backend.forward(self.inputs)
        torch.cuda.current_stream(backend.device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = backend.forward(self.inputs)
        log.debug("captured a CUDA graph for batch %d", next(iter(example.values())).shape[0])

    def replay(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        for name, tensor in inputs.items():
            self.inputs[name].copy_(tensor)
        self.graph.replay()
        return self.outputs
