"""The one inference interface, whatever runs the network (PyTorch, ONNX Runtime, TensorRT).

A backend takes the model inputs **by name** (the names of its :class:`~lbi_ros.runtime.io_spec.IOSpec`)
as float32 numpy arrays with the batch of persons on axis 0, and returns the outputs by name. The
pipeline, the node, evaluation and the benchmarks only ever see this protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from lbi_ros.runtime.io_spec import IOSpec


@runtime_checkable
class InferenceBackend(Protocol):
    name: str
    """Short backend id for logs and diagnostics: ``torch``, ``onnxruntime``, ``tensorrt``."""
    io_spec: IOSpec
    """The contract of the loaded network; ``infer`` takes exactly ``io_spec.input_names``."""

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch. ``feeds``: name -> (B, ...) float32; returns name -> (B, ...) float32."""
        ...
