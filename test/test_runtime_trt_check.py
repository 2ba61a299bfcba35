"""TensorRT op-support check: the exported lifter (fp32 and fp16, TopK + GatherElements included) parses and
builds with TensorRT-RTX on this CPU; an unsupported op fails with the node named; no tensorrt_rtx = a
"skipped" result of the check (the test of that patches the import), and a skip of the tests that need it
(a failure under CI=true, where setup installs it)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from .conftest import require, require_module  # noqa: E402

onnx = require_module("onnx")
require_module("onnxruntime")

from lbi_ros.model import ModelConfig, build_model  # noqa: E402
from lbi_ros.runtime.engine_cache import BatchProfile  # noqa: E402
from lbi_ros.runtime.onnx_export import export_onnx  # noqa: E402
from lbi_ros.runtime.precision import convert_to_fp16, fp16_available  # noqa: E402
from lbi_ros.runtime.trt_check import check_tensorrt_support, import_tensorrt_rtx  # noqa: E402

RTX, RTX_REASON = import_tensorrt_rtx()
needs_rtx = pytest.mark.usefixtures("_require_rtx")


@pytest.fixture
def _require_rtx() -> None:
    require(RTX is not None, f"TensorRT-RTX op check unavailable: {RTX_REASON}")


@pytest.fixture
def _require_fp16() -> None:
    require(fp16_available() is None, f"fp16 conversion unavailable: {fp16_available()}")


@pytest.fixture(scope="module")
def lifter_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The deployment-profile LBI lifter (encoder, PGTL, AFSM TopK/GatherElements, stage 2)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("trt") / "lbi.onnx"
    export_onnx(build_model(ModelConfig()), path)
    return path


@needs_rtx
def test_exported_lifter_passes_the_tensorrt_op_check(lifter_onnx: Path) -> None:
    result = check_tensorrt_support(lifter_onnx, BatchProfile(1, 4, 16))
    assert result.status == "passed", (result.reason, result.errors)
    assert result.checker.startswith("tensorrt_rtx") and "1..16" in result.reason


@needs_rtx
@pytest.mark.usefixtures("_require_fp16")
def test_fp16_lifter_parses_strongly_typed(lifter_onnx: Path, tmp_path: Path) -> None:
    fp16 = convert_to_fp16(lifter_onnx, tmp_path / "lbi16.onnx")
    result = check_tensorrt_support(fp16, BatchProfile(1, 4, 16), build=False)
    assert result.status == "passed", (result.reason, result.errors)


@needs_rtx
def test_unsupported_op_fails_with_the_node_named(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    node = helper.make_node("Frobnicate", ["x"], ["y"], name="mystery_node", domain="com.example")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.example", 1)])
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    result = check_tensorrt_support(path, BatchProfile(1, 1, 2))
    assert result.status == "failed"
    assert any("mystery_node" in e or "Frobnicate" in e for e in result.errors), result.errors


def test_missing_tensorrt_rtx_is_a_skip_with_reason(lifter_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)  # `import tensorrt_rtx` now raises ImportError
    result = check_tensorrt_support(lifter_onnx)
    assert result.status == "skipped" and "tensorrt_rtx is not installed" in result.reason


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        check_tensorrt_support(tmp_path / "nope.onnx")
