"""A missing prerequisite skips on a developer machine and fails under CI (``CI=true``), so CI cannot go green
by skipping; gpu-marked tests are the only ones that skip everywhere."""

from __future__ import annotations

import pytest

from .conftest import require, require_module


def test_require_skips_locally_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    require(True, "present")
    with pytest.raises(pytest.skip.Exception, match="weights missing"):
        require(False, "weights missing")
    monkeypatch.setenv("CI", "true")
    require(True, "present")
    with pytest.raises(pytest.fail.Exception, match="weights missing .CI=true"):
        require(False, "weights missing")


def test_require_module_returns_the_module_or_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    assert require_module("json").dumps([]) == "[]"
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no_such_module_xyz is not installed"):
        require_module("no_such_module_xyz")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no_such_module_xyz is not installed"):
        require_module("no_such_module_xyz")

