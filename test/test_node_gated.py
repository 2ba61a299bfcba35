"""The node over real DDS with an ``lbi_gated`` checkpoint (``model_path:=<gated ckpt>``): it cuts the shared
square crop and publishes skeletons; with closed gates they are the 2D-only lifter's (baseline-2d's)."""

from __future__ import annotations

import pytest

from .conftest import require, require_pose_models, requires_ros
from .test_gated_runtime import gated_from_baseline
from .test_node_io import assert_matches_pipeline, lifter_and_client, publish_until_lifted

pytestmark = [pytest.mark.ros, requires_ros]


def test_node_publishes_skeletons_from_a_gated_checkpoint(tmp_path, ros_domain, ros_log_dir):
    from lbi_ros.demo.scene import DemoScene

    ckpt = gated_from_baseline(tmp_path / "gated.safetensors")
    with lifter_and_client(ckpt, ros_domain, ros_log_dir, "lbi_node_gated_client", ("skeletons",)) as started:
        node, pubs, got = started
        frame = DemoScene(2, seed=3).frame(30)
        _, msg = publish_until_lifted(node, pubs, got, frame, timeout_s=15)
    assert_matches_pipeline(msg, frame, "baseline-2d")  # closed gates: exactly the 2D-only lifter


def test_node_runs_the_int8_backbone_when_asked(ros_domain, ros_log_dir):
    """``precision:=int8`` reaches the factory: the node lifts with the shipped default's int8-backbone graph in
    ONNX Runtime, exactly as the pipeline does with that graph (and not as the fp32 one does)."""
    from lbi_ros.demo.scene import DemoScene
    from lbi_ros.weights import default_weights_path

    require(default_weights_path("default").is_file(), "shipped default weights are not in this checkout")
    require_pose_models()
    with lifter_and_client("default", ros_domain, ros_log_dir, "lbi_node_int8_client", ("skeletons",),
                           backend="onnxruntime", params=("precision:=int8",)) as started:
        node, pubs, got = started
        frame = DemoScene(2, seed=3).frame(30)
        _, msg = publish_until_lifted(node, pubs, got, frame, timeout_s=60)
    assert_matches_pipeline(msg, frame, "default", backend="onnxruntime", precision="int8")
    with pytest.raises(AssertionError):  # int8 features move the joints by millimetres: a different graph ran
        assert_matches_pipeline(msg, frame, "default", atol_m=2e-4, backend="onnxruntime")
