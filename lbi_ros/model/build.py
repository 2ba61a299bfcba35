"""``build_model``: the one place a lifter is constructed from a :class:`ModelConfig`."""

from __future__ import annotations

import logging

from torch import nn

from lbi_ros.model.baseline import Lift2DLifter
from lbi_ros.model.config import ModelConfig
from lbi_ros.model.gated import GatedLBILifter
from lbi_ros.model.lifter import LBILifter

log = logging.getLogger(__name__)

Lifter = LBILifter | Lift2DLifter | GatedLBILifter


def build_model(config: ModelConfig) -> Lifter:
    """Build the network ``config.kind`` describes (fresh weights; load a state dict afterwards)."""
    if not isinstance(config, ModelConfig):
        raise TypeError(f"build_model needs a ModelConfig, got {type(config).__name__}")
    if config.kind == "lbi_gated":
        model: Lifter = GatedLBILifter(config)
    else:
        model = LBILifter(config) if config.kind == "lbi" else Lift2DLifter(config)
    log.debug("built %s lifter with %.3f M parameters", config.kind, count_parameters(model) / 1e6)
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
