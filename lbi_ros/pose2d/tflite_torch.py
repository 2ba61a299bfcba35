"""Build a ``torch.nn.Module`` from a parsed TFLite graph (:mod:`lbi_ros.pose2d.tflite_graph`).

Why our own converter: it needs no TensorFlow, mediapipe or onnx2torch (none installs here, see
docs/pose_backbone.md), keeps gradients, exports to ONNX with a dynamic batch, and can stop at
an intermediate tensor (the FPN taps the LBI encoder uses) without computing the heads.

Conventions:

* input: the graph's one input, NHWC as in the file (``(B, H, W, C)``, float32); batch is free.
* inside, every 4-D activation is NCHW; 4-D outputs come back NCHW, other ranks as TFLite lays them out
  (a RESHAPE out of a 4-D tensor first puts it back to NHWC order, so flattened features match the file).
* weights: CONV_2D ``[O, kh, kw, I]`` -> ``[O, I, kh, kw]``; DEPTHWISE_CONV_2D ``[1, kh, kw, C*m]`` ->
  ``[C*m, 1, kh, kw]`` with ``groups=C``. Parameters are named ``layers.op<file op index>.weight``.
* TF "SAME" padding is asymmetric (the extra row/column goes after) on stride-2 layers: an explicit pad.
* Only the ops needed for the requested outputs are built and run, so asking for ``add_10`` alone is an
  encoder that never computes the regression head.
* No Python-side logic depends on tensor values or on the batch size (reshapes use -1 for it), so
  ``torch.onnx.export(..., dynamo=False)`` traces one graph valid for every batch size.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lbi_ros.pose2d.tflite_graph import OpInfo, TfliteGraph, UnsupportedOpError

log = logging.getLogger(__name__)

_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) pixels of TF "SAME" padding along one axis: output = ceil(size / stride)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class _ConstantPadOnnx(torch.autograd.Function):
    """F.pad whose ONNX form is one Pad with constant pads (export only).

    The legacy exporter builds Pad's ``pads`` input from a reversed Slice that constant folding skips,
    so every later shape in the graph would be unknown; this symbolic emits the pads as a constant.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, pads: tuple[int, ...], value: float) -> Tensor:
        return F.pad(x, pads, value=value)

    @staticmethod
    def symbolic(g: Any, x: Any, pads: tuple[int, ...], value: float) -> Any:
        rank = 4
        begins, ends = [0] * rank, [0] * rank
        for i in range(len(pads) // 2):  # F.pad pairs run from the last axis backwards
            begins[rank - 1 - i], ends[rank - 1 - i] = pads[2 * i], pads[2 * i + 1]
        return g.op("Pad", x, g.op("Constant", value_t=torch.tensor(begins + ends, dtype=torch.int64)),
                    g.op("Constant", value_t=torch.tensor(value, dtype=torch.float32)), mode_s="constant")


def pad4d(x: Tensor, pads: tuple[int, ...], value: float = 0.0) -> Tensor:
    """F.pad of a 4-D tensor (``pads`` in F.pad order) that exports to ONNX with constant pads."""
    if torch.onnx.is_in_onnx_export():
        return _ConstantPadOnnx.apply(x, pads, value)
    return F.pad(x, pads, value=value)


def _activate(x: Tensor, activation: str) -> Tensor:
    if activation == "RELU":
        return F.relu(x)
    if activation == "RELU6":
        return torch.clamp(x, 0.0, 6.0)
    return x


class Conv(nn.Module):
    """CONV_2D / DEPTHWISE_CONV_2D with TF padding and the fused activation."""

    def __init__(self, weight: Tensor, bias: Tensor | None, stride: tuple[int, int], dilation: tuple[int, int],
                 pads: tuple[int, int, int, int], groups: int, activation: str) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias) if bias is not None else None
        self.stride, self.dilation, self.groups, self.activation = stride, dilation, groups, activation
        top, bottom, left, right = pads
        self.symmetric = top == bottom and left == right
        self.pads = (left, right, top, bottom)  # F.pad order: last axis (W) first

    def forward(self, x: Tensor) -> Tensor:
        if self.symmetric:
            y = F.conv2d(x, self.weight, self.bias, self.stride, (self.pads[2], self.pads[0]), self.dilation, self.groups)
        else:
            y = F.conv2d(pad4d(x, self.pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return _activate(y, self.activation)


class Add(nn.Module):
    def __init__(self, activation: str) -> None:
        super().__init__()
        self.activation = activation

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return _activate(a + b, self.activation)


class Pad(nn.Module):
    """PAD with zeros; ``pads`` in F.pad order for the tensor's torch layout."""

    def __init__(self, pads: tuple[int, ...]) -> None:
        super().__init__()
        self.pads = pads

    def forward(self, x: Tensor) -> Tensor:
        return pad4d(x, self.pads)


class ResizeBilinear(nn.Module):
    """RESIZE_BILINEAR, half_pixel_centers=True, align_corners=False: PyTorch's align_corners=False rule."""

    def __init__(self, in_size: tuple[int, int], out_size: tuple[int, int]) -> None:
        super().__init__()
        factors = [o / i for o, i in zip(out_size, in_size, strict=True)]
        # an integer factor exports as a constant-scales Resize; otherwise the exact output size
        self.scale = tuple(factors) if all(f == int(f) for f in factors) else None
        self.size = out_size

    def forward(self, x: Tensor) -> Tensor:
        if self.scale is not None:
            return F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)


class MaxPool(nn.Module):
    def __init__(self, kernel: tuple[int, int], stride: tuple[int, int], pads: tuple[int, int, int, int],
                 activation: str) -> None:
        super().__init__()
        self.kernel, self.stride, self.activation = kernel, stride, activation
        top, bottom, left, right = pads
        self.pads = (left, right, top, bottom) if any(pads) else None

    def forward(self, x: Tensor) -> Tensor:
        if self.pads is not None:  # TF max pool ignores padding: pad with -inf
            x = pad4d(x, self.pads, float("-inf"))
        return _activate(F.max_pool2d(x, self.kernel, self.stride), self.activation)


class Reshape(nn.Module):
    """RESHAPE of the batch-1 file shape ``new_shape``; batch becomes -1. NCHW in/out handled here."""

    def __init__(self, new_shape: tuple[int, ...], from_image: bool) -> None:
        super().__init__()
        self.tail, self.from_image, self.to_image = tuple(new_shape[1:]), from_image, len(new_shape) == 4

    def forward(self, x: Tensor) -> Tensor:
        if self.from_image:
            x = x.permute(0, 2, 3, 1)  # (B, C, H, W) -> (B, H, W, C): TFLite flattens in NHWC order
        y = x.reshape((-1,) + self.tail)
        return y.permute(0, 3, 1, 2) if self.to_image else y


class Logistic(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x)


class Concat(nn.Module):
    def __init__(self, axis: int, activation: str) -> None:
        super().__init__()
        self.axis, self.activation = axis, activation

    def forward(self, *xs: Tensor) -> Tensor:
        return _activate(torch.cat(xs, dim=self.axis), self.activation)


class DepthToSpace(nn.Module):
    """TF DEPTH_TO_SPACE (DCR order): out[b, c, h*s+i, w*s+j] = in[b, (i*s+j)*C_out + c, h, w]."""

    def __init__(self, block: int, out_channels: int, in_hw: tuple[int, int]) -> None:
        super().__init__()
        self.block, self.out_channels, self.in_hw = block, out_channels, in_hw

    def forward(self, x: Tensor) -> Tensor:
        s, c, (h, w) = self.block, self.out_channels, self.in_hw
        y = x.reshape(-1, s, s, c, h, w)  # (B, i, j, C_out, H, W)
        return y.permute(0, 3, 4, 1, 5, 2).reshape(-1, c, h * s, w * s)  # (B, C_out, H, i, W, j) -> (B, C, H*s, W*s)


class TfliteModule(nn.Module):
    """The ops of ``graph`` needed for ``outputs`` (tensor names or aliases; default: the graph outputs).

    ``forward(x)``: ``x`` (B, H, W, C) float32, the graph input in NHWC; returns ``{name: tensor}`` in the
    order of ``outputs``, 4-D tensors NCHW.
    """

    def __init__(self, graph: TfliteGraph, outputs: Sequence[str] | None = None) -> None:
        super().__init__()
        if len(graph.inputs) != 1:
            raise UnsupportedOpError(f"expected a graph with one input, got {len(graph.inputs)}")
        self.input_index = graph.inputs[0]
        names = list(outputs) if outputs is not None else [graph.tensors[t].name for t in graph.outputs]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"outputs must be distinct names, got {names}")
        self.output_names = tuple(names)
        self.output_indices = tuple(graph.tensor_index(n) for n in names)
        needed = set(self.output_indices)
        kept: list[OpInfo] = []
        for op in reversed(graph.ops):  # keep only the ops some requested output depends on
            if needed.intersection(op.outputs):
                kept.append(op)
                needed.update(t for t in op.inputs if t >= 0 and not graph.tensors[t].is_constant)
        kept.reverse()
        self.layers = nn.ModuleDict()
        self.plan: list[tuple[str, tuple[int, ...], int]] = []
        for op in kept:
            key = f"op{op.index:03d}"
            self.layers[key] = self._build(graph, op)
            data_inputs = tuple(t for t in op.inputs if t >= 0 and not graph.tensors[t].is_constant)
            self.plan.append((key, data_inputs, op.outputs[0]))
        # after which step each tensor is last read (so forward can drop it and keep memory flat)
        last_use: dict[int, int] = {}
        for step, (_, inputs, _) in enumerate(self.plan):
            for t in inputs:
                last_use[t] = step
        keep = set(self.output_indices)
        self.release = [tuple(t for t, s in last_use.items() if s == step and t not in keep)
                        for step in range(len(self.plan))]
        log.debug("built %d of %d ops for outputs %s", len(kept), len(graph.ops), names)

    def _build(self, graph: TfliteGraph, op: OpInfo) -> nn.Module:
        where = f"op {op.index} ({op.kind} -> {graph.tensors[op.outputs[0]].name})"
        if len(op.outputs) != 1:
            raise UnsupportedOpError(f"{where}: {len(op.outputs)} outputs (one is implemented)")
        opt = op.options
        x_shape = graph.tensors[op.inputs[0]].shape
        out_shape = graph.tensors[op.outputs[0]].shape
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w_info = graph.tensors[op.inputs[1]]
            if w_info.data is None or (len(op.inputs) > 2 and op.inputs[2] >= 0 and graph.tensors[op.inputs[2]].data is None):
                raise UnsupportedOpError(f"{where}: computed (non-constant) weights")
            w = torch.from_numpy(w_info.data.copy())
            bias = (torch.from_numpy(graph.tensors[op.inputs[2]].data.copy())
                    if len(op.inputs) > 2 and op.inputs[2] >= 0 else None)
            c_in = x_shape[3]
            if op.kind == "CONV_2D":  # [O, kh, kw, I] -> [O, I, kh, kw]
                weight, groups = w.permute(0, 3, 1, 2).contiguous(), c_in // w.shape[3]
            else:  # [1, kh, kw, C*m] -> [C*m, 1, kh, kw]
                weight, groups = w.permute(3, 0, 1, 2).contiguous(), c_in
            kh, kw = weight.shape[2:]
            pads = self._pads(opt, x_shape, (kh, kw), opt["dilation"])
            return Conv(weight, bias, opt["stride"], opt["dilation"], pads, groups, opt["activation"])
        if op.kind == "MAX_POOL_2D":
            return MaxPool(opt["filter"], opt["stride"], self._pads(opt, x_shape, opt["filter"], (1, 1)),
                           opt["activation"])
        if op.kind == "ADD":
            if len(op.inputs) != 2 or any(graph.tensors[t].is_constant for t in op.inputs):
                raise UnsupportedOpError(f"{where}: ADD of anything but two computed tensors")
            if graph.tensors[op.inputs[0]].shape != graph.tensors[op.inputs[1]].shape:
                raise UnsupportedOpError(f"{where}: broadcasting ADD {graph.tensors[op.inputs[0]].shape} + "
                                         f"{graph.tensors[op.inputs[1]].shape}")
            return Add(opt["activation"])
        if op.kind == "PAD":
            pads = opt["paddings"]  # ((n0, n1), (h0, h1), (w0, w1), (c0, c1)) for NHWC
            if len(x_shape) != 4 or tuple(pads[0]) != (0, 0):
                raise UnsupportedOpError(f"{where}: PAD {pads} of shape {x_shape} (4-D, batch unpadded is implemented)")
            return Pad((pads[2][0], pads[2][1], pads[1][0], pads[1][1], pads[3][0], pads[3][1]))
        if op.kind == "RESIZE_BILINEAR":
            return ResizeBilinear((x_shape[1], x_shape[2]), tuple(opt["size"]))
        if op.kind == "RESHAPE":
            new_shape = tuple(opt["new_shape"])
            if -1 in new_shape[1:]:  # the file's static output shape resolves a -1 outside the batch axis
                new_shape = out_shape
            if new_shape[0] not in (1, -1) or x_shape[0] != 1 or -1 in new_shape[1:]:
                raise UnsupportedOpError(f"{where}: RESHAPE {x_shape} -> {new_shape} mixes the batch axis")
            return Reshape(new_shape, from_image=len(x_shape) == 4)
        if op.kind == "LOGISTIC":
            return Logistic()
        if op.kind == "CONCATENATION":
            rank = len(out_shape)
            axis = opt["axis"] % rank
            if axis == 0:
                raise UnsupportedOpError(f"{where}: CONCATENATION along the batch axis")
            return Concat(_NHWC_TO_NCHW_AXIS[axis] if rank == 4 else axis, opt["activation"])
        if op.kind == "DEPTH_TO_SPACE":
            return DepthToSpace(opt["block_size"], out_shape[3], (x_shape[1], x_shape[2]))
        raise UnsupportedOpError(f"{where}: no builder for {op.kind}")

    @staticmethod
    def _pads(opt: dict, x_shape: tuple[int, ...], kernel: tuple[int, int],
              dilation: tuple[int, int]) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) for the op's TF padding mode, from the static input size."""
        if opt["padding"] == "VALID":
            return 0, 0, 0, 0
        top, bottom = same_padding(x_shape[1], kernel[0], opt["stride"][0], dilation[0])
        left, right = same_padding(x_shape[2], kernel[1], opt["stride"][1], dilation[1])
        return top, bottom, left, right

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        env: dict[int, Tensor] = {self.input_index: x.permute(0, 3, 1, 2)}  # (B, H, W, C) -> (B, C, H, W)
        for (key, inputs, output), release in zip(self.plan, self.release, strict=True):
            env[output] = self.layers[key](*(env[t] for t in inputs))
            for t in release:
                del env[t]
        return {name: env[t] for name, t in zip(self.output_names, self.output_indices, strict=True)}
