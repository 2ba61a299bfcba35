"""The ONE I/O contract of a lifter: tensor names, dtypes, shapes and the dynamic batch axis.

Built from a :class:`~lbi_ros.model.config.ModelConfig` by :func:`build_io_spec`. The ONNX exporter names
graph inputs/outputs from it, the ONNX file carries it in its metadata (:func:`io_spec_from_metadata`),
and every inference backend feeds inputs and reads outputs **by these names** (:meth:`IOSpec.bind_outputs`),
so no code anywhere unpacks outputs by position. Axis 0 of every tensor is the batch of persons.

Inputs (in this order; the 2D-only lifters omit ``image_crop``):

=================  =================  ==========================================================================
name               shape              meaning
=================  =================  ==========================================================================
image_crop         (B, 3, H, W)       RGB crop, ImageNet mean/std normalised; H, W = crop_height, crop_width
keypoints_crop     (B, J, 3)          x, y in the crop frame [-1, 1] (x = u_crop / (W/2) - 1) and detector
                                      confidence in [0, 1]; confidence 0 = missing joint (x, y then ignored)
keypoints_cam      (B, J, 2)          camera-normalised ((u - cx) / fx, (v - cy) / fy)
crop_cam           (B, 4)             crop box: [(box_cx - cx)/fx, (box_cy - cy)/fy, box_w/fx, box_h/fy]
=================  =================  ==========================================================================

A gated lifter's *head* (``build_io_spec(config, features_shape=(C, g, g))``: the lifter without its frozen
backbone, :meth:`~lbi_ros.model.gated.GatedLBILifter.forward_features`) takes ``features`` (B, C, g, g), the
backbone's map of the shared square crop, in place of ``image_crop``: a 2D detector that already ran that
backbone on that crop hands its map over (:class:`~lbi_ros.pose2d.roi.SharedCrop`).

Outputs:

=================  =========  ================================================================================
joints_3d          (B, J, 3)  metres, camera axes (x right, y down, z forward), pelvis-relative (row 0 = 0)
joints_logvar      (B, J)     per-joint log-variance of joints_3d, m^2
joints_3d_coarse   (B, J, 3)  stage-1 pose, same convention. **Export option** ``include_coarse`` (default
                              off): the inference graph omits it, and the coarse head is pruned from it.
                              Only the LBI lifter has it; the PyTorch forward always returns it.
=================  =========  ================================================================================

This module needs neither torch nor onnx (numpy only).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lbi_ros.model.config import ModelConfig

if TYPE_CHECKING:
    from lbi_ros.preprocess import CropConfig

BATCH_AXIS = "batch"
METADATA_KEY_SPEC = "lbi_ros.io_spec"
METADATA_KEY_CONFIG = "lbi_ros.model_config"

IMAGE_CROP = "image_crop"
FEATURES = "features"
KEYPOINTS_CROP = "keypoints_crop"
KEYPOINTS_CAM = "keypoints_cam"
CROP_CAM = "crop_cam"
JOINTS_3D = "joints_3d"
JOINTS_LOGVAR = "joints_logvar"
JOINTS_3D_COARSE = "joints_3d_coarse"


class IOSpecError(ValueError):
    """Tensors handed to or returned by a lifter do not match its I/O contract."""


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor. ``shape`` holds ints and :data:`BATCH_AXIS` for the dynamic axis."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]
    description: str = ""

    def concrete_shape(self, batch_size: int) -> tuple[int, ...]:
        return tuple(batch_size if d == BATCH_AXIS else int(d) for d in self.shape)

    def check(self, array: Any) -> int:
        """Check dtype and shape of an array-like with ``.shape``/``.dtype``; return its batch size."""
        shape = tuple(int(d) for d in array.shape)
        if len(shape) != len(self.shape):
            raise IOSpecError(f"{self.name}: expected {len(self.shape)} dims {self.shape}, got shape {shape}")
        batch = -1
        for axis, (want, got) in enumerate(zip(self.shape, shape, strict=True)):
            if want == BATCH_AXIS:
                batch = got
            elif want != got:
                raise IOSpecError(f"{self.name}: axis {axis} must be {want}, got shape {shape}")
        dtype = str(array.dtype).removeprefix("torch.")
        if dtype != self.dtype:
            raise IOSpecError(f"{self.name}: expected dtype {self.dtype}, got {dtype}")
        return batch


@dataclass(frozen=True)
class IOSpec:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    def input(self, name: str) -> TensorSpec:
        return _find(self.inputs, name, "input")

    def output(self, name: str) -> TensorSpec:
        return _find(self.outputs, name, "output")

    def has_input(self, name: str) -> bool:
        return name in self.input_names

    def has_output(self, name: str) -> bool:
        return name in self.output_names

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """``torch.onnx.export`` dynamic_axes: the batch axis of every input and output."""
        return {
            t.name: {i: BATCH_AXIS for i, d in enumerate(t.shape) if d == BATCH_AXIS}
            for t in self.inputs + self.outputs
        }

    def check_inputs(self, feeds: Mapping[str, Any]) -> int:
        """Validate a name -> array mapping (exactly the input names, shapes, dtypes, one batch size)."""
        missing = [n for n in self.input_names if n not in feeds]
        extra = sorted(set(feeds) - set(self.input_names))
        if missing or extra:
            raise IOSpecError(f"inputs must be exactly {list(self.input_names)}; missing {missing}, unexpected {extra}")
        batches = {name: self.input(name).check(feeds[name]) for name in self.input_names}
        if len(set(batches.values())) != 1:
            raise IOSpecError(f"inputs disagree on the batch size: {batches}")
        return next(iter(batches.values()))

    def bind_outputs(self, values: Sequence[Any]) -> dict[str, Any]:
        """Name the outputs a backend returned in :attr:`output_names` order (ORT ``run``, TensorRT bindings)."""
        if len(values) != len(self.outputs):
            raise IOSpecError(f"expected {len(self.outputs)} outputs {list(self.output_names)}, got {len(values)}")
        return dict(zip(self.output_names, values, strict=True))

    def to_dict(self) -> dict[str, Any]:
        def plain(t: TensorSpec) -> dict[str, Any]:
            return {"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "description": t.description}

        return {"inputs": [plain(t) for t in self.inputs], "outputs": [plain(t) for t in self.outputs]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IOSpec:
        def spec(d: Mapping[str, Any]) -> TensorSpec:
            return TensorSpec(d["name"], d["dtype"], tuple(d["shape"]), d.get("description", ""))

        try:
            return cls(tuple(spec(d) for d in data["inputs"]), tuple(spec(d) for d in data["outputs"]))
        except (KeyError, TypeError) as exc:
            raise IOSpecError(f"malformed I/O spec: {exc}") from exc


def _find(specs: tuple[TensorSpec, ...], name: str, kind: str) -> TensorSpec:
    for t in specs:
        if t.name == name:
            return t
    raise IOSpecError(f"no {kind} named {name!r}; {kind}s are {[t.name for t in specs]}")


def build_io_spec(config: ModelConfig, include_coarse: bool = False,
                  features_shape: tuple[int, int, int] | None = None) -> IOSpec:
    """The contract of the network ``config`` builds. ``include_coarse`` adds ``joints_3d_coarse``.

    ``features_shape`` (C, g, g): the contract of a gated lifter's head, ``features`` in place of ``image_crop``.
    """
    B, J = BATCH_AXIS, config.num_joints
    inputs = []
    if features_shape is not None:
        if config.kind != "lbi_gated":
            raise IOSpecError(f"only an 'lbi_gated' lifter runs on given features, not a {config.kind!r} one")
        inputs.append(TensorSpec(FEATURES, "float32", (B, *map(int, features_shape)),
                                 "the frozen backbone's map of the shared square crop"))
    elif config.has_image:
        # lbi_gated reads the shared square person crop (lbi_ros.pose2d.roi.person_roi_from_box)
        square = config.kind == "lbi_gated"
        h, w = (config.image_size, config.image_size) if square else (config.crop_height, config.crop_width)
        inputs.append(TensorSpec(IMAGE_CROP, "float32", (B, 3, h, w), "RGB crop, ImageNet mean/std normalised"))
    inputs += [
        TensorSpec(KEYPOINTS_CROP, "float32", (B, J, 3),
                   "x, y in the crop frame [-1, 1] and confidence in [0, 1]; 0 = missing"),
        TensorSpec(KEYPOINTS_CAM, "float32", (B, J, 2), "camera-normalised ((u-cx)/fx, (v-cy)/fy)"),
        TensorSpec(CROP_CAM, "float32", (B, 4), "crop box [(cx_box-cx)/fx, (cy_box-cy)/fy, w/fx, h/fy]"),
    ]
    outputs = [
        TensorSpec(JOINTS_3D, "float32", (B, J, 3), "metres, camera axes, pelvis-relative"),
        TensorSpec(JOINTS_LOGVAR, "float32", (B, J), "per-joint log-variance, m^2"),
    ]
    if include_coarse:
        if not config.has_coarse_output:
            raise IOSpecError(f"a {config.kind!r} lifter has no coarse output to include")
        outputs.append(TensorSpec(JOINTS_3D_COARSE, "float32", (B, J, 3), "stage-1 pose, metres, pelvis-relative"))
    return IOSpec(tuple(inputs), tuple(outputs))


def io_spec_from_metadata(metadata: Mapping[str, str]) -> IOSpec:
    """Read the contract an exported model carries (ONNX ``metadata_props`` / ORT ``custom_metadata_map``)."""
    if METADATA_KEY_SPEC not in metadata:
        raise IOSpecError(f"model metadata has no {METADATA_KEY_SPEC!r}; was it exported by lbi_ros?")
    try:
        return IOSpec.from_dict(json.loads(metadata[METADATA_KEY_SPEC]))
    except json.JSONDecodeError as exc:
        raise IOSpecError(f"{METADATA_KEY_SPEC} is not valid JSON: {exc}") from exc


def example_inputs(
    spec: IOSpec, batch_size: int, seed: int = 0, missing_fraction: float = 0.1
) -> dict[str, np.ndarray]:
    """Plausible random inputs obeying the contract (tests, export tracing, benchmarks).

    Boxes lie in the image (camera-normalised centre within +-0.5, width 0.05..0.4, aspect 4:3);
    keypoints are consistent between the crop and camera frames; ``missing_fraction`` of the joints have
    confidence 0 and zero coordinates.
    """
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    J = spec.input(KEYPOINTS_CROP).shape[1]
    if spec.has_input(IMAGE_CROP):
        shape = spec.input(IMAGE_CROP).concrete_shape(batch_size)
        feeds[IMAGE_CROP] = rng.standard_normal(shape, dtype=np.float32)
    if spec.has_input(FEATURES):  # BlazePose taps are not normalised (|x| up to ~15)
        feeds[FEATURES] = 5.0 * rng.standard_normal(spec.input(FEATURES).concrete_shape(batch_size), dtype=np.float32)
    centre = rng.uniform(-0.5, 0.5, (batch_size, 2))
    width = rng.uniform(0.05, 0.4, (batch_size, 1))
    size = np.concatenate([width, width * 4.0 / 3.0], axis=1)  # (B, 2)
    xy = rng.uniform(-0.9, 0.9, (batch_size, J, 2))
    confidence = rng.uniform(0.2, 1.0, (batch_size, J, 1))
    missing = rng.random((batch_size, J, 1)) < missing_fraction
    confidence[missing] = 0.0
    xy = np.where(missing, 0.0, xy)
    cam = centre[:, None, :] + xy * size[:, None, :] / 2.0
    cam = np.where(missing, 0.0, cam)
    feeds[KEYPOINTS_CROP] = np.concatenate([xy, confidence], axis=-1).astype(np.float32)
    feeds[KEYPOINTS_CAM] = cam.astype(np.float32)
    feeds[CROP_CAM] = np.concatenate([centre, size], axis=1).astype(np.float32)
    return {name: feeds[name] for name in spec.input_names}


def square_input_size(io_spec: IOSpec, crop: CropConfig) -> int | None:
    """N when the model reads an N x N image that is not the box crop: the shared square person crop
    (``lbi_gated``, :func:`lbi_ros.preprocess.square_box`); None for the box crop or no image."""
    if not io_spec.has_input(IMAGE_CROP):
        return None
    h, w = io_spec.input(IMAGE_CROP).shape[2:]
    return int(h) if h == w and (h, w) != (crop.height, crop.width) else None
