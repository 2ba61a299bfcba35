"""The LBI network: config, layers, image encoder, PGTL, AFSM, two-stage lifter, gated lifter, 2D-only baseline.

Construct every lifter with :func:`build_model` from a :class:`ModelConfig` (YAML under config/model/).
Importing this package pulls in torch but never rclpy. The exports resolve lazily (PEP 562), so
``from lbi_ros.model.config import ModelConfig`` stays torch-free for the runtime's I/O contract.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lbi_ros.model.baseline import Lift2DLifter
    from lbi_ros.model.build import Lifter, build_model, count_parameters
    from lbi_ros.model.config import ModelConfig, ModelKind
    from lbi_ros.model.encoder import ENCODERS, build_encoder, register_encoder
    from lbi_ros.model.gated import GatedLBILifter
    from lbi_ros.model.layers import Attention, set_fused_attention
    from lbi_ros.model.lifter import LBILifter, LifterOutput

_EXPORTS: dict[str, str] = {
    "Lift2DLifter": "lbi_ros.model.baseline",
    "Lifter": "lbi_ros.model.build",
    "build_model": "lbi_ros.model.build",
    "count_parameters": "lbi_ros.model.build",
    "ModelConfig": "lbi_ros.model.config",
    "ModelKind": "lbi_ros.model.config",
    "ENCODERS": "lbi_ros.model.encoder",
    "build_encoder": "lbi_ros.model.encoder",
    "register_encoder": "lbi_ros.model.encoder",
    "GatedLBILifter": "lbi_ros.model.gated",
    "Attention": "lbi_ros.model.layers",
    "set_fused_attention": "lbi_ros.model.layers",
    "LBILifter": "lbi_ros.model.lifter",
    "LifterOutput": "lbi_ros.model.lifter",
}

__all__ = [
    "ENCODERS",
    "Attention",
    "GatedLBILifter",
    "LBILifter",
    "Lift2DLifter",
    "Lifter",
    "LifterOutput",
    "ModelConfig",
    "ModelKind",
    "build_encoder",
    "build_model",
    "count_parameters",
    "register_encoder",
    "set_fused_attention",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
