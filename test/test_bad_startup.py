"""Start-up failures (bad model files, parameters, engine caches): the node refuses to start with one
clear line, and the TensorRT engine cache never deserialises a corrupt or foreign engine."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from lbi_ros.ros.environment import popen_ros

from .conftest import requires_ros
from .node_harness import (
    NODE,
)

pytestmark = [pytest.mark.ros, requires_ros, pytest.mark.bad_input]


def _truncated(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    return dst


@pytest.fixture(scope="module")
def start_up_failures(oracle_onnx, ros_domain, ros_log_dir, tmp_path_factory):
    """Start every bad configuration at once (in parallel, to stay fast); case -> (exit code, output)."""
    import torch
    from safetensors.torch import save_file

    from lbi_ros.checkpoint import FORMAT_VERSION, KEY_FORMAT, KEY_MODEL_CONFIG, save_checkpoint
    from lbi_ros.config import to_dict
    from lbi_ros.model import build_model
    from lbi_ros.model.config import ModelConfig

    tmp = tmp_path_factory.mktemp("startup")
    config = ModelConfig(kind="lift2d", dim=32, num_heads=2, depth_lift2d=1)
    good = save_checkpoint(tmp / "good.safetensors", build_model(config), config)
    foreign = tmp / "foreign.safetensors"  # some other network's weights, no lbi_ros config
    save_file({"conv1.weight": torch.zeros(8, 3, 3, 3)}, str(foreign))
    mismatch = tmp / "mismatch.safetensors"  # lbi_ros metadata whose config does not build these weights
    tensors = build_model(config).state_dict()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(mismatch), metadata={
        KEY_FORMAT: FORMAT_VERSION, KEY_MODEL_CONFIG: json.dumps(to_dict(ModelConfig(kind="lift2d", dim=64)))})
    plain_onnx = tmp / "plain.onnx"  # a valid ONNX graph that lbi_ros did not export
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x],
                                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])),
              str(plain_onnx))
    blocker = tmp / "a_file"
    blocker.write_text("not a directory")
    cases = {
        "sync_slop": (["sync_slop:=0.5"], "sync_slop"),
        "max_people": (["max_people:=0"], "max_people"),
        "wrong_type": (["max_people:=many"], "max_people"),
        "fallback": (["fallback_backends:=[cuda]"], "unknown backend"),
        "model_missing": ([f"model_path:={tmp / 'nope.safetensors'}"], "does not exist"),
        "model_directory": ([f"model_path:={tmp}"], "not a regular file"),
        "model_truncated": ([f"model_path:={_truncated(good, tmp / 'half.safetensors')}", "backend:=torch"],
                            "not a readable safetensors checkpoint"),
        "model_wrong_architecture": ([f"model_path:={foreign}", "backend:=torch"], "not an lbi_ros checkpoint"),
        "model_config_mismatch": ([f"model_path:={mismatch}", "backend:=torch"], "do not fit the config"),
        "onnx_truncated": ([f"model_path:={_truncated(oracle_onnx, tmp / 'half.onnx')}"], "cannot start"),
        "onnx_not_lbi": ([f"model_path:={plain_onnx}"], "exported by lbi_ros"),
        "engine_cache_dir": ([f"engine_cache_dir:={blocker}/engines"], "engine_cache_dir"),
        "tensorrt_unavailable": (["backend:=tensorrt"], "tensorrt"),
    }
    procs = {}
    for name, (params, _) in cases.items():
        args = NODE + ["-p", f"model_path:={oracle_onnx}", "-p", "backend:=onnxruntime"]
        for p in params:
            args += ["-p", p]
        procs[name] = popen_ros(args, ros_domain, ros_log_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    results = {}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=180)
        results[name] = (proc.returncode, out, cases[name][1])
    return results


@pytest.mark.parametrize("case", ["sync_slop", "max_people", "wrong_type", "fallback", "model_missing",
                                  "model_directory", "model_truncated", "model_wrong_architecture",
                                  "model_config_mismatch", "onnx_truncated", "onnx_not_lbi", "engine_cache_dir",
                                  "tensorrt_unavailable"])
def test_bad_start_up_configuration_fails_clearly(start_up_failures, case):
    """Exit code 2 and one clear line naming the problem: no traceback, no half-started node."""
    code, out, expected = start_up_failures[case]
    assert code == 2, out[-2000:]
    assert expected in out and "cannot start" in out, out[-2000:]
    assert "Traceback" not in out, out[-2000:]


# -- engine cache ---------------------------------------------------------------------------------------------
def test_corrupt_or_foreign_engine_is_rebuilt_never_deserialised(tmp_path):
    """A corrupt engine file, or one built for another TensorRT/GPU, is never handed to the deserialiser.

    (A node-level test needs TensorRT and a GPU; this machine kind has neither, so the cache is driven
    with a stand-in builder whose bytes carry a TensorRT plan header.)
    """
    import dataclasses

    from lbi_ros.runtime.engine_cache import BatchProfile, EngineCache, EngineKey

    key = EngineKey("ab" * 32, "10.3.0", "NVIDIA Jetson AGX Orin", "8.7", "fp32", BatchProfile(1, 2, 4))
    engine = b"ftrt" + bytes(range(256)) * 4
    loaded: list[bytes] = []

    def load(data: bytes) -> bytes:
        loaded.append(data)
        return data

    cache = EngineCache(tmp_path / "engines")
    path = cache.get_or_build(key, lambda: engine, load).path
    assert (path.parent.stat().st_mode & 0o777) == 0o700  # user-only
    corrupt = bytearray(engine)
    corrupt[100] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    again = cache.get_or_build(key, lambda: engine, load)
    assert again.built and bytes(corrupt) not in loaded and path.read_bytes() == engine
    other = dataclasses.replace(key, trt_version="10.7.0")  # an upgrade: another file, built anew
    sidecar = json.loads(cache.paths(key).sidecar.read_text())
    sidecar["key"] = other.to_dict()
    cache.paths(key).sidecar.write_text(json.dumps(sidecar))  # a sidecar claiming another TensorRT
    assert cache.get_or_build(key, lambda: engine, load).built
    assert all(data == engine for data in loaded)


def test_engine_cache_directory_is_made_private(tmp_path):

    from lbi_ros.runtime.safe_files import make_private_dir

    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    os.chmod(loose, 0o777)
    make_private_dir(loose)
    assert (loose.stat().st_mode & 0o777) == 0o700
    assert (make_private_dir(tmp_path / "new" / "engines").stat().st_mode & 0o777) == 0o700
