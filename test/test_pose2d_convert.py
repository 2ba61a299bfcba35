"""BlazePose TFLite -> PyTorch conversion (lbi_ros.pose2d): parity with Google's TFLite interpreter,
ONNX export and ONNX Runtime parity, TensorRT op support, dynamic batch, feature taps, and the
model-file checks.

The model files are fetched by scripts/setup.sh; tests that need them fail under CI=true and skip
(with the reason) elsewhere when they are missing. Nothing here downloads anything.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lbi_ros.pose2d import model_files, tflite_graph
from lbi_ros.pose2d.blazepose import (
    DETECTOR_FILE,
    LANDMARK_FILE,
    LANDMARK_HEADS,
    NUM_ANCHORS,
    TAP_SHAPES,
    BlazePoseDetectorNet,
    BlazePoseLandmarkNet,
    export_onnx,
)
from lbi_ros.pose2d.model_files import PoseModelFileError, model_path
from lbi_ros.pose2d.tflite_graph import TfliteGraph, UnsupportedOpError, parse_tflite

from .conftest import require, require_module, require_pose_models

TAPS = ("add_8", "add_9", "add_10")
FULL = ("landmarks", "pose_flag", "world", *TAPS)
FEATURE_RTOL = 1e-3
"""max |torch - reference| <= FEATURE_RTOL * max(1, max |reference|), feature maps and raw detector outputs."""
LANDMARK_RTOL = 5e-3
"""Same for landmarks (px); the heads amplify the fp32 summation-order differences of the encoder."""


def _path_or_skip(name: str) -> Path:
    require_pose_models()
    return model_path(name)


def _graph_or_skip(name: str) -> TfliteGraph:
    return parse_tflite(_path_or_skip(name))


@pytest.fixture(scope="module")
def landmark_graph() -> TfliteGraph:
    return _graph_or_skip(LANDMARK_FILE)


@pytest.fixture(scope="module")
def detector_graph() -> TfliteGraph:
    return _graph_or_skip(DETECTOR_FILE)


@pytest.fixture(scope="module")
def landmark_net(landmark_graph) -> BlazePoseLandmarkNet:
    return BlazePoseLandmarkNet(FULL, landmark_graph).eval()


@pytest.fixture(scope="module")
def detector_net(detector_graph) -> BlazePoseDetectorNet:
    return BlazePoseDetectorNet(detector_graph).eval()


def _photo(size: int, low: float) -> np.ndarray:
    """(1, size, size, 3) float32: scikit-image's astronaut (public domain, person-centred) in [low, 1]."""
    import cv2
    from skimage.data import astronaut

    image = cv2.resize(astronaut(), (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    return (image * (1.0 - low) + low)[None]


def _images(batch: int, size: int, seed: int, low: float = 0.0) -> np.ndarray:
    """(batch, size, size, 3) float32 in [low, 1]: seeded noise over a smooth gradient."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    base = 0.5 * (ramp[None, :, None, None] + ramp[None, None, :, None])
    x = np.clip(base + 0.3 * rng.standard_normal((batch, size, size, 3)).astype(np.float32), 0.0, 1.0)
    return x * (1.0 - low) + low


def _run(net: torch.nn.Module, x: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        return {k: v.numpy() for k, v in net(torch.from_numpy(x)).items()}


def _assert_close(got: np.ndarray, ref: np.ndarray, rtol: float, what: str) -> float:
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    diff = float(np.abs(got - ref).max())
    scale = float(np.abs(ref).max())
    assert diff <= rtol * max(scale, 1.0), f"{what}: max abs diff {diff:.3g} > {rtol} x magnitude {scale:.3g}"
    return diff


def _litert(path: Path, x: np.ndarray) -> tuple[object, TfliteGraph]:
    if not (sys.platform == "linux" and platform.machine() == "x86_64"):
        pytest.skip("ai-edge-litert, the independent reference runtime, has wheels for x86_64 Linux only")
    litert = require_module("ai_edge_litert.interpreter", "ai-edge-litert (requirements/dev.txt) is the independent "
                            "reference runtime; run scripts/setup.sh")
    # reference kernels, every intermediate kept: the taps are readable by name
    interpreter = litert.Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                                     experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter, parse_tflite(path)


@pytest.mark.filterwarnings("ignore:Warning. Enabling `experimental_preserve_all_tensors`")
def test_landmark_net_matches_tflite_interpreter(landmark_net):
    x = _photo(256, 0.0)
    interpreter, graph = _litert(model_path(LANDMARK_FILE), x)
    got = _run(landmark_net, x)
    ref = {name: interpreter.get_tensor(graph.tensor_index(LANDMARK_HEADS.get(name, name))) for name in FULL}
    _assert_close(got["landmarks"], ref["landmarks"].reshape(1, 39, 5), LANDMARK_RTOL, "landmarks")
    _assert_close(got["world"], ref["world"].reshape(1, 39, 3), FEATURE_RTOL, "world")
    _assert_close(got["pose_flag"], ref["pose_flag"], FEATURE_RTOL, "pose_flag")
    assert ref["pose_flag"][0, 0] > 0.5, "the astronaut crop should hold a person"
    for tap in TAPS:
        _assert_close(got[tap], ref[tap].transpose(0, 3, 1, 2), FEATURE_RTOL, tap)  # NHWC -> NCHW


@pytest.mark.filterwarnings("ignore:Warning. Enabling `experimental_preserve_all_tensors`")
def test_detector_net_matches_tflite_interpreter(detector_net):
    x = _photo(224, -1.0)  # the detector takes RGB in [-1, 1]
    interpreter, graph = _litert(model_path(DETECTOR_FILE), x)
    got = _run(detector_net, x)
    for name, tensor in (("boxes", "Identity"), ("scores", "Identity_1")):
        _assert_close(got[name], interpreter.get_tensor(graph.tensor_index(tensor)), FEATURE_RTOL, name)
    assert got["boxes"].shape == (1, NUM_ANCHORS, 12) and got["scores"].shape == (1, NUM_ANCHORS, 1)
    assert 1.0 / (1.0 + np.exp(-got["scores"].max())) > 0.5, "the astronaut photo should hold a detection"


def test_dynamic_batch_and_tap_shapes(landmark_net):
    x = _images(3, 256, seed=0)
    batched = _run(landmark_net, x)
    single = _run(landmark_net, x[1:2])
    assert batched["landmarks"].shape == (3, 39, 5) and batched["world"].shape == (3, 39, 3)
    assert batched["pose_flag"].shape == (3, 1)
    for tap in TAPS:
        assert batched[tap].shape == (3, *TAP_SHAPES[tap])
    for name in FULL:
        np.testing.assert_allclose(batched[name][1:2], single[name], rtol=0, atol=1e-4 * max(1.0, np.abs(single[name]).max()))


def test_encoder_only_stops_early_and_equals_full_taps(landmark_graph, landmark_net):
    encoder = BlazePoseLandmarkNet(TAPS, landmark_graph).eval()
    assert len(encoder.core.layers) < len(landmark_net.core.layers)
    head_ops = {op.index for op in landmark_graph.ops if op.outputs[0] in {landmark_graph.tensor_index(t)
                                                                            for t in ("Identity", "Identity_4")}}
    assert not head_ops & {int(key[2:]) for key in encoder.core.layers}, "encoder built a head op"
    x = _images(2, 256, seed=1)
    full, taps = _run(landmark_net, x), _run(encoder, x)
    assert list(taps) == list(TAPS)
    for tap in TAPS:
        np.testing.assert_array_equal(taps[tap], full[tap])


def test_gradients_reach_the_encoder(landmark_graph):
    encoder = BlazePoseLandmarkNet(("add_9",), landmark_graph)
    x = torch.from_numpy(_images(1, 256, seed=2)).requires_grad_(True)
    encoder(x)["add_9"].square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in encoder.parameters())


@pytest.mark.parametrize("which", ["landmark", "detector"])
def test_onnx_export_matches_torch_and_passes_tensorrt_check(which, landmark_net, detector_net, tmp_path):
    ort = require_module("onnxruntime")
    from lbi_ros.runtime.trt_check import check_tensorrt_support

    net, size, low = (landmark_net, 256, 0.0) if which == "landmark" else (detector_net, 224, -1.0)
    path = export_onnx(net, tmp_path / f"{which}.onnx", opset=17)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(net.output_names)
    for batch in (1, 3):
        x = _images(batch, size, seed=10 + batch, low=low)
        ref = _run(net, x)
        for name, value in zip(net.output_names, session.run(None, {"image_rgb": x}), strict=True):
            _assert_close(value, ref[name], FEATURE_RTOL, f"{which} {name} batch {batch}")
    result = check_tensorrt_support(path)
    require(result.status != "skipped", f"TensorRT-RTX op check unavailable: {result.reason}")
    assert result.passed, f"{result.reason}: {result.errors}"


def test_unknown_op_is_rejected_by_name(landmark_graph, monkeypatch):
    monkeypatch.setattr(tflite_graph, "SUPPORTED_OPS", tflite_graph.SUPPORTED_OPS - {"LOGISTIC"})
    with pytest.raises(UnsupportedOpError, match=r"op \d+ \(LOGISTIC .*not supported"):
        parse_tflite(model_path(LANDMARK_FILE))


def test_unknown_output_name_is_rejected(landmark_graph):
    with pytest.raises(ValueError, match="unknown landmark-net outputs"):
        BlazePoseLandmarkNet(("landmarks", "add_99"), landmark_graph)
    with pytest.raises(ValueError, match="expects image_rgb"):
        BlazePoseLandmarkNet(("add_9",), landmark_graph)(torch.zeros(1, 3, 256, 256))


def test_wrong_hash_in_models_dir_is_named(tmp_path, monkeypatch):
    bad = tmp_path / LANDMARK_FILE
    bad.write_bytes(b"not the model")
    monkeypatch.setenv(model_files.ENV_MODELS_DIR, str(tmp_path))
    with pytest.raises(PoseModelFileError) as info:
        model_path(LANDMARK_FILE)
    message = str(info.value)
    assert str(bad.resolve()) in message and "LBI_POSE_MODELS_DIR" in message and "mediapipe==0.10.21" in message
    with pytest.raises(PoseModelFileError, match=DETECTOR_FILE):
        model_path(DETECTOR_FILE)


def test_models_dir_with_the_right_files_is_used(tmp_path, monkeypatch):
    sources = {name: _path_or_skip(name) for name in model_files.MODEL_FILES}
    for name, source in sources.items():
        shutil.copyfile(source, tmp_path / name)
    monkeypatch.setenv(model_files.ENV_MODELS_DIR, str(tmp_path))
    assert model_files.fetch() == {name: (tmp_path / name).resolve() for name in sources}


def test_fetch_cli_without_network_fails_with_the_clear_message(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != model_files.ENV_MODELS_DIR}
    # no config files, no index, no find-links: pip cannot find the wheel anywhere and fails at once
    env.update(LBI_CACHE=str(tmp_path / "cache"), PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1",
               PIP_FIND_LINKS="", PIP_INDEX_URL="http://127.0.0.1:9/simple", PIP_RETRIES="0", PIP_TIMEOUT="2")
    done = subprocess.run([sys.executable, "-m", "lbi_ros.pose2d.model_files", "fetch"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0
    assert "mediapipe==0.10.21" in done.stderr and "LBI_POSE_MODELS_DIR" in done.stderr, done.stderr
    assert not (tmp_path / "cache" / "pose_models" / LANDMARK_FILE).exists()
