"""Frozen dataclass configs: strict keys, type checks, dotted overrides, YAML round trip."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from lbi_ros.config import ConfigError, from_dict, load_yaml, save_yaml, to_dict, with_overrides


@dataclass(frozen=True)
class Inner:
    width: int = 128
    ratio: float = 0.3
    kind: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    sizes: tuple[int, int] = (128, 96)
    path: str | None = None

    def __post_init__(self):
        if not self.name:
            raise ValueError("name must not be empty")


def test_round_trip_yaml(tmp_path):
    cfg = Outer(name="y", inner=Inner(width=64, kind="b"), sizes=(64, 48), path="p")
    save_yaml(cfg, tmp_path / "c.yaml")
    assert load_yaml(Outer, tmp_path / "c.yaml") == cfg
    assert to_dict(cfg)["sizes"] == [64, 48]


def test_unknown_keys_are_errors():
    with pytest.raises(ConfigError, match=r"inner\.widht"):
        from_dict(Outer, {"inner": {"widht": 3}})


@pytest.mark.parametrize(
    "data, message",
    [({"inner": {"width": "wide"}}, "integer"), ({"inner": {"kind": "c"}}, "not one of"),
     ({"sizes": [1]}, "expected 2 items"), ({"inner": {"width": True}}, "integer"), ({"name": ""}, "empty")],
)
def test_bad_values_are_errors(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, data)


def test_dotted_overrides(tmp_path):
    (tmp_path / "c.yaml").write_text("name: base\ninner:\n  width: 32\n")
    cfg = load_yaml(Outer, tmp_path / "c.yaml", ["inner.ratio=0.5", "sizes=[10, 20]", "path=null"])
    assert cfg.inner == Inner(width=32, ratio=0.5) and cfg.sizes == (10, 20) and cfg.path is None
    assert with_overrides(cfg, ["inner.kind=b"]).inner.kind == "b"
    with pytest.raises(ConfigError, match="key.path=value"):
        with_overrides(cfg, ["inner.kind"])
    with pytest.raises(ConfigError, match="not a section"):
        with_overrides(cfg, ["name.deeper=1"])
