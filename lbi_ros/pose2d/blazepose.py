"""BlazePose GHUM 3D (full) landmark network and BlazePose person detector, converted to PyTorch.

Why: the landmark model is the only pose-pretrained image backbone obtainable here
(docs/pose_backbone.md); its FPN maps are the LBI encoder's feature taps, and the detector plus
landmark model make the built-in 2D detector. Both are built at load time from the TFLite files
(:mod:`lbi_ros.pose2d.model_files`) by our converter (:mod:`lbi_ros.pose2d.tflite_graph`,
:mod:`lbi_ros.pose2d.tflite_torch`); the weights are Apache-2.0 (``LICENSE-blazepose.md``). Conversion
takes about 0.1 s (landmark) and 0.2 s (detector, its sparse weights are densified), so converted
weights are not cached.

Inputs (what MediaPipe's own graphs feed them; the ImageToTensorCalculator options compiled into the
mediapipe 0.10.21 wheel say so):

* landmark net: ``image_rgb`` (B, 256, 256, 3) float32 NHWC, RGB in [0, 1]; a person-centred upright
  crop about 1.25x the person (MediaPipe's ROI rule).
* detector net: ``image_rgb`` (B, 224, 224, 3) float32 NHWC, RGB in **[-1, 1]**, the frame letterboxed
  (aspect kept) to 224x224. (The interpreter alone does not settle the range: on the astronaut photo it
  scores 0.82 at [0, 1] and 0.81 at [-1, 1]; the wheel's PoseDetectionCpu graph sets range -1..1.)

Outputs of :class:`BlazePoseLandmarkNet` (file tensor names in brackets; 4-D tensors NCHW):

=================  =====================  ===============================================================
name               shape                  meaning
=================  =====================  ===============================================================
``landmarks``      (B, 39, 5)             x px, y px (in the 256 crop), z (crop-px scale, hip-relative),
                                          visibility logit, presence logit [``Identity``]; the first 33
                                          are MediaPipe's 33 body landmarks
``pose_flag``      (B, 1)                 person-present probability (the file's LOGISTIC is applied)
                                          [``Identity_1``]
``world``          (B, 39, 3)             metric xyz, metres, hip-centred [``Identity_4``]
``heatmaps``       (B, 39, 64, 64)        [``Identity_3``]
``segmentation``   (B, 1, 256, 256)       logits [``Identity_2``]
``add_8``          (B, 144, 8, 8)         encoder, stride 32 [``model_1/model/add_8/add``]
``add_9``          (B, 48, 16, 16)        FPN, stride 16 [``model_1/model/add_9/add``]
``add_10``         (B, 48, 32, 32)        FPN, stride 8 [``model_1/model/add_10/add``]
``add_11``         (B, 48, 64, 64)        FPN, stride 4 [``model_1/model/add_11/add``]
=================  =====================  ===============================================================

Asking only for taps builds and runs only the ops they need (no regression head). The taps are not
normalised (|x| up to ~15): put a LayerNorm or Linear before using them as tokens.

:class:`BlazePoseDetectorNet` returns the file's raw SSD outputs for 2254 anchors: ``boxes``
(B, 2254, 12) [``Identity``] (box centre offset, size, 4 keypoints, in 224-px input units, relative to
the anchor) and ``scores`` (B, 2254, 1) logits [``Identity_1``]; anchors and decoding live elsewhere.

Agreement (max abs difference; 2-core CPU, torch 2.13 CPU, ONNX Runtime 1.32, ai-edge-litert 2.3.0
reference kernels; test/test_pose2d_convert.py checks them against 1e-3 x magnitude, 5e-3 for landmarks):

========================================  ==========================================================
comparison                                figures (magnitude in brackets)
========================================  ==========================================================
torch vs TFLite, astronaut crop           landmarks x/y 1.5e-4 px (246), z 4.7e-4, logits 3e-5;
                                          world 2.9e-6 m (0.55); flag 6e-8 (0.91); add_8 1.8e-4 (102),
                                          add_9 5.0e-5 (9.9), add_10 4.9e-5 (14.9)
torch vs TFLite, seeded noise crop        landmarks x/y 3.7e-4 px (172); add_8 6.1e-4 (222),
                                          add_9 2.0e-5 (10.5), add_10 2.0e-5 (14.0)
torch vs TFLite, detector, astronaut      boxes 7.5e-4 (742), scores 2.7e-4 (420)
ONNX Runtime vs torch, batch 1 and 3      landmarks <= 1.2e-3 px, world <= 7e-6, add_9/add_10
                                          <= 7.3e-5, add_8 <= 4.8e-4; detector boxes <= 3.7e-4,
                                          scores <= 2.6e-4
========================================  ==========================================================

Cost per crop, batch 1, one thread, median of 50 calls (p90 within 25 %), on the
shared 2-core development machine on 2026-12-06, measured with
``bench_pose2d(iters=50, runtimes=("torch", "onnxruntime", "tflite"))`` from
:mod:`lbi_ros.benchmarks.pose2d_bench`:

=====================================  ===========  ============  ==================
model                                  torch eager  ONNX Runtime  TFLite (XNNPACK)
=====================================  ===========  ============  ==================
landmark net (landmarks, flag, world)  15.9 ms      8.8 ms        14.1 ms
encoder only, up to ``add_10``         14.2 ms      8.3 ms        (cannot stop early)
detector net (224 x 224)               20.1 ms      11.7 ms       10.2 ms
=====================================  ===========  ============  ==================
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from lbi_ros.pose2d.model_files import model_path
from lbi_ros.pose2d.tflite_graph import TfliteGraph, parse_tflite
from lbi_ros.pose2d.tflite_torch import TfliteModule

log = logging.getLogger(__name__)

LANDMARK_FILE = "pose_landmark_full.tflite"
DETECTOR_FILE = "pose_detection.tflite"
LANDMARK_INPUT_HW = (256, 256)
DETECTOR_INPUT_HW = (224, 224)
NUM_LANDMARKS = 39
NUM_ANCHORS = 2254
INPUT_NAME = "image_rgb"

LANDMARK_HEADS = {"landmarks": "Identity", "pose_flag": "Identity_1", "segmentation": "Identity_2",
                  "heatmaps": "Identity_3", "world": "Identity_4"}
"""Friendly output name -> tensor name in pose_landmark_full.tflite."""
TAP_SHAPES = {"add_8": (144, 8, 8), "add_9": (48, 16, 16), "add_10": (48, 32, 32), "add_11": (48, 64, 64)}
"""Feature taps -> (C, H, W) per crop; the tensor is ``model_1/model/<name>/add``."""
DEFAULT_LANDMARK_OUTPUTS = ("landmarks", "pose_flag", "world")
DETECTOR_HEADS = {"boxes": "Identity", "scores": "Identity_1"}


def _check_input(image_rgb: Tensor, hw: tuple[int, int], what: str) -> None:
    if torch.jit.is_tracing():  # shapes are fixed by the example input; no Python branches in the graph
        return
    if image_rgb.dim() != 4 or tuple(image_rgb.shape[1:]) != (*hw, 3) or image_rgb.dtype != torch.float32:
        raise ValueError(f"{what} expects image_rgb (B, {hw[0]}, {hw[1]}, 3) float32 NHWC, got "
                         f"{tuple(image_rgb.shape)} {image_rgb.dtype}")


class BlazePoseLandmarkNet(nn.Module):
    """The landmark model, restricted to ``outputs`` (names in the module docstring's table).

    ``forward(image_rgb)``: (B, 256, 256, 3) float32 RGB in [0, 1] -> ``{name: tensor}`` in ``outputs`` order.
    """

    def __init__(self, outputs: Sequence[str] = DEFAULT_LANDMARK_OUTPUTS, graph: TfliteGraph | None = None) -> None:
        super().__init__()
        unknown = [n for n in outputs if n not in LANDMARK_HEADS and n not in TAP_SHAPES]
        if unknown or not outputs:
            raise ValueError(f"unknown landmark-net outputs {unknown or list(outputs)}; choose from "
                             f"{list(LANDMARK_HEADS) + list(TAP_SHAPES)}")
        graph = graph if graph is not None else parse_tflite(model_path(LANDMARK_FILE))
        self.output_names = tuple(outputs)
        self.core = TfliteModule(graph, [LANDMARK_HEADS.get(n, n) for n in outputs])

    def forward(self, image_rgb: Tensor) -> dict[str, Tensor]:
        _check_input(image_rgb, LANDMARK_INPUT_HW, type(self).__name__)
        raw = self.core(image_rgb)
        out: dict[str, Tensor] = {}
        for name, value in zip(self.output_names, raw.values(), strict=True):
            if name == "landmarks":
                value = value.reshape(-1, NUM_LANDMARKS, 5)  # (B, 195) -> (B, 39, 5)
            elif name == "world":
                value = value.reshape(-1, NUM_LANDMARKS, 3)  # (B, 117) -> (B, 39, 3)
            out[name] = value
        return out


class BlazePoseDetectorNet(nn.Module):
    """The person detector. ``forward(image_rgb)``: (B, 224, 224, 3) float32 RGB in [-1, 1] ->
    ``{"boxes": (B, 2254, 12), "scores": (B, 2254, 1)}`` raw, as the file gives them."""

    def __init__(self, graph: TfliteGraph | None = None) -> None:
        super().__init__()
        graph = graph if graph is not None else parse_tflite(model_path(DETECTOR_FILE))
        self.output_names = tuple(DETECTOR_HEADS)
        self.core = TfliteModule(graph, list(DETECTOR_HEADS.values()))

    def forward(self, image_rgb: Tensor) -> dict[str, Tensor]:
        _check_input(image_rgb, DETECTOR_INPUT_HW, type(self).__name__)
        raw = self.core(image_rgb)
        return dict(zip(self.output_names, raw.values(), strict=True))


def load_landmark_net(outputs: Sequence[str] = DEFAULT_LANDMARK_OUTPUTS,
                      path: str | Path | None = None) -> BlazePoseLandmarkNet:
    """The landmark net in eval mode, from ``path`` or the verified cached file (:func:`model_path`)."""
    graph = parse_tflite(path if path is not None else model_path(LANDMARK_FILE))
    return BlazePoseLandmarkNet(outputs, graph).eval()


def load_detector_net(path: str | Path | None = None) -> BlazePoseDetectorNet:
    """The detector net in eval mode, from ``path`` or the verified cached file (:func:`model_path`)."""
    graph = parse_tflite(path if path is not None else model_path(DETECTOR_FILE))
    return BlazePoseDetectorNet(graph).eval()


class _TupleOutputs(nn.Module):
    """dict -> tuple in ``output_names`` order, because ``torch.onnx.export`` binds outputs by position."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image_rgb: Tensor) -> tuple[Tensor, ...]:
        out = self.net(image_rgb)
        return tuple(out[name] for name in self.net.output_names)


def export_onnx(net: BlazePoseLandmarkNet | BlazePoseDetectorNet, path: str | Path, opset: int = 17) -> Path:
    """Write ``net`` as ONNX (legacy exporter, dynamic batch): input ``image_rgb``, outputs named as ``net``'s."""
    hw = LANDMARK_INPUT_HW if isinstance(net, BlazePoseLandmarkNet) else DETECTOR_INPUT_HW
    path = Path(path)
    example = torch.zeros(2, *hw, 3)
    names = list(net.output_names)
    wrapper = _TupleOutputs(net).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
        shapes = [tuple(t.shape[1:]) for t in wrapper(example)]
        torch.onnx.export(wrapper, (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=names,
                          dynamic_axes={n: {0: "batch"} for n in [INPUT_NAME, *names]})
    import onnx

    # the exporter leaves the non-batch axes of reshaped outputs symbolic; they are fixed: say so
    model = onnx.load(str(path))
    for output, shape in zip(model.graph.output, shapes, strict=True):
        dims = output.type.tensor_type.shape.dim
        for dim, size in zip(list(dims)[1:], shape, strict=True):
            dim.ClearField("dim_param")
            dim.dim_value = int(size)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    log.info("exported %s (%s) to %s", type(net).__name__, ", ".join(names), path)
    return path
