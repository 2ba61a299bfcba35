"""Read a .tflite flatbuffer into a plain, validated graph description (no TensorFlow needed).

Why: the BlazePose files (:mod:`lbi_ros.pose2d.model_files`) are converted to PyTorch by
:mod:`lbi_ros.pose2d.tflite_torch`; that builder should see plain Python data, not flatbuffer accessors.
The small ``tflite`` package (generated flatbuffer bindings, Apache-2.0) does the byte-level reading.

What the reader does beyond copying fields:

* folds constant-only ops: ``DENSIFY`` (sparse CSR weights, decoded here) and ``DEQUANTIZE`` (fp16
  weights), so every weight reaches the builder as a dense float32 constant;
* turns parameter tensors into options: ``PAD`` -> ``paddings``, ``RESHAPE`` -> ``new_shape``,
  ``RESIZE_BILINEAR`` -> ``size``, so an op's ``inputs`` are its data (and weight/bias) tensors only;
* validates: one subgraph, float32 activations, known op kinds (:data:`SUPPORTED_OPS`) with supported
  options (fused activation NONE/RELU/RELU6), every op input produced before it is used.

Layouts are TFLite's own (NHWC activations, OHWI conv weights, 1HWC depthwise weights); converting them is
the builder's job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

SUPPORTED_OPS = frozenset({
    "CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "PAD", "RESIZE_BILINEAR", "RESHAPE", "MAX_POOL_2D", "LOGISTIC",
    "CONCATENATION", "DEPTH_TO_SPACE",
})
"""Op kinds the torch builder implements (what the two BlazePose files use, after folding)."""
FOLDED_OPS = frozenset({"DEQUANTIZE", "DENSIFY"})
"""Op kinds evaluated here on constants and removed from the graph."""
FUSED_ACTIVATIONS = {0: "NONE", 1: "RELU", 3: "RELU6"}
"""TFLite ActivationFunctionType codes we support (RELU_N1_TO_1, TANH, SIGN_BIT are rejected)."""
_TENSOR_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}
_PADDING = {0: "SAME", 1: "VALID"}


class TfliteGraphError(ValueError):
    """The file is not a TFLite model this reader understands (malformed, several subgraphs, bad types)."""


class UnsupportedOpError(TfliteGraphError):
    """An op kind, or an option of a known op, that the converter does not implement."""


@dataclass(frozen=True, eq=False)
class TensorInfo:
    """One tensor. ``shape`` as in the file (NHWC for images, batch 1); ``data`` is set for constants."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    """numpy dtype name; every constant that reaches the builder is float32 or int32."""
    data: np.ndarray | None = None

    @property
    def is_constant(self) -> bool:
        return self.data is not None


@dataclass(frozen=True)
class OpInfo:
    """One op after folding. ``index``: its position in the file; ``inputs`` -1 = absent optional input."""

    index: int
    kind: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, eq=False)
class TfliteGraph:
    """A validated single-subgraph model: tensors by index, ops in execution order, graph inputs/outputs."""

    tensors: tuple[TensorInfo, ...]
    ops: tuple[OpInfo, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    aliases: Mapping[str, int]
    """Short unique names of activation tensors: ``model_1/model/add_9/add`` -> ``add_9``."""

    def tensor_index(self, name: str) -> int:
        """Index of the tensor with full name or alias ``name``; KeyError listing the aliases otherwise."""
        if name in self.aliases:
            return self.aliases[name]
        for tensor in self.tensors:
            if tensor.name == name:
                return tensor.index
        raise KeyError(f"no tensor named {name!r}; aliases include {sorted(self.aliases)[:40]}")

    def producers(self) -> dict[int, OpInfo]:
        """tensor index -> the op that writes it."""
        return {t: op for op in self.ops for t in op.outputs}


def _buffer_bytes(model: Any, raw: bytes, buffer_index: int) -> bytes | None:
    buffer = model.Buffers(buffer_index)
    if buffer is None:
        return None
    if buffer.DataLength() > 0:
        return buffer.DataAsNumpy().tobytes()
    if buffer.Offset() > 1:  # large models keep data after the flatbuffer, at an absolute offset
        return raw[buffer.Offset(): buffer.Offset() + buffer.Size()]
    return None


def _index_vector(table: Any, kind: int) -> np.ndarray:
    import tflite

    cls = {1: tflite.Int32Vector, 2: tflite.Uint16Vector, 3: tflite.Uint8Vector}.get(kind)
    if cls is None or table is None:
        raise TfliteGraphError(f"sparse tensor with index vector type {kind}")
    vector = cls()
    vector.Init(table.Bytes, table.Pos)
    values = vector.ValuesAsNumpy()
    return np.asarray(values if not isinstance(values, int) else [], dtype=np.int64)


def densify(values: np.ndarray, shape: tuple[int, ...], sparsity: Any) -> np.ndarray:
    """Dense array of ``shape`` from TFLite sparse storage (dimension metadata in traversal order).

    Walks the levels of the traversal order at once for all stored elements: a DENSE level of size d
    maps position p to p*d + i, a SPARSE_CSR level maps p to the entries segments[p]..segments[p+1]-1,
    whose coordinates are indices[k]; the last level's positions index ``values``. Block dimensions
    (traversal entries >= rank) add ``inner`` to ``outer * block_size`` of the dimension they block.
    """
    rank = len(shape)
    order = [int(v) for v in sparsity.TraversalOrderAsNumpy()] if sparsity.TraversalOrderLength() else list(range(rank))
    block_map = [int(v) for v in sparsity.BlockMapAsNumpy()] if sparsity.BlockMapLength() else []
    if sparsity.DimMetadataLength() != len(order) or len(order) != rank + len(block_map):
        raise TfliteGraphError(f"sparsity metadata of {len(order)} levels does not fit shape {shape}")
    positions = np.zeros(1, dtype=np.int64)
    coords = np.zeros((1, 0), dtype=np.int64)
    sizes = []
    for level in range(len(order)):
        meta = sparsity.DimMetadata(level)
        if meta.Format() == 0:  # DENSE
            size = int(meta.DenseSize())
            positions = (positions[:, None] * size + np.arange(size)).ravel()
            coords = np.concatenate([np.repeat(coords, size, axis=0), np.tile(np.arange(size), len(coords))[:, None]], 1)
        else:  # SPARSE_CSR
            segments = _index_vector(meta.ArraySegments(), meta.ArraySegmentsType())
            indices = _index_vector(meta.ArrayIndices(), meta.ArrayIndicesType())
            starts, counts = segments[positions], segments[positions + 1] - segments[positions]
            size = 0
            # position of each child: start of its parent's run + its rank inside that run
            within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            positions = np.repeat(starts, counts) + within
            coords = np.concatenate([np.repeat(coords, counts, axis=0), indices[positions][:, None]], 1)
        sizes.append(size)
    if len(positions) and positions.max() >= len(values):
        raise TfliteGraphError(f"sparse tensor of shape {shape} indexes {positions.max() + 1} values, has {len(values)}")
    full = [np.zeros(len(positions), dtype=np.int64) for _ in range(rank)]
    blocked = {dim: rank + b for b, dim in enumerate(block_map)}
    for level, dim in enumerate(order):
        if dim < rank:
            scale = sizes[order.index(blocked[dim])] if dim in blocked else 1
            full[dim] += coords[:, level] * scale
        else:
            full[block_map[dim - rank]] += coords[:, level]
    dense = np.zeros(shape, dtype=values.dtype)
    dense[tuple(full)] = values[positions]
    return dense


def _activation(code: int, where: str) -> str:
    if code not in FUSED_ACTIVATIONS:
        raise UnsupportedOpError(f"{where}: fused activation code {code} (supported: {FUSED_ACTIVATIONS})")
    return FUSED_ACTIVATIONS[code]


def _options(kind: str, op: Any, where: str) -> dict[str, Any]:
    """Plain options of ``op``; UnsupportedOpError for settings the builder does not implement."""
    import tflite

    classes = {"CONV_2D": tflite.Conv2DOptions, "DEPTHWISE_CONV_2D": tflite.DepthwiseConv2DOptions,
               "ADD": tflite.AddOptions, "MAX_POOL_2D": tflite.Pool2DOptions,
               "RESIZE_BILINEAR": tflite.ResizeBilinearOptions, "CONCATENATION": tflite.ConcatenationOptions,
               "DEPTH_TO_SPACE": tflite.DepthToSpaceOptions}
    if kind not in classes:
        return {}
    table = op.BuiltinOptions()
    if table is None:
        raise TfliteGraphError(f"{where}: {kind} without its options table")
    opt = classes[kind]()
    opt.Init(table.Bytes, table.Pos)
    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D"):
        out: dict[str, Any] = {"padding": _PADDING[opt.Padding()], "stride": (opt.StrideH(), opt.StrideW()),
                               "activation": _activation(opt.FusedActivationFunction(), where)}
        if kind == "MAX_POOL_2D":
            out["filter"] = (opt.FilterHeight(), opt.FilterWidth())
        else:
            out["dilation"] = (opt.DilationHFactor(), opt.DilationWFactor())
        if kind == "DEPTHWISE_CONV_2D":
            out["depth_multiplier"] = opt.DepthMultiplier()
        return out
    if kind == "ADD":
        return {"activation": _activation(opt.FusedActivationFunction(), where)}
    if kind == "CONCATENATION":
        return {"axis": opt.Axis(), "activation": _activation(opt.FusedActivationFunction(), where)}
    if kind == "DEPTH_TO_SPACE":
        return {"block_size": opt.BlockSize()}
    if opt.AlignCorners() or not opt.HalfPixelCenters():  # RESIZE_BILINEAR
        raise UnsupportedOpError(f"{where}: RESIZE_BILINEAR with align_corners={opt.AlignCorners()}, "
                                 f"half_pixel_centers={opt.HalfPixelCenters()} (only False/True is implemented)")
    return {"align_corners": False, "half_pixel_centers": True}


def _aliases(tensors: list[TensorInfo]) -> dict[str, int]:
    """``.../add_9/add`` -> ``add_9`` for every ``;``-separated part of activation names, kept when unique."""
    seen: dict[str, set[int]] = {}
    for tensor in tensors:
        if tensor.is_constant:
            continue
        for part in tensor.name.split(";"):
            pieces = part.split("/")
            short = pieces[-2] if len(pieces) >= 2 else pieces[0]
            if re.fullmatch(r"[A-Za-z0-9_]+", short):
                seen.setdefault(short, set()).add(tensor.index)
    return {name: next(iter(ids)) for name, ids in seen.items() if len(ids) == 1}


def parse_tflite(source: str | Path | bytes) -> TfliteGraph:
    """Parse and validate a .tflite file (path or bytes) into a :class:`TfliteGraph`."""
    import tflite
    from tflite.BuiltinOperator import BuiltinOperator

    raw = source if isinstance(source, bytes) else Path(source).read_bytes()
    if len(raw) < 8 or raw[4:8] != b"TFL3":
        raise TfliteGraphError(f"{'bytes' if isinstance(source, bytes) else source} is not a TFLite flatbuffer "
                               f"(no TFL3 identifier)")
    model = tflite.Model.GetRootAsModel(raw, 0)
    if model.SubgraphsLength() != 1:
        raise TfliteGraphError(f"expected one subgraph, found {model.SubgraphsLength()}")
    graph = model.Subgraphs(0)
    op_names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}

    tensors: list[TensorInfo] = []
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        name = t.Name().decode("utf-8", "replace")
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        if t.Type() not in _TENSOR_TYPES:
            raise TfliteGraphError(f"tensor {i} {name!r} has unsupported type code {t.Type()}")
        dtype = np.dtype(_TENSOR_TYPES[t.Type()])
        data = None
        blob = _buffer_bytes(model, raw, t.Buffer())
        if blob is not None:
            values = np.frombuffer(blob, dtype=dtype)
            sparsity = t.Sparsity()
            if sparsity is not None:
                data = densify(values, shape, sparsity)
            elif values.size != int(np.prod(shape, dtype=np.int64)):
                raise TfliteGraphError(f"constant {i} {name!r}: {values.size} values for shape {shape}")
            else:
                data = values.reshape(shape)
        tensors.append(TensorInfo(i, name, shape, dtype.name, data))

    ops: list[OpInfo] = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "UNKNOWN")
        if kind == "CUSTOM":
            kind = f"CUSTOM({code.CustomCode().decode()})"
        inputs = tuple(int(v) for v in op.InputsAsNumpy()) if op.InputsLength() else ()
        outputs = tuple(int(v) for v in op.OutputsAsNumpy()) if op.OutputsLength() else ()
        where = f"op {i} ({kind} -> {tensors[outputs[0]].name if outputs else '?'})"
        if any(not -1 <= t < len(tensors) for t in inputs + outputs):
            raise TfliteGraphError(f"{where}: tensor index out of range")
        if kind in FOLDED_OPS:
            source_tensor = tensors[inputs[0]]
            if source_tensor.data is None:
                raise UnsupportedOpError(f"{where}: {kind} of a non-constant tensor")
            data = source_tensor.data.astype(np.float32) if kind == "DEQUANTIZE" else source_tensor.data
            out = tensors[outputs[0]]
            tensors[outputs[0]] = TensorInfo(out.index, out.name, out.shape, data.dtype.name, data)
            continue
        if kind not in SUPPORTED_OPS:
            raise UnsupportedOpError(f"{where}: op kind {kind} is not supported (supported: {sorted(SUPPORTED_OPS)})")
        options = _options(kind, op, where)
        if kind in ("PAD", "RESHAPE", "RESIZE_BILINEAR") and len(inputs) >= 2:
            param = tensors[inputs[1]]
            if param.data is None:
                raise UnsupportedOpError(f"{where}: {kind} with a computed (non-constant) parameter tensor")
            key = {"PAD": "paddings", "RESHAPE": "new_shape", "RESIZE_BILINEAR": "size"}[kind]
            options[key] = tuple(map(tuple, param.data.tolist())) if kind == "PAD" else tuple(param.data.tolist())
            inputs = inputs[:1]
        elif kind == "RESHAPE":
            options["new_shape"] = tensors[outputs[0]].shape
        ops.append(OpInfo(i, kind, inputs, outputs, MappingProxyType(options)))

    for tensor in tensors:  # constants are shared by every module built from this graph: read-only
        if tensor.data is not None:
            tensor.data.flags.writeable = False
    graph_inputs = tuple(int(v) for v in graph.InputsAsNumpy())
    graph_outputs = tuple(int(v) for v in graph.OutputsAsNumpy())
    available = set(graph_inputs) | {t.index for t in tensors if t.is_constant}
    for op in ops:
        for t in op.inputs:
            if t >= 0 and t not in available:
                raise TfliteGraphError(f"op {op.index} ({op.kind}) reads tensor {t} {tensors[t].name!r} before it is written")
            if t >= 0 and tensors[t].dtype != "float32":
                raise UnsupportedOpError(f"op {op.index} ({op.kind}) reads {tensors[t].dtype} tensor {tensors[t].name!r}")
        available.update(op.outputs)
    missing = [t for t in graph_outputs if t not in available]
    if missing:
        raise TfliteGraphError(f"graph outputs {missing} are never written")
    return TfliteGraph(tuple(tensors), tuple(ops), graph_inputs, graph_outputs, MappingProxyType(_aliases(tensors)))
