"""Shipped weights: ``lbi_default.safetensors`` (LBI lifter) and ``lift2d_default.safetensors`` (the matched
2D-only baseline). See ``MODEL_CARD.md`` beside them (data, licence, metrics). Stored in fp16; loading casts
them back to the model's float32 parameters."""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent
SHIPPED = {"default": "lbi_default.safetensors", "baseline-2d": "lift2d_default.safetensors"}


def default_weights_path(name: str = "default") -> Path:
    """Path of a shipped weights file: ``default`` (LBI) or ``baseline-2d`` (2D-only lifter)."""
    if name not in SHIPPED:
        raise ValueError(f"unknown shipped weights {name!r}; choose one of {sorted(SHIPPED)}")
    return WEIGHTS_DIR / SHIPPED[name]


def resolve_checkpoint(spec: str) -> Path:
    """A checkpoint argument: a shipped name (``default``, ``baseline-2d``) or a file path."""
    path = default_weights_path(spec) if spec in SHIPPED else Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return path
