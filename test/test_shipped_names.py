"""One name for the shipped weights everywhere: ``default`` and ``baseline-2d`` resolve through
:func:`lbi_ros.weights.resolve_checkpoint` in ``lbi eval``, ``lbi export``, ``lbi bench model``,
``lbi build-engine``, the backend factory and the node's ``model_path`` check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lbi_ros.cli.main import main as cli_main
from lbi_ros.weights import SHIPPED, default_weights_path, resolve_checkpoint

from .conftest import require, require_module

NAMES = sorted(SHIPPED)
KINDS = {"default": "lbi_gated", "baseline-2d": "lift2d", "lift2d-base": "lift2d", "lbi-scratch": "lbi"}


@pytest.fixture(autouse=True)
def _shipped_weights_present() -> None:
    for name in NAMES:
        path = default_weights_path(name)
        require(path.is_file(), f"the shipped weights {path} are not in this checkout")


def test_resolver_maps_names_paths_and_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NAMES:
        assert resolve_checkpoint(name) == default_weights_path(name)
    assert resolve_checkpoint(None) == resolve_checkpoint("") == default_weights_path("default")
    own = tmp_path / "mine.safetensors"
    own.write_bytes(b"x")
    assert resolve_checkpoint(own) == own and resolve_checkpoint(str(own)) == own
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_checkpoint("~/mine.safetensors") == own
    listed = r"\['baseline-2d', 'default', 'lbi-scratch', 'lift2d-base'\]"
    with pytest.raises(FileNotFoundError, match=r"does not exist; shipped names are " + listed):
        resolve_checkpoint("baseline2d")  # a typo of a name is a missing file that lists the names
    with pytest.raises(FileNotFoundError, match="not a regular file"):
        resolve_checkpoint(tmp_path)


@pytest.mark.parametrize("name", NAMES)
def test_export_takes_a_shipped_name(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`lbi export default --onnx m.onnx` (relative path, as typed) writes a parity-checked ONNX file."""
    require_module("onnxruntime")
    monkeypatch.chdir(tmp_path)
    assert cli_main(["export", name, "--onnx", "m.onnx", "--no-trt-check"]) == 0
    assert (tmp_path / "m.onnx").stat().st_size > 100_000
    assert f"exported {default_weights_path(name)} -> m.onnx" in capsys.readouterr().out


@pytest.mark.parametrize("name", NAMES)
def test_bench_model_takes_a_shipped_name(name: str, tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    assert cli_main(["bench", "model", "--checkpoint", name, "--backends", "torch", "--batch", "1",
                     "--iters", "2", "--warmup", "0", "--threads", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["model"] for r in rows] == [name]
    from lbi_ros.checkpoint import load_model
    from lbi_ros.model import count_parameters

    assert rows[0]["params"] == count_parameters(load_model(default_weights_path(name))[0])  # trained, not seed 0


def test_bench_model_times_the_gated_head_alone(tmp_path: Path) -> None:
    """``lbi bench model`` adds an ``onnxruntime-head`` row (features given) for the gated default only."""
    require_module("onnxruntime")
    out = tmp_path / "rows.json"
    assert cli_main(["bench", "model", "--checkpoint", "default", "--checkpoint", "baseline-2d", "--backends",
                     "onnxruntime", "--batch", "1", "2", "--iters", "2", "--warmup", "0", "--threads", "1",
                     "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    head = [(r["model"], r["batch"]) for r in rows if r["backend"] == "onnxruntime-head"]
    assert head == [("default", 1), ("default", 2)]
    assert all(r["p50_ms"] > 0 for r in rows)


@pytest.mark.parametrize("name", NAMES)
def test_build_engine_resolves_a_shipped_name(name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Without TensorRT it stops at the TensorRT reason, after the name resolved (a typo stops before)."""
    from lbi_ros.runtime.tensorrt_backend import tensorrt_unavailable_reason

    if tensorrt_unavailable_reason() is None:  # a GPU with TensorRT: build for real
        assert cli_main(["build-engine", name, "--cache-dir", str(tmp_path)]) == 0
        return
    assert cli_main(["build-engine", name, "--cache-dir", str(tmp_path)]) == 1
    assert "cannot build a TensorRT engine" in caplog.text and "does not exist" not in caplog.text
    caplog.clear()
    assert cli_main(["build-engine", name + "-typo", "--cache-dir", str(tmp_path)]) == 1
    assert "does not exist" in caplog.text


@pytest.mark.parametrize("name", NAMES)
def test_backend_factory_takes_a_shipped_name(name: str) -> None:
    from lbi_ros.checkpoint import load_model
    from lbi_ros.runtime.factory import create_backend
    from lbi_ros.runtime.io_spec import build_io_spec

    backend = create_backend(name, "torch", threads=1)
    assert backend.io_spec == build_io_spec(load_model(default_weights_path(name))[1].model_config)
    assert load_model(default_weights_path(name))[1].model_config.kind == KINDS[name]


@pytest.mark.parametrize("name", NAMES)
def test_node_model_path_accepts_a_shipped_name(name: str, tmp_path: Path) -> None:
    """The node checks ``model_path`` before loading (parameters.check_paths), then hands it to the factory."""
    from dataclasses import replace

    from lbi_ros.ros.parameters import PARAMETERS, LifterParams, check_paths

    defaults = LifterParams(**{spec.name: spec.default for spec in PARAMETERS})
    assert check_paths(replace(defaults, model_path=name)) == []
    problems = check_paths(replace(defaults, model_path=str(tmp_path / name)))
    assert len(problems) == 1 and "does not exist" in problems[0]
