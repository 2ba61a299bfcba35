"""SSD anchors, box + keypoint decoding and weighted non-max suppression of the BlazePose person detector.

The detector network (``BlazePoseDetectorNet``) regresses, for each of 2254 fixed anchors, a box and 4
keypoints relative to the anchor, plus one score logit. Turning that into person detections is plain
arithmetic that MediaPipe does in three calculators; this module re-implements the three, vectorised in
numpy, with the constants of MediaPipe's ``mediapipe/modules/pose_detection/pose_detection_cpu.pbtxt``
(google-ai-edge/mediapipe at 85c0cdc, 2026-08; Apache-2.0), checked line by line:

* ``SsdAnchorsCalculator`` (``calculators/tflite/ssd_anchors_calculator.cc``): num_layers 5, min_scale
  0.1484375, max_scale 0.75, input 224x224, anchor_offset 0.5, strides [8, 16, 32, 32, 32], aspect_ratios
  [1.0], fixed_anchor_size true (proto defaults: reduce_boxes_in_lowest_layer false,
  interpolated_scale_aspect_ratio 1.0). Layers with the same stride are merged, each contributing one
  anchor per aspect ratio plus one interpolated-scale anchor, so 28x28x2 + 14x14x2 + 7x7x6 = 2254 anchors.
  With ``fixed_anchor_size`` every anchor has w = h = 1, so the scales only decide *how many* anchors a
  cell has, not their size.
* ``TensorsToDetectionsCalculator`` (``calculators/tensor/tensors_to_detections_calculator.cc``):
  num_coords 12, box_coord_offset 0, keypoint_coord_offset 4, num_keypoints 4, values per keypoint 2,
  ``reverse_output_order: true`` (the raw box is x_c, y_c, w, h; keypoints are x, y), x/y/w/h scale 224,
  logit clipped to +-100 then sigmoid, min_score_thresh 0.5.
* ``NonMaxSuppressionCalculator`` (``calculators/util/non_max_suppression_calculator.cc``):
  min_suppression_threshold 0.3, overlap INTERSECTION_OVER_UNION, algorithm WEIGHTED.

All coordinates here are *normalised to the 224x224 detector input* (x / 224, y / 224, MediaPipe's
convention: 0 and 1 are the outer pixel edges). :mod:`lbi_ros.pose2d.roi` maps them to image pixels.
Keypoint order (from the graph's comments): 0 mid-hip centre, 1 a point encoding full-body size and
rotation, 2 mid-shoulder centre, 3 the same for the upper body.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnchorConfig:
    """``SsdAnchorsCalculatorOptions`` fields that the pose detector sets (defaults = the pose graph)."""

    num_layers: int = 5
    min_scale: float = 0.1484375
    max_scale: float = 0.75
    input_size: tuple[int, int] = (224, 224)  # (height, width)
    anchor_offset: tuple[float, float] = (0.5, 0.5)  # (x, y), in cells
    strides: tuple[int, ...] = (8, 16, 32, 32, 32)
    aspect_ratios: tuple[float, ...] = (1.0,)
    fixed_anchor_size: bool = True
    reduce_boxes_in_lowest_layer: bool = False
    interpolated_scale_aspect_ratio: float = 1.0

    def __post_init__(self) -> None:
        if len(self.strides) != self.num_layers:
            raise ValueError(f"{self.num_layers} layers need {self.num_layers} strides, got {self.strides}")
        if not self.aspect_ratios or min(self.aspect_ratios) <= 0:
            raise ValueError(f"aspect_ratios must be positive and non-empty, got {self.aspect_ratios}")


@dataclass(frozen=True)
class DecodeConfig:
    """``TensorsToDetectionsCalculatorOptions`` of the pose graph (``reverse_output_order`` => x first)."""

    num_keypoints: int = 4
    box_coord_offset: int = 0
    keypoint_coord_offset: int = 4
    num_values_per_keypoint: int = 2
    scale_xywh: tuple[float, float, float, float] = (224.0, 224.0, 224.0, 224.0)
    score_clipping_thresh: float = 100.0
    min_score_thresh: float = 0.5


POSE_ANCHORS = AnchorConfig()
POSE_DECODE = DecodeConfig()
NUM_POSE_ANCHORS = 2254


@dataclass(frozen=True)
class Detections:
    """N detections in normalised detector-input coordinates.

    ``boxes`` (N, 4) ``[xmin, ymin, xmax, ymax]``; ``keypoints`` (N, K, 2) ``[x, y]``; ``scores`` (N,)
    probabilities in [0, 1], sorted descending after :func:`weighted_nms`.
    """

    boxes: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def take(self, index: np.ndarray) -> Detections:
        return Detections(self.boxes[index], self.keypoints[index], self.scores[index])


def _scale(config: AnchorConfig, layer: int) -> float:
    """``CalculateScale``: linear from min_scale to max_scale over the strides."""
    n = len(config.strides)
    if n == 1:
        return (config.min_scale + config.max_scale) * 0.5
    return config.min_scale + (config.max_scale - config.min_scale) * layer / (n - 1.0)


def generate_anchors(config: AnchorConfig = POSE_ANCHORS) -> np.ndarray:
    """Anchors ``(N, 4)`` float32 ``[x_center, y_center, w, h]``, normalised, in MediaPipe's order.

    Order: layer group (consecutive equal strides merged), then row y, then column x, then the anchors of
    one cell. Centres are ``(x + offset) / feature_map_width`` with ``feature_map_width = ceil(W / stride)``.
    """
    height, width = config.input_size
    out: list[np.ndarray] = []
    layer = 0
    while layer < config.num_layers:
        sizes: list[tuple[float, float]] = []  # (w, h) per anchor of a cell
        last = layer
        while last < config.num_layers and config.strides[last] == config.strides[layer]:
            scale = _scale(config, last)
            if last == 0 and config.reduce_boxes_in_lowest_layer:
                pairs = [(1.0, 0.1), (2.0, scale), (0.5, scale)]
            else:
                pairs = [(ar, scale) for ar in config.aspect_ratios]
                if config.interpolated_scale_aspect_ratio > 0.0:
                    nxt = 1.0 if last == config.num_layers - 1 else _scale(config, last + 1)
                    pairs.append((config.interpolated_scale_aspect_ratio, float(np.sqrt(scale * nxt))))
            sizes += [(s * np.sqrt(ar), s / np.sqrt(ar)) for ar, s in pairs]
            last += 1
        stride = config.strides[layer]
        fh, fw = int(np.ceil(height / stride)), int(np.ceil(width / stride))
        ys, xs = np.meshgrid(np.arange(fh), np.arange(fw), indexing="ij")  # (fh, fw)
        cx = (xs + config.anchor_offset[0]) / fw
        cy = (ys + config.anchor_offset[1]) / fh
        k = len(sizes)
        wh = np.ones((k, 2)) if config.fixed_anchor_size else np.asarray(sizes, dtype=np.float64)
        centres = np.stack([cx, cy], -1).reshape(-1, 1, 2).repeat(k, axis=1)  # (fh*fw, k, 2)
        whs = np.broadcast_to(wh, centres.shape)  # (fh*fw, k, 2)
        out.append(np.concatenate([centres, whs], -1).reshape(-1, 4))
        layer = last
    return np.concatenate(out, 0).astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))  # float64: exp(100) overflows float32


def decode_detections(
    raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, config: DecodeConfig = POSE_DECODE
) -> Detections:
    """Raw regressors of one image -> the detections whose score passes ``min_score_thresh``.

    ``raw_boxes`` (N, C) with C >= 4 + 2K (x_c, y_c, w, h, then K x, y pairs, in detector-input pixels
    relative to the anchor centre); ``raw_scores`` (N,) or (N, 1) logits; ``anchors`` (N, 4) from
    :func:`generate_anchors`. Decoding (``DecodeBoxes`` with ``apply_exponential_on_box_size`` false):
    ``x = raw_x / x_scale * anchor_w + anchor_x``, ``w = raw_w / w_scale * anchor_w``, the same for y/h and
    for each keypoint. Score = sigmoid(clip(logit, -100, 100)).
    """
    raw_boxes = np.asarray(raw_boxes, dtype=np.float32)
    raw_scores = np.asarray(raw_scores, dtype=np.float32).reshape(-1)
    anchors = np.asarray(anchors, dtype=np.float32)
    n = anchors.shape[0]
    k = config.num_keypoints
    need = max(config.box_coord_offset + 4, config.keypoint_coord_offset + k * config.num_values_per_keypoint)
    if raw_boxes.shape != (n, raw_boxes.shape[-1]) or raw_boxes.shape[-1] < need or raw_scores.shape != (n,):
        raise ValueError(
            f"expected raw_boxes (N={n}, >= {need}) and raw_scores ({n},) or ({n}, 1); "
            f"got {raw_boxes.shape} and {raw_scores.shape}"
        )
    logits = np.clip(raw_scores, -config.score_clipping_thresh, config.score_clipping_thresh)
    scores = _sigmoid(logits)
    keep = np.flatnonzero(scores >= config.min_score_thresh)
    sx, sy, sw, sh = config.scale_xywh
    a = anchors[keep]  # (M, 4)
    b = raw_boxes[keep, config.box_coord_offset : config.box_coord_offset + 4]  # (M, 4) x_c, y_c, w, h
    xc = b[:, 0] / sx * a[:, 2] + a[:, 0]
    yc = b[:, 1] / sy * a[:, 3] + a[:, 1]
    w = b[:, 2] / sw * a[:, 2]
    h = b[:, 3] / sh * a[:, 3]
    boxes = np.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], -1)
    start = config.keypoint_coord_offset
    kp = raw_boxes[keep, start : start + k * config.num_values_per_keypoint]
    kp = kp.reshape(-1, k, config.num_values_per_keypoint)[..., :2]  # (M, K, 2) x, y
    kp = kp / np.array([sx, sy], np.float32) * a[:, None, 2:4] + a[:, None, 0:2]
    return Detections(boxes.astype(np.float32), kp.astype(np.float32), scores[keep].astype(np.float32))


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``[xmin, ymin, xmax, ymax]`` box with (M, 4) boxes -> (M,); 0 where the union is empty.

    MediaPipe's INTERSECTION_OVER_UNION: ``inter / (area1 + area2 - inter)``, 0 when they do not intersect.
    """
    ix = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    iy = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    inter = np.clip(ix, 0, None) * np.clip(iy, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def weighted_nms(
    detections: Detections, iou_threshold: float = 0.3, max_detections: int | None = None
) -> Detections:
    """MediaPipe's WEIGHTED non-max suppression.

    Repeatedly take the highest-scoring remaining detection; every remaining detection whose IoU with it
    is *greater* than ``iou_threshold`` (itself included) is a candidate; the output box corners and
    keypoints are the score-weighted means of the candidates, the output score is the top detection's
    own score; the candidates leave the pool. Ties in score keep the input order (stable sort), as
    ``std::sort`` over MediaPipe's anchor order would in practice. Returns at most ``max_detections``.
    """
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    order = np.argsort(-detections.scores, kind="stable")
    boxes, kps, scores = detections.boxes[order], detections.keypoints[order], detections.scores[order]
    remaining = np.arange(len(scores))
    out_boxes, out_kps, out_scores = [], [], []
    while remaining.size and (max_detections is None or len(out_scores) < max_detections):
        top = remaining[0]
        iou = box_iou(boxes[top], boxes[remaining])
        member = iou > iou_threshold
        member[0] = True  # a degenerate (zero-area) top box would otherwise never leave the pool
        cand = remaining[member]
        total = float(scores[cand].sum())
        w = scores[cand] / total if total > 0 else np.full(cand.size, 1.0 / cand.size)  # (C,)
        out_boxes.append(np.einsum("c,ck->k", w, boxes[cand]))
        out_kps.append(np.einsum("c,ckd->kd", w, kps[cand]))
        out_scores.append(scores[top])
        remaining = remaining[~member]
    k = detections.keypoints.shape[1] if detections.keypoints.ndim == 3 else 0
    if not out_scores:
        return Detections(np.zeros((0, 4), np.float32), np.zeros((0, k, 2), np.float32), np.zeros(0, np.float32))
    return Detections(
        np.stack(out_boxes).astype(np.float32),
        np.stack(out_kps).astype(np.float32),
        np.asarray(out_scores, dtype=np.float32),
    )
