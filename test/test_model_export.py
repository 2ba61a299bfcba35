"""ONNX export at dynamic batch (legacy exporter, opset 18) matches PyTorch under ONNX Runtime CPU."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from .conftest import require_module

onnx = require_module("onnx")
require_module("onnxruntime")

from lbi_ros.model import ModelConfig, build_model  # noqa: E402
from lbi_ros.runtime.io_spec import BATCH_AXIS, build_io_spec, io_spec_from_metadata  # noqa: E402
from lbi_ros.runtime.onnx_export import check_onnx_parity, create_ort_session, export_onnx  # noqa: E402


@pytest.mark.parametrize(
    ("overrides", "include_coarse"),
    [({}, True), ({}, False), ({"kind": "lift2d"}, False), ({"keep_ratio": 1.0, "rest_token": False}, False)],
    ids=["lbi+coarse", "lbi", "lift2d", "lbi-keep-all"],
)
def test_onnx_matches_torch_at_dynamic_batch(overrides: dict, include_coarse: bool, tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = ModelConfig(**overrides)
    model = build_model(config)
    path = tmp_path / "lifter.onnx"
    spec = export_onnx(model, path, opset=18, include_coarse=include_coarse)
    assert spec == build_io_spec(config, include_coarse=include_coarse)

    proto = onnx.load(str(path))
    assert proto.opset_import[0].version == 18
    assert [i.name for i in proto.graph.input] == list(spec.input_names)
    assert [o.name for o in proto.graph.output] == list(spec.output_names)
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param == BATCH_AXIS, f"{value.name}: batch axis must be dynamic"
        assert all(d.dim_value > 0 for d in dims[1:]), f"{value.name}: only the batch axis may be dynamic"
    ops = Counter(node.op_type for node in proto.graph.node)
    assert ops["Shape"] == 0, "static reshapes only: no Shape ops in the graph"
    assert not {"NonZero", "Loop", "If"} & set(ops)
    if config.kind == "lbi" and config.keep_ratio < 1.0:
        assert ops["TopK"] == 1 and ops["GatherElements"] == 1

    session = create_ort_session(path)
    assert io_spec_from_metadata(session.get_modelmeta().custom_metadata_map) == spec
    assert check_onnx_parity(model, path, batch_sizes=(1, 5), session=session) < 1e-4
    assert model.training, "export must restore the training mode"
