"""Where the two BlazePose networks run: a one-method seam, with a PyTorch and an ONNX Runtime implementation.

Why a seam of its own rather than :class:`lbi_ros.runtime.backend.InferenceBackend`: that protocol carries
an lbi_ros ``IOSpec`` (the lifter's contract, read from its checkpoint/ONNX metadata); the detector nets
have one NHWC image input and outputs named by the converter. A backend here is any callable
``(x: (B, H, W, 3) float32) -> {output name: (B, ...) float32}``, so a TensorRT engine can be plugged later
without touching the detector.

* :class:`TorchNetBackend`: the converted ``torch.nn.Module`` under ``torch.inference_mode()``. It does not
  set torch's global thread count (callers and benchmarks own that switch).
* :class:`OrtNetBackend`: the same module exported once with the legacy TorchScript exporter
  (:func:`lbi_ros.pose2d.blazepose.export_onnx`: ``dynamo=False``, opset 17, dynamic batch) and cached as
  ``<cache_dir>/<name>-<key>.onnx``, where ``key`` hashes the module's weights, the source of the modules
  that define its graph, the opset and the torch version; then an ``InferenceSession`` with 1-2 intra-op
  threads and no spinning (see :mod:`lbi_ros.runtime.ort_backend` for why). onnxruntime is imported lazily.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

log = logging.getLogger(__name__)

BackendKind = Literal["torch", "onnxruntime"]
ONNX_OPSET = 17


@runtime_checkable
class NetBackend(Protocol):
    name: str
    """``torch`` or ``onnxruntime`` (for logs and benchmark tables)."""

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """(B, H, W, 3) float32 -> output name -> (B, ...) float32 numpy arrays."""
        ...


def _check_input(x: np.ndarray) -> np.ndarray:
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"network input must be (B, H, W, 3), got {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


class TorchNetBackend:
    """Runs a converted BlazePose module; returns the requested outputs (all when ``outputs`` is None)."""

    name = "torch"

    def __init__(self, net: Any, outputs: Sequence[str] | None = None) -> None:
        self.net = net.eval()
        self.outputs = tuple(outputs) if outputs is not None else None

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            result = self.net(torch.from_numpy(_check_input(x)))
        names = self.outputs if self.outputs is not None else tuple(result)
        missing = [n for n in names if n not in result]
        if missing:
            raise KeyError(f"network has no outputs {missing}; it gives {sorted(result)}")
        return {n: result[n].float().numpy() for n in names}


def _module_sources(net: Any) -> list[str]:
    """Source text of the lbi_ros modules that define ``net``'s graph (its class's module and its bases')."""
    names = {cls.__module__ for cls in type(net).__mro__ if cls.__module__.startswith("lbi_ros")}
    names |= {n for n in sys.modules if n.startswith("lbi_ros.pose2d.tflite_")}
    texts = []
    for name in sorted(names):
        try:
            texts.append(inspect.getsource(sys.modules[name]))
        except (OSError, TypeError):  # pragma: no cover - frozen or generated modules
            texts.append(name)
    return texts


def export_key(net: Any, opset: int = ONNX_OPSET) -> str:
    """16 hex digits identifying the exported graph: outputs, weights, defining source, opset, torch version.

    The output names count on their own: a tap such as ``add_8`` adds an output but no weights."""
    import torch

    h = hashlib.sha256()
    outputs = ",".join(getattr(net, "output_names", ()))
    h.update(f"{type(net).__qualname__}|{outputs}|opset{opset}|torch{torch.__version__}".encode())
    for text in _module_sources(net):
        h.update(text.encode())
    for key, value in sorted(net.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def export_cached(net: Any, cache_dir: str | Path, stem: str) -> Path:
    """``<cache_dir>/<stem>-<export_key>.onnx``, exported with :func:`lbi_ros.pose2d.blazepose.export_onnx`
    (legacy exporter, dynamic batch) on first use; written to a temp file and renamed, so concurrent
    processes never read a half-written file."""
    from lbi_ros.pose2d.blazepose import export_onnx

    path = Path(cache_dir).expanduser() / f"{stem}-{export_key(net)}.onnx"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.onnx")
    try:
        export_onnx(net, tmp, opset=ONNX_OPSET)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


class OrtNetBackend:
    """ONNX Runtime session over the cached export of a BlazePose module."""

    name = "onnxruntime"

    def __init__(self, net: Any, cache_dir: str | Path, stem: str,
                 outputs: Sequence[str] | None = None, intra_op_threads: int = 1) -> None:
        import onnxruntime as ort

        from lbi_ros.runtime.ort_backend import session_options

        if intra_op_threads not in (1, 2):
            raise ValueError(f"intra_op_threads must be 1 or 2 on this project's CPU budget, got {intra_op_threads}")
        path = export_cached(net, cache_dir, stem)
        self.path = path
        self.session = ort.InferenceSession(str(path), sess_options=session_options(intra_op_threads),
                                            providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        available = [o.name for o in self.session.get_outputs()]
        self.outputs = tuple(outputs) if outputs is not None else tuple(available)
        missing = [n for n in self.outputs if n not in available]
        if missing:
            raise KeyError(f"{path.name} has no outputs {missing}; it gives {available}")

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        values = self.session.run(list(self.outputs), {self.input_name: _check_input(x)})
        return dict(zip(self.outputs, values, strict=True))


def make_backend(kind: BackendKind, net: Any, stem: str,
                 outputs: Sequence[str] | None = None, cache_dir: str | Path | None = None,
                 intra_op_threads: int = 1) -> NetBackend:
    """A backend of ``kind`` for ``net``; the ONNX cache defaults to ``<repo cache>/pose2d_onnx``."""
    if kind == "torch":
        return TorchNetBackend(net, outputs)
    if kind == "onnxruntime":
        if cache_dir is None:
            from lbi_ros.pose2d.model_files import repo_cache_dir

            cache_dir = repo_cache_dir() / "pose2d_onnx"
        return OrtNetBackend(net, cache_dir, stem, outputs, intra_op_threads)
    raise ValueError(f"backend must be 'torch' or 'onnxruntime', got {kind!r}")
