"""Frozen dataclass configs: build from dicts/YAML, strict unknown-key errors, dotted overrides.

Every config in the project is a ``@dataclass(frozen=True)``. Configs nest (a field whose type is
another dataclass). This module converts between those dataclasses and plain dicts / YAML files so a
checkpoint can carry the exact config that built its model, and so ``lbi train CONFIG key=value``
can override any field by its dotted path (``model.depth_stage1=2``).

Why strict: a typo in a YAML key silently falling back to a default is the most common way a
training run trains the wrong thing. Unknown keys raise ``ConfigError`` naming the key and the
allowed ones.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config dict, YAML file or override does not match its dataclass."""


def _field_types(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _coerce(value: Any, typ: Any, where: str) -> Any:
    """Convert ``value`` (from YAML/JSON/CLI) into ``typ``; raise ConfigError when impossible."""
    origin = get_origin(typ)
    if typ is Any:
        return value
    if dataclasses.is_dataclass(typ):
        if isinstance(value, typ):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {typ.__name__}, got {type(value).__name__}")
        return from_dict(typ, value, _where=where)
    if origin is typing.Literal:
        allowed = get_args(typ)
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of {list(allowed)}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(typ)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} matches none of {args}: {errors}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a sequence, got {type(value).__name__}")
        args = get_args(typ)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            items = [_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))]
        else:
            item_type = args[0] if args else Any
            items = [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: Mapping[str, Any], _where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys raise, missing keys take defaults."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{_where}." if _where else ""
        raise ConfigError(
            f"unknown config key(s) {[prefix + k for k in unknown]} for {cls.__name__}; "
            f"allowed: {sorted(names)}"
        )
    hints = _field_types(cls)
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _coerce(value, hints[key], f"{_where}.{key}" if _where else key)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # __post_init__ validation or missing required fields
        raise ConfigError(f"{cls.__name__}{' at ' + _where if _where else ''}: {exc}") from exc


def to_dict(config: Any) -> dict[str, Any]:
    """Dataclass -> plain dict of builtins (tuples become lists) suitable for YAML/JSON."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(config)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'a.b=3'`` -> (['a', 'b'], 3). The value is parsed as YAML so numbers/bools/lists work."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"override {text!r} has an empty key")
    return path, yaml.safe_load(raw)


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply dotted ``key=value`` overrides to a nested dict (returns a new dict)."""
    import copy

    result = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
        node[path[-1]] = value
    return result


def load_yaml(cls: type[T], path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> T:
    """Read a YAML file into dataclass ``cls`` (strict), after applying dotted overrides."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path}: top level must be a mapping, got {type(raw).__name__}")
    return from_dict(cls, apply_overrides(raw, overrides))


def save_yaml(config: Any, path: str | Path) -> None:
    """Write a dataclass config as YAML (round-trips through :func:`load_yaml`)."""
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


def with_overrides(config: T, overrides: list[str] | tuple[str, ...]) -> T:
    """Return a copy of ``config`` with dotted overrides applied (validated like a fresh load)."""
    return from_dict(type(config), apply_overrides(to_dict(config), overrides))
