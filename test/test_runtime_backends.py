"""Backends behind one interface: every backend available here passes the same parity test against PyTorch
on the same inputs; ``auto`` picks ONNX Runtime on a CPU-only machine and says why; the factory fails at
start-up with a clear error for a missing file, an unknown backend, an unavailable backend or a bad checkpoint;
the ONNX exported from a checkpoint is cached by the checkpoint's hash and re-exported when damaged."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from .conftest import require, require_module

require_module("onnx")
require_module("onnxruntime")

from lbi_ros.checkpoint import CheckpointError, load_model, save_checkpoint  # noqa: E402
from lbi_ros.model import ModelConfig, build_model  # noqa: E402
from lbi_ros.runtime.backend import InferenceBackend  # noqa: E402
from lbi_ros.runtime.factory import (  # noqa: E402
    backend_availability,
    create_backend,
    parity_errors,
    unavailable_reason,
)
from lbi_ros.runtime.io_spec import IOSpecError, build_io_spec, example_inputs  # noqa: E402

CONFIGS = {"lbi": ModelConfig(), "lift2d": ModelConfig(kind="lift2d"),
           "tiny": ModelConfig(kind="lift2d", dim=32, num_heads=2, depth_lift2d=1)}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("backends")


@pytest.fixture(scope="module")
def checkpoints(workdir: Path) -> dict[str, Path]:
    out = {}
    for name, config in CONFIGS.items():
        torch.manual_seed(0)
        out[name] = save_checkpoint(workdir / f"{name}.safetensors", build_model(config), config)
    return out


@pytest.mark.parametrize("model_name", ["lbi", "lift2d"])
@pytest.mark.parametrize("backend_name", ["torch", "onnxruntime", pytest.param("tensorrt", marks=pytest.mark.gpu)])
def test_every_available_backend_matches_pytorch(backend_name: str, model_name: str, checkpoints: dict[str, Path],
                                                 workdir: Path) -> None:
    reason = unavailable_reason(backend_name)
    if reason and backend_name == "tensorrt":  # gpu-marked: skips without a GPU, everywhere
        pytest.skip(f"{backend_name} unavailable here: {reason}")
    require(reason is None, f"{backend_name} unavailable here: {reason}")
    backend = create_backend(checkpoints[model_name], backend_name, cache_dir=workdir / "cache", device="auto")
    assert isinstance(backend, InferenceBackend) and backend.name == backend_name
    model, checkpoint = load_model(checkpoints[model_name])
    assert backend.io_spec == build_io_spec(checkpoint.model_config)
    errors = parity_errors(backend, model, batch_sizes=(1, 4), seed=5)
    assert set(errors) == set(backend.io_spec.output_names)
    assert max(errors.values()) <= 1e-4, errors
    out = backend.infer(example_inputs(backend.io_spec, 2))
    assert all(v.dtype == np.float32 and v.shape[0] == 2 for v in out.values())
    with pytest.raises(IOSpecError, match="missing"):
        backend.infer({})


def test_auto_picks_the_fastest_available_backend(checkpoints: dict[str, Path], workdir: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """TensorRT where a GPU and TensorRT are present, else ONNX Runtime, saying why TensorRT was passed over."""
    availability = backend_availability()
    assert availability["onnxruntime"] is None and availability["torch"] is None
    with caplog.at_level(logging.INFO, logger="lbi_ros.runtime.factory"):
        backend = create_backend(checkpoints["lbi"], "auto", cache_dir=workdir / "cache")
    if availability["tensorrt"] is None:
        assert backend.name == "tensorrt" and "backend auto -> tensorrt" in caplog.text
        return
    assert backend.name == "onnxruntime"
    assert "backend auto -> onnxruntime" in caplog.text
    assert f"tensorrt: {availability['tensorrt']}" in caplog.text, "auto must log why TensorRT was passed over"


def test_auto_with_an_onnx_file_never_falls_back_to_torch(checkpoints: dict[str, Path], workdir: Path) -> None:
    onnx_backend = create_backend(checkpoints["tiny"], "onnxruntime", cache_dir=workdir / "cache")
    onnx_path = onnx_backend.path
    backend = create_backend(onnx_path, "auto", cache_dir=workdir / "cache")
    assert backend.name in ("tensorrt", "onnxruntime")
    assert "ONNX file" in unavailable_reason("torch", from_checkpoint=False)
    with pytest.raises(RuntimeError, match="needs a .safetensors checkpoint"):
        create_backend(onnx_path, "torch")


def test_exported_onnx_is_cached_by_checkpoint_hash_and_rebuilt_when_damaged(checkpoints: dict[str, Path],
                                                                             tmp_path: Path) -> None:
    first = create_backend(checkpoints["tiny"], "onnxruntime", cache_dir=tmp_path)
    path = first.path
    assert path.parent == tmp_path / "onnx" and path.name.startswith("tiny-")
    stamp = path.stat().st_mtime_ns
    assert create_backend(checkpoints["tiny"], "onnxruntime", cache_dir=tmp_path).path == path
    assert path.stat().st_mtime_ns == stamp, "a valid cached export is reused, not re-exported"
    path.write_bytes(path.read_bytes()[:-100])  # damaged on disk
    again = create_backend(checkpoints["tiny"], "onnxruntime", cache_dir=tmp_path)
    assert again.path == path and path.stat().st_mtime_ns != stamp
    model, _ = load_model(checkpoints["tiny"])
    assert max(parity_errors(again, model, batch_sizes=(2,)).values()) <= 1e-4


def test_factory_errors_at_start_up(checkpoints: dict[str, Path], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from lbi_ros import weights

    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_backend(tmp_path / "missing.safetensors")
    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="shipped default weights are not installed"):
        create_backend(None)
    shutil.copyfile(checkpoints["tiny"], tmp_path / weights.SHIPPED["default"])
    assert create_backend("", "torch").io_spec == build_io_spec(CONFIGS["tiny"]), "empty = the shipped weights"
    assert create_backend("default", "torch").io_spec == build_io_spec(CONFIGS["tiny"]), "a shipped name"
    with pytest.raises(ValueError, match="unknown backend 'tflite'"):
        create_backend(checkpoints["lift2d"], "tflite")
    wrong = tmp_path / "model.pt"
    wrong.write_bytes(b"\x80\x04")
    with pytest.raises(ValueError, match="must be a"):
        create_backend(wrong)
    with pytest.raises(ValueError, match="precision"):
        create_backend(checkpoints["lift2d"], "torch", precision="int4")
    with pytest.raises(ValueError, match="int8 is an option of onnxruntime only"):  # the int8 backbone: ORT CPU only
        create_backend(checkpoints["lift2d"], "torch", precision="int8")
    with pytest.raises(ValueError, match="device"):
        create_backend(checkpoints["lift2d"], "torch", device="tpu")


def test_unavailable_backend_raises_with_the_reason(checkpoints: dict[str, Path], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU machine too: the reasons are those of a machine without CUDA (the checks are patched)."""
    from lbi_ros.runtime import tensorrt_backend, torch_backend

    reason = "no CUDA device (patched)"
    monkeypatch.setattr(tensorrt_backend, "tensorrt_unavailable_reason", lambda: reason)
    monkeypatch.setattr(torch_backend, "cuda_unavailable_reason", lambda: reason)
    with pytest.raises(RuntimeError, match="'tensorrt' is unavailable: no CUDA device"):
        create_backend(checkpoints["lift2d"], "tensorrt", cache_dir=tmp_path)
    with pytest.raises(RuntimeError, match="no CUDA device"):
        create_backend(checkpoints["lift2d"], "torch", device="cuda")
    with pytest.raises(ValueError, match="need a CUDA device"):
        create_backend(checkpoints["lift2d"], "torch", device="cpu", cuda_graphs=True)


def test_checkpoint_with_mismatched_weights_is_rejected_by_every_backend(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "mismatch.safetensors", build_model(ModelConfig(kind="lift2d", dim=64)),
                           ModelConfig(kind="lift2d"))
    for backend in ("torch", "onnxruntime", "auto"):
        with pytest.raises(CheckpointError, match="do not fit the config"):
            create_backend(path, backend, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("onnx/*.onnx")), "nothing is cached from a bad checkpoint"


def test_onnx_backend_rejects_a_file_without_the_contract(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from lbi_ros.runtime.ort_backend import OnnxRuntimeBackend

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(IOSpecError, match="was it exported by lbi_ros"):
        OnnxRuntimeBackend(path)
