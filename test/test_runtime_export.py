"""``lbi export``: ONNX from a checkpoint with parity <= 1e-4 (fp32) and within the documented fp16 bound,
the I/O contract and precision in the file, the TensorRT op check in the report; bad checkpoints rejected."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from .conftest import require, require_module

onnx = require_module("onnx")
require_module("onnxruntime")

from lbi_ros.checkpoint import CheckpointError, load_model, save_checkpoint  # noqa: E402
from lbi_ros.model import ModelConfig, build_model  # noqa: E402
from lbi_ros.runtime.factory import export_checkpoint  # noqa: E402
from lbi_ros.runtime.io_spec import build_io_spec  # noqa: E402
from lbi_ros.runtime.ort_backend import OnnxRuntimeBackend  # noqa: E402
from lbi_ros.runtime.precision import FP16_TOLERANCE, fp16_available, model_precision  # noqa: E402
from lbi_ros.runtime.trt_check import import_tensorrt_rtx  # noqa: E402


@pytest.fixture
def _require_fp16() -> None:
    require(fp16_available() is None, f"fp16 conversion unavailable: {fp16_available()}")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "lbi.safetensors", build_model(ModelConfig()),
                           ModelConfig())


def test_lbi_export_cli_reports_parity_and_tensorrt_check(checkpoint: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from lbi_ros.cli.main import main

    out = tmp_path / "model.onnx"
    assert main(["export", str(checkpoint), "--onnx", str(out), "--opset", "18"]) == 0
    text = capsys.readouterr().out
    parity = [line.split() for line in text.splitlines() if line.strip().startswith(("joints_3d ", "joints_logvar "))]
    assert len(parity) == 2 and all(float(err) <= 1e-4 and ok == "OK" for _, err, *_, ok in parity), text
    rtx, reason = import_tensorrt_rtx()
    assert ("TensorRT op check: PASSED" if rtx else "TensorRT op check: SKIPPED") in text, text
    proto = onnx.load(str(out))
    assert proto.opset_import[0].version == 18 and model_precision(proto) == "fp32"

    model, _ = load_model(checkpoint)
    assert OnnxRuntimeBackend(out).io_spec == build_io_spec(model.config)


@pytest.mark.usefixtures("_require_fp16")
def test_fp16_export_stays_within_the_documented_bound(checkpoint: Path, tmp_path: Path) -> None:
    report = export_checkpoint(checkpoint, tmp_path / "model16.onnx", precision="fp16")
    assert report.parity_ok, report.max_abs_error
    for name, err in report.max_abs_error.items():
        assert err <= FP16_TOLERANCE[name], (name, err)
    assert report.max_abs_error["joints_3d"] > 0, "an fp16 graph that matches exactly was not converted"
    proto = onnx.load(str(report.onnx_path))
    assert model_precision(proto) == "fp16"
    types = {i.type.tensor_type.elem_type for i in list(proto.graph.input) + list(proto.graph.output)}
    assert types == {onnx.TensorProto.FLOAT}, "the I/O contract stays float32 in the fp16 graph"
    kept = [n for n in proto.graph.node if n.op_type in ("LayerNormalization", "Softmax")]
    fp16_inits = sum(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
    assert kept and fp16_inits > 0

def test_checkpoint_whose_weights_do_not_fit_its_config_is_rejected(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "bad.safetensors", build_model(ModelConfig(dim=64)), ModelConfig())
    with pytest.raises(CheckpointError, match="do not fit the config"):
        export_checkpoint(path, tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


def test_truncated_checkpoint_is_rejected(checkpoint: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
        export_checkpoint(broken, tmp_path / "broken.onnx")



def test_int8_export_quantizes_only_the_image_backbone(tmp_path: Path) -> None:
    """The shipped LBI's backbone in int8: the same I/O contract, int8 only under /model/backbone/, and within
    INT8_TOLERANCE of PyTorch fp32 (mean abs) on held-out real crops of the demo scene."""
    from lbi_ros.runtime.precision import INT8_TOLERANCE, int8_available
    from lbi_ros.weights import default_weights_path

    require(int8_available() is None, f"int8 quantizer unavailable: {int8_available()}")
    require(default_weights_path("default").is_file(), "shipped default weights are not in this checkout")
    report = export_checkpoint(default_weights_path("default"), tmp_path / "int8.onnx", "int8")
    assert report.parity_ok and report.precision == "int8", report.max_abs_error
    assert report.max_abs_error["joints_3d"] > 0  # quantized for real: not the fp32 graph under another name
    assert report.tolerance == {k: INT8_TOLERANCE[k] for k in report.max_abs_error}
    proto = onnx.load(str(tmp_path / "int8.onnx"))
    assert model_precision(proto) == "int8"
    quant_nodes = [n for n in proto.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(quant_nodes) > 45  # every backbone conv's weights and activations
    weights = {t.name for t in proto.graph.initializer}
    quantized_weights = [n.input[0] for n in quant_nodes if n.input[0] in weights]
    in_backbone = ("backbone", "image_crop")  # backbone weights, constants and activations; the image it reads
    assert quantized_weights and all(any(k in w for k in in_backbone) for w in quantized_weights)
    assert all(any(k in n.name for k in in_backbone) for n in quant_nodes)  # the head's weights stay fp32
    backend = OnnxRuntimeBackend(tmp_path / "int8.onnx")
    fp32 = export_checkpoint(default_weights_path("default"), tmp_path / "fp32.onnx")
    assert backend.io_spec == OnnxRuntimeBackend(fp32.onnx_path).io_spec  # the node feeds both the same arrays


def test_int8_is_refused_where_it_cannot_apply(tmp_path: Path) -> None:
    from lbi_ros.runtime.factory import create_backend
    from lbi_ros.weights import default_weights_path

    require(default_weights_path("baseline-2d").is_file(), "shipped weights are not in this checkout")
    with pytest.raises(ValueError, match="no image backbone"):  # the 2D-only lifter reads no image
        export_checkpoint(default_weights_path("baseline-2d"), tmp_path / "b.onnx", "int8")
    with pytest.raises(ValueError, match="option of onnxruntime only"):
        create_backend("default", "torch", precision="int8", cache_dir=tmp_path)
