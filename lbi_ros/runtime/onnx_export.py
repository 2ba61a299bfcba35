"""Export a lifter to ONNX (opset 18, dynamic batch) and check it against ONNX Runtime on CPU.

Export rules (docs/method.md §5, docs/cpu_budget.md §A): the legacy TorchScript exporter (``dynamo=False``), every
attention on its plain-math path (explicit MatMul -> Softmax -> MatMul; the AFSM and PGTL need the map),
static reshapes inside the model, only axis 0 dynamic. The graph's inputs and outputs are named and
ordered by :func:`lbi_ros.runtime.io_spec.build_io_spec`, and the file carries that contract and the
model config in its metadata, so a backend needs nothing but the file. ``head_only`` exports a gated
lifter's head (:meth:`~lbi_ros.model.gated.GatedLBILifter.forward_features`: ``features`` in place of
``image_crop``, no backbone in the graph) for callers that already hold the backbone's map.

onnx and onnxruntime are imported inside the functions that use them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lbi_ros.config import to_dict
from lbi_ros.model.layers import Attention
from lbi_ros.runtime.io_spec import (
    FEATURES,
    IMAGE_CROP,
    METADATA_KEY_CONFIG,
    METADATA_KEY_SPEC,
    IOSpec,
    build_io_spec,
    example_inputs,
)

log = logging.getLogger(__name__)


def call_lifter(model: nn.Module, feeds: Any) -> Any:
    """Run a lifter on named inputs: with ``features`` its head (``forward_features``), else ``forward``
    (``image_crop`` None for the 2D-only lifters). Returns the model's ``LifterOutput``."""
    feeds = dict(feeds)
    if FEATURES in feeds:
        return model.forward_features(**feeds)
    feeds.setdefault(IMAGE_CROP, None)
    return model(**feeds)


def head_features_shape(model: nn.Module) -> tuple[int, int, int]:
    """(C, g, g) of the backbone map a gated lifter's head reads."""
    grid = int(round(model.num_patches ** 0.5))
    return int(model.feature_channels), grid, grid


class OnnxWrapper(nn.Module):
    """Positional inputs in ``spec.input_names`` order -> tuple of outputs in ``spec.output_names`` order.

    The only place that turns the named contract into positions, because ``torch.onnx.export`` needs them.
    """

    def __init__(self, model: nn.Module, spec: IOSpec) -> None:
        super().__init__()
        self.model = model
        self.input_names = spec.input_names
        self.output_names = spec.output_names

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        outputs = call_lifter(self.model, zip(self.input_names, inputs, strict=True))
        return tuple(getattr(outputs, name) for name in self.output_names)


@contextlib.contextmanager
def math_attention(model: nn.Module) -> Iterator[None]:
    """Temporarily route every :class:`Attention` through the plain-math path (restored afterwards)."""
    modules = [m for m in model.modules() if isinstance(m, Attention)]
    saved = [m.fused for m in modules]
    try:
        for m in modules:
            m.fused = False
        yield
    finally:
        for m, fused in zip(modules, saved, strict=True):
            m.fused = fused


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    opset: int = 18,
    *,
    include_coarse: bool = False,
    example_batch: int = 2,
    head_only: bool = False,
) -> IOSpec:
    """Write ``model`` (a lifter with a ``config``) to ``path`` as ONNX with a dynamic batch axis.

    ``include_coarse`` keeps ``joints_3d_coarse`` as a graph output (off: the inference graph omits it
    and the exporter prunes the coarse head). ``head_only``: a gated lifter's head (module doc). Returns
    the I/O contract the file follows.
    """
    import onnx

    config = getattr(model, "config", None)
    if config is None:
        raise TypeError("export_onnx needs a lifter built by build_model (it reads model.config)")
    spec = build_io_spec(config, include_coarse=include_coarse,
                         features_shape=head_features_shape(model) if head_only else None)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    args = tuple(torch.from_numpy(a) for a in example_inputs(spec, example_batch).values())
    wrapper = OnnxWrapper(model, spec)
    with eval_mode(model), math_attention(model), torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # the legacy exporter is chosen on purpose (docs/cpu_budget.md): silence its deprecation notices
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
        torch.onnx.export(
            wrapper,
            args,
            str(path),
            input_names=list(spec.input_names),
            output_names=list(spec.output_names),
            dynamic_axes=spec.dynamic_axes(),
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    _set_io_shapes(proto, spec)
    onnx.checker.check_model(proto)
    _set_metadata(proto, {
        METADATA_KEY_SPEC: json.dumps(spec.to_dict()),
        METADATA_KEY_CONFIG: json.dumps(to_dict(config)),
    })
    onnx.save(proto, str(path))
    log.info("exported %s (%d nodes, opset %d) to %s", config.kind, len(proto.graph.node), opset, path)
    return spec


def _set_io_shapes(proto: Any, spec: IOSpec) -> None:
    """Stamp the contract's shapes on the graph inputs/outputs: the tracer leaves some static output dims
    symbolic (e.g. ``Subjoints_3d_dim_1``), which would hide J from TensorRT and other consumers."""
    specs = {t.name: t for t in spec.inputs + spec.outputs}
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        want = specs[value.name].shape
        if len(dims) != len(want):
            raise RuntimeError(f"exported {value.name} has rank {len(dims)}, the I/O contract says {want}")
        for dim, size in zip(dims, want, strict=True):
            if isinstance(size, str):
                dim.dim_param = size
            else:
                dim.dim_value = size


def _set_metadata(proto: Any, entries: dict[str, str]) -> None:
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in entries.items():
        prop = existing.get(key) or proto.metadata_props.add()
        prop.key, prop.value = key, value


def create_ort_session(
    path: str | Path, intra_op_threads: int = 2, allow_spinning: bool = False
) -> Any:
    """ONNX Runtime CPU session as benchmarked in docs/cpu_budget.md: ORT_ENABLE_ALL, N intra-op threads,
    spinning off by default (a ROS process shares its cores; busy-waiting threads would steal them)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def check_onnx_parity(
    model: nn.Module,
    path: str | Path,
    batch_sizes: Sequence[int] = (1, 5),
    seed: int = 0,
    session: Any = None,
) -> float:
    """Max abs difference between PyTorch (eval, fused attention as configured) and ORT CPU over all the
    file's outputs and the given batch sizes. Inputs and outputs are matched by name via the file's spec."""
    from lbi_ros.runtime.io_spec import io_spec_from_metadata

    session = session or create_ort_session(path)
    spec = io_spec_from_metadata(session.get_modelmeta().custom_metadata_map)
    worst = 0.0
    for i, batch in enumerate(batch_sizes):
        feeds = example_inputs(spec, batch, seed=seed + i)
        spec.check_inputs(feeds)
        got = spec.bind_outputs(session.run(list(spec.output_names), feeds))
        with eval_mode(model), torch.no_grad():
            want = call_lifter(model, {k: torch.from_numpy(v) for k, v in feeds.items()})
        for name in spec.output_names:
            err = float(np.max(np.abs(getattr(want, name).numpy() - got[name])))
            log.debug("parity batch %d %s: max abs err %.3g", batch, name, err)
            worst = max(worst, err)
    return worst
