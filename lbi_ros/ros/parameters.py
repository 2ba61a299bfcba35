"""The lifter node's parameters, declared in one place with descriptions and ranges.

:data:`PARAMETERS` is the single table: name, default, description and (for numbers) the allowed
range. The node declares them all from it, reads them into a frozen :class:`LifterParams`, and
rejects runtime changes that break a range or a rule with a reason (``ros2 param set`` prints it).
Path parameters are checked at start-up (:func:`check_paths`): the model file must be a readable
regular file, the engine cache directory must be creatable and writable, each with a clear error.
``config/lift.yaml`` holds the same defaults for launch files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
FALLBACK_BACKENDS = ("tensorrt", "onnxruntime", "torch")
IMAGE_TRANSPORTS = ("raw", "compressed")
KEYPOINTS_INPUTS = ("person2d_array", "hri_skeleton2d")
KEYPOINTS_SOURCES = ("topic", "builtin")
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    low: float | None = None
    high: float | None = None
    read_only: bool = False


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("model_path", "", "Checkpoint (.safetensors) or ONNX file of the lifter, or a shipped name "
              "(default, baseline-2d); empty = shipped default weights", read_only=True),
    ParamSpec("backend", "auto", f"Inference backend, one of {BACKENDS}; auto = TensorRT if a GPU and TensorRT "
              "are present, else ONNX Runtime, else PyTorch", read_only=True),
    ParamSpec("precision", "fp32", f"Inference precision, one of {PRECISIONS}: fp16 = the fp16 graph (TensorRT, ONNX "
              "Runtime); int8 = the image backbone quantized, ONNX Runtime on the CPU only (a model that reads the "
              "image; ~0.6x its CPU time, val MPJPE +0.2 mm, README); fallback backends run fp32", read_only=True),
    ParamSpec("engine_cache_dir", "", "Where TensorRT engines are cached (created user-only, 0700); empty = "
              "~/.cache/lbi_ros/engines", read_only=True),
    ParamSpec("fallback_backends", [], f"Backends to switch to, in order, when inference keeps failing; each one of "
              f"{FALLBACK_BACKENDS}; empty = none", read_only=True),
    ParamSpec("fallback_after_failures", 3, "Consecutive inference failures before switching to the next fallback "
              "backend", 1, 1000, read_only=True),
    ParamSpec("image_transport", "raw", f"Image input, one of {IMAGE_TRANSPORTS}: raw = sensor_msgs/Image on 'image'; "
              "compressed = sensor_msgs/CompressedImage (jpeg/png, as image_transport publishes it) on "
              "'<image>/compressed'", read_only=True),
    ParamSpec("keypoints_input", "person2d_array", f"2D keypoint input, one of {KEYPOINTS_INPUTS}: person2d_array = "
              "lbi_ros/Person2DArray on 'keypoints_2d'; hri_skeleton2d = ROS4HRI hri_msgs/Skeleton2D on "
              "/humans/bodies/<id>/skeleton2d for the ids on /humans/bodies/tracked (needs hri_msgs)", read_only=True),
    ParamSpec("keypoints_source", "topic", f"Where the 2D people come from, one of {KEYPOINTS_SOURCES}: topic = "
              "a 2D detector's messages (see keypoints_input); builtin = the node runs its own BlazePose detector "
              "on each image (camera alone: image + camera_info) and publishes the people it found on "
              "'keypoints_2d' (lbi_ros/Person2DArray, mediapipe33, stamped with the image)", read_only=True),
    ParamSpec("sync_slop", 0.02, "Approximate image/keypoint stamp match tolerance, s (exact match is tried "
              "first)", 0.0, 0.05),
    ParamSpec("sync_queue_size", 10, "Unmatched images/keypoint messages kept while waiting for a partner",
              1, 100, read_only=True),
    ParamSpec("max_people", 16, "At most this many people lifted per frame (highest scores first)", 1, 64),
    ParamSpec("min_visible_joints", 6, "Skip a person with fewer usable 2D joints than this", 2, 33),
    ParamSpec("min_joint_confidence", 0.05, "2D joints at or below this confidence are treated as missing",
              0.0, 0.99),
    ParamSpec("max_input_age", 1.0, "Drop frames whose image stamp is older than this when processing starts, s "
              "(0 = never)", 0.0, 60.0),
    ParamSpec("max_stamp_ahead", 0.5, "Drop frames whose image stamp is further than this in the future, s: a "
              "wrong clock (0 = never)", 0.0, 60.0),
    ParamSpec("publish_markers", True, "Publish visualization_msgs/MarkerArray on 'markers'"),
    ParamSpec("publish_tf", True, "Publish body_<id> frames on /tf"),
    ParamSpec("publish_joint_tf", True, "Also publish one TF frame per joint (<joint>_<id>)"),
    ParamSpec("tf_max_rate", 30.0, "Upper bound on TF publications per second (0 = every frame)", 0.0, 1000.0),
    ParamSpec("diagnostics_period", 1.0, "Seconds between /diagnostics messages", 0.1, 60.0, read_only=True),
    ParamSpec("warn_period", 5.0, "Minimum seconds between two warnings of the same kind", 0.0, 3600.0),
)
_SPECS = {spec.name: spec for spec in PARAMETERS}


@dataclass(frozen=True)
class LifterParams:
    model_path: str
    backend: str
    precision: str
    engine_cache_dir: str
    fallback_backends: tuple[str, ...]
    fallback_after_failures: int
    image_transport: str
    keypoints_input: str
    keypoints_source: str
    sync_slop: float
    sync_queue_size: int
    max_people: int
    min_visible_joints: int
    min_joint_confidence: float
    max_input_age: float
    max_stamp_ahead: float
    publish_markers: bool
    publish_tf: bool
    publish_joint_tf: bool
    tf_max_rate: float
    diagnostics_period: float
    warn_period: float


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(name=spec.name, description=spec.description, read_only=spec.read_only)
    if isinstance(spec.default, list):  # an empty default says nothing about the element type
        descriptor.type = ParameterType.PARAMETER_STRING_ARRAY
    if spec.low is not None and isinstance(spec.default, float):
        descriptor.floating_point_range = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high),
                                                              step=0.0)]
    elif spec.low is not None and isinstance(spec.default, int) and not isinstance(spec.default, bool):
        descriptor.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)]
    return descriptor


def check_value(name: str, value: Any) -> str | None:
    """Return why ``value`` is not acceptable for parameter ``name``, or None if it is."""
    spec = _SPECS.get(name)
    if spec is None:
        return None  # not ours (e.g. use_sim_time, qos_overrides.*)
    if isinstance(spec.default, list):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            return f"{name} must be a list of strings, got {value!r}"
        unknown = [v for v in value if v not in FALLBACK_BACKENDS]
        return f"{name}: unknown backend(s) {unknown}; choose from {list(FALLBACK_BACKENDS)}" if unknown else None
    if isinstance(spec.default, bool) != isinstance(value, bool) or (
            isinstance(spec.default, (int, float)) and not isinstance(value, (int, float))):
        return f"{name} must be a {type(spec.default).__name__}, got {value!r}"
    if isinstance(spec.default, float) and value != value:  # NaN
        return f"{name} must be a number, got NaN"
    if spec.low is not None and not spec.low <= value <= spec.high:
        return f"{name}={value!r} is outside [{spec.low}, {spec.high}]: {spec.description}"
    if name == "backend" and value not in BACKENDS:
        return f"backend={value!r} is unknown; choose one of {list(BACKENDS)}"
    if name == "precision" and value not in PRECISIONS:
        return f"precision={value!r} is unknown; choose one of {list(PRECISIONS)}"
    if name == "keypoints_source" and value not in KEYPOINTS_SOURCES:
        return f"keypoints_source={value!r} is unknown; choose one of {list(KEYPOINTS_SOURCES)}"
    if name == "image_transport" and value not in IMAGE_TRANSPORTS:
        return f"image_transport={value!r} is unknown; choose one of {list(IMAGE_TRANSPORTS)}"
    if name == "keypoints_input" and value not in KEYPOINTS_INPUTS:
        return f"keypoints_input={value!r} is unknown; choose one of {list(KEYPOINTS_INPUTS)}"
    return None


def declare_parameters(node: Node) -> LifterParams:
    """Declare every parameter, validate the start-up values (ValueError with all reasons), return them."""
    for spec in PARAMETERS:
        # a list default is declared by type: rclpy would type an empty list as a byte array
        default = Parameter.Type.STRING_ARRAY if isinstance(spec.default, list) else spec.default
        node.declare_parameter(spec.name, default, _descriptor(spec))
    params = read_parameters(node)
    errors = [reason for f in fields(LifterParams) if (reason := check_value(f.name, getattr(params, f.name)))]
    errors += check_paths(params)
    if errors:
        raise ValueError("invalid parameters: " + "; ".join(errors))
    return params


def read_parameters(node: Node) -> LifterParams:
    values = {}
    for f in fields(LifterParams):
        default = _SPECS[f.name].default
        try:
            value = node.get_parameter(f.name).value
        except ParameterUninitializedException:  # a list parameter left unset (or set to [])
            value = default
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # YAML "1" for a float parameter
        if isinstance(default, list):
            value = tuple(value or ())
        values[f.name] = value
    return LifterParams(**values)


def validate_update(parameters: list[Parameter]) -> SetParametersResult:
    """``add_on_set_parameters_callback`` hook: reject out-of-range or mistyped runtime changes."""
    reasons = [r for p in parameters if (r := check_value(p.name, p.value))]
    return SetParametersResult(successful=not reasons, reason="; ".join(reasons))


def check_paths(params: LifterParams) -> list[str]:
    """Why the path parameters cannot work, one reason each (empty = fine). Creates the cache directory.

    Checked before any model is loaded so a typo costs seconds, not a confusing error from deep inside
    a loader. (A process running as root can read anything: the readability check cannot fail then.)
    """
    errors = []
    if params.model_path:
        from lbi_ros.weights import SHIPPED, default_weights_path

        # a shipped name (default, baseline-2d) means its file, as everywhere (lbi_ros.weights.resolve_checkpoint)
        shipped = params.model_path in SHIPPED
        path = default_weights_path(params.model_path) if shipped else Path(params.model_path).expanduser()
        if not path.exists():
            errors.append(f"model_path {str(path)!r} does not exist")
        elif not path.is_file():
            errors.append(f"model_path {str(path)!r} is not a regular file (a directory?)")
        elif not os.access(path, os.R_OK):
            errors.append(f"model_path {str(path)!r} is not readable by this user")
    if params.engine_cache_dir:
        from lbi_ros.runtime.engine_cache import EngineCacheError
        from lbi_ros.runtime.safe_files import make_private_dir

        try:
            make_private_dir(params.engine_cache_dir)
        except (OSError, EngineCacheError) as exc:
            errors.append(f"engine_cache_dir {params.engine_cache_dir!r} cannot be used: {exc}")
    return errors
