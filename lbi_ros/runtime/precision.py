"""Reduced precision baked into the ONNX graph: fp16 for strongly typed TensorRT builds, and an int8 image
backbone for ONNX Runtime on the CPU.

**fp16.**

TensorRT 11 has no FP16 builder flag: precision comes from the graph's own types, built with the
``STRONGLY_TYPED`` network flag (TensorRT 10.x accepts the same graph). :func:`convert_to_fp16` uses
``onnxconverter-common``'s float16 pass and keeps in fp32:

* every ``LayerNormalization`` (mean/variance over 128 channels lose precision in fp16) and ``Softmax``
  (the AFSM ranks patches by the summed attention maps, docs/method.md §5);
* the output heads: every node between a graph output and the head's LayerNorm (the Linear, the
  pelvis-relative subtraction, the log-variance sigmoid squash);
* the graph inputs and outputs (``keep_io_types``), so the I/O contract stays float32 and every backend
  feeds the same arrays.

The exported graph shares deduplicated initializers between nodes (one all-zero bias feeds many
Identity nodes) and reaches weights through Identity nodes; the converter would then cast a tensor
that an fp32 node still reads, so both are undone first (:func:`_untangle_initializers`). It also ends a
kept-fp32 head with a Cast to fp16 and declares the output fp16 despite ``keep_io_types``: those Casts are
turned back to float32 (:func:`_float32_outputs`), and the ONNX Runtime backend rejects any file whose
I/O types differ from the contract.

Accuracy (seeded random-weight LBI lifter, ONNX Runtime CPU vs PyTorch fp32, batches 1 and 5): joints_3d
within 0.5 mm, joints_logvar within 1.2e-3. :data:`FP16_TOLERANCE` is the documented bound that the export
check and the tests use: 5 mm on the joints and 0.02 on the log-variance, about ten times that margin, so
that trained weights (larger activations) still pass. Re-measure with ``lbi export --fp16`` on the real
checkpoint before shipping.

**int8** (:func:`quantize_backbone`; ONNX Runtime CPU only). A gated LBI spends ~80 % of its CPU time in the
frozen BlazePose backbone's 45 convolutions (ONNX Runtime profile, batch 1). Those nodes (and only those:
names under ``/model/backbone/``) are statically quantized, QDQ format, int8 weights per output channel and
uint8 activations whose ranges are calibrated on real person crops (the caller passes them; the factory uses
the demo scene's, :mod:`lbi_ros.demo.calibration`). The keypoint path, attention, LayerNorm and heads stay
fp32, and so do the I/O. Measured on this 2-core x86 (AVX-512 VNNI), ONNX Runtime 1 thread, batch 1: the whole
gated model 9.95 -> 6.43 ms median (paired, 100 calls). Because int8 changes the image features, its check is
not a bit-level parity: :data:`INT8_TOLERANCE` bounds the *mean* absolute difference from PyTorch fp32 over
held-out real crops, and ``lbi eval --precision int8`` scores it on the val/test splits like any model.

onnx, onnxconverter_common and onnxruntime.quantization are imported inside the functions.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lbi_ros.runtime.io_spec import JOINTS_3D, JOINTS_3D_COARSE, JOINTS_LOGVAR

log = logging.getLogger(__name__)

METADATA_KEY_PRECISION = "lbi_ros.precision"
FP32_OPS: tuple[str, ...] = ("LayerNormalization", "Softmax")
FP32_TOLERANCE = 1e-4
"""Max abs error of an fp32 export vs PyTorch, every output (metres for joints)."""
FP16_TOLERANCE: dict[str, float] = {JOINTS_3D: 5e-3, JOINTS_3D_COARSE: 5e-3, JOINTS_LOGVAR: 2e-2}
"""Max abs error of the fp16 graph vs PyTorch fp32: 5 mm on joints, 0.02 on the log-variance (m^2)."""


INT8_TOLERANCE: dict[str, float] = {JOINTS_3D: 1.5e-2, JOINTS_3D_COARSE: 1.5e-2, JOINTS_LOGVAR: 0.25}
"""*Mean* abs difference of the int8-backbone graph from PyTorch fp32 on held-out real person crops: 15 mm on
joints (the shipped default measured ~3 mm per coordinate), 0.25 on the log-variance."""
BACKBONE_NODE_PREFIX = "/model/backbone/"
"""Where the exporter puts the image backbone's nodes (the ``backbone`` submodule of the lifter)."""


def tolerance(precision: str, output_name: str) -> float:
    if precision == "int8":
        return INT8_TOLERANCE.get(output_name, 1.5e-2)
    return FP32_TOLERANCE if precision == "fp32" else FP16_TOLERANCE.get(output_name, 5e-3)


def fp16_available() -> str | None:
    """None if the conversion can run, else why not."""
    try:
        import onnxconverter_common  # noqa: F401
    except ImportError as exc:
        return f"onnxconverter-common is not installed ({exc}); pip install -r requirements/deploy.txt"
    return None


def model_precision(proto_or_metadata: Any) -> str:
    """``fp16``, ``int8`` or ``fp32`` from an ONNX ModelProto or a metadata mapping (absent key = fp32)."""
    if hasattr(proto_or_metadata, "metadata_props"):
        metadata = {p.key: p.value for p in proto_or_metadata.metadata_props}
    else:
        metadata = dict(proto_or_metadata)
    return metadata.get(METADATA_KEY_PRECISION, "fp32")


def _set_precision(proto: Any, precision: str) -> None:
    """Write ``precision`` into the ONNX model's metadata (what :func:`model_precision` reads)."""
    prop = next((p for p in proto.metadata_props if p.key == METADATA_KEY_PRECISION), None)
    prop = prop or proto.metadata_props.add()
    prop.key, prop.value = METADATA_KEY_PRECISION, precision


def convert_to_fp16(src: str | Path, dst: str | Path) -> Path:
    """Write an fp16 version of the fp32 ONNX ``src`` to ``dst`` (I/O stay float32; see the module doc)."""
    import onnx
    from onnxconverter_common import float16

    proto = onnx.load(str(src))
    if model_precision(proto) != "fp32":
        raise ValueError(f"{src} is already {model_precision(proto)}")
    _untangle_initializers(proto.graph)
    keep = sorted(_head_nodes(proto.graph))
    with warnings.catch_warnings():
        # "the float32 number 4.6e-09 will be truncated to 1e-07": expected for tiny weights
        warnings.filterwarnings("ignore", category=UserWarning, module=r"onnxconverter_common")
        converted = float16.convert_float_to_float16(
            proto, keep_io_types=True, op_block_list=list(FP32_OPS), node_block_list=keep)
    _float32_outputs(converted.graph)
    onnx.checker.check_model(converted)
    _set_precision(converted, "fp16")
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(converted, str(dst))
    log.info("fp16 graph (%d nodes kept fp32 in the heads, ops %s fp32) written to %s", len(keep), FP32_OPS, dst)
    return dst


def _float32_outputs(graph: Any) -> None:
    """Make every graph output float32 again. The converter ends a kept-fp32 head with a Cast to fp16 and
    declares the output fp16 despite ``keep_io_types``; the contract says float32, so each output's final
    Cast casts to float32 (a no-op after an fp32 head, the usual up-cast after an fp16 one)."""
    from onnx import TensorProto, helper

    producer = {out: node for node in graph.node for out in node.output}
    for output in graph.output:
        if output.type.tensor_type.elem_type == TensorProto.FLOAT:
            continue
        node = producer.get(output.name)
        if node is None or node.op_type != "Cast":
            raise RuntimeError(f"fp16 conversion left output {output.name} as non-float32 without a Cast to fix")
        del node.attribute[:]
        node.attribute.append(helper.make_attribute("to", TensorProto.FLOAT))
        output.type.tensor_type.elem_type = TensorProto.FLOAT


def _untangle_initializers(graph: Any) -> None:
    """Inline Identity nodes that only rename tensors, then give each consumer of a shared initializer its
    own copy, so the converter can cast one consumer's weights without changing another's."""
    outputs = {o.name for o in graph.output}
    rename = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity" and n.output[0] not in outputs}
    for node in [n for n in graph.node if n.op_type == "Identity" and n.output[0] in rename]:
        graph.node.remove(node)
    for node in graph.node:
        for i, name in enumerate(node.input):
            while name in rename:
                name = rename[name]
            node.input[i] = name
    initializers = {t.name: t for t in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name not in initializers:
                continue
            count = uses.get(name, 0)
            uses[name] = count + 1
            if count:
                clone = copy.deepcopy(initializers[name])
                clone.name = f"{name}__copy{count}"
                graph.initializer.append(clone)
                node.input[i] = clone.name


def _head_nodes(graph: Any) -> set[str]:
    """Names of the nodes from each graph output back to (and including) the head's LayerNormalization."""
    producer = {out: node for node in graph.node for out in node.output}
    heads: set[str] = set()
    stack = [producer[o.name] for o in graph.output if o.name in producer]
    while stack:
        node = stack.pop()
        if node.name in heads:
            continue
        heads.add(node.name)
        if node.op_type != "LayerNormalization":
            stack.extend(producer[i] for i in node.input if i in producer)
    return heads


def int8_available() -> str | None:
    """None if the int8 quantizer can run, else why not."""
    try:
        import onnxruntime.quantization  # noqa: F401
    except ImportError as exc:
        return f"onnxruntime's quantization tools are not importable ({exc}); pip install -r requirements/core.txt"
    return None


def backbone_nodes(graph: Any) -> list[str]:
    """Names of the image backbone's nodes in an lbi_ros export (empty for a model that reads no image)."""
    return [node.name for node in graph.node if node.name.startswith(BACKBONE_NODE_PREFIX)]


def quantize_backbone(src: str | Path, dst: str | Path, calibration: Sequence[Mapping[str, np.ndarray]]) -> Path:
    """Write ``src`` (fp32 lbi_ros export) to ``dst`` with its image backbone quantized to int8 (module doc).

    ``calibration``: model feeds (input name -> (B, ...) float32) of real person crops, as the node cuts them.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src), Path(dst)
    proto = onnx.load(str(src))
    if model_precision(proto) != "fp32":
        raise ValueError(f"{src} is {model_precision(proto)}; int8 is made from an fp32 export")
    nodes = backbone_nodes(proto.graph)
    if not nodes:
        raise ValueError(f"{src} has no image backbone ({BACKBONE_NODE_PREFIX}*): int8 quantizes the backbone of a "
                         "model that reads the image; a 2D-only lifter has none")
    if not calibration:
        raise ValueError("int8 calibration needs at least one batch of person crops")
    inputs = {i.name for i in proto.graph.input}
    feeds = [{k: v for k, v in f.items() if k in inputs} for f in calibration]

    class _Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    dst.parent.mkdir(parents=True, exist_ok=True)
    pre = dst.with_name(f".{dst.stem}.pre.onnx")
    try:
        quant_pre_process(str(src), str(pre))  # shape inference + graph clean-up, as the quantizer asks
        # the pre-processed graph keeps node names, so the backbone selection above still applies
        quantize_static(str(pre), str(dst), _Feeds(), quant_format=QuantFormat.QDQ, nodes_to_quantize=nodes,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        pre.unlink(missing_ok=True)
        for extra in dst.parent.glob(f".{dst.stem}.pre*"):
            extra.unlink(missing_ok=True)
    quantized = onnx.load(str(dst))
    del quantized.metadata_props[:]  # the contract of the source, with the precision changed
    quantized.metadata_props.extend(proto.metadata_props)
    _set_precision(quantized, "int8")
    onnx.save(quantized, str(dst))
    log.info("int8 backbone (%d nodes, %d calibration batches) written to %s", len(nodes), len(feeds), dst)
    return dst
