"""Shipped weights, by name (``MODEL_CARD.md`` beside them: data, licence, metrics, lineage):

* ``default``: ``lbi_gated.safetensors``, the gated LBI over frozen BlazePose features (issue 18). Its
  backbone is not in the file: it is rebuilt from the BlazePose model that ``scripts/setup.sh`` fetches.
* ``baseline-2d``: ``lift2d_matched.safetensors``, its matched 2D-only lifter (same pool, batches, steps).
* ``lift2d-base``: ``lift2d_base.safetensors``, the 2D-only lifter both of them were warm-started from
  (the ``baseline-2d`` of before issue 18; ``init`` of config/train/gated_*.yaml).
* ``lbi-scratch``: ``lbi_scratch.safetensors``, the LBI with a from-scratch 72 K-parameter image encoder
  (the ``default`` of before issue 18; the ablation's "scratch encoder" row).

:func:`resolve_checkpoint` is the one place a model argument becomes a file: ``lbi eval``, ``lbi export``,
``lbi bench model --checkpoint``, ``lbi build-engine``, the inference-backend factory (hence the node's
``model_path`` parameter) and training's ``init_weights`` all call it, so ``default`` and ``baseline-2d``
mean the same file everywhere.
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent
SHIPPED = {"default": "lbi_gated.safetensors", "baseline-2d": "lift2d_matched.safetensors",
           "lift2d-base": "lift2d_base.safetensors", "lbi-scratch": "lbi_scratch.safetensors"}


def default_weights_path(name: str = "default") -> Path:
    """Path of a shipped weights file by its name (a key of ``SHIPPED``)."""
    if name not in SHIPPED:
        raise ValueError(f"unknown shipped weights {name!r}; choose one of {sorted(SHIPPED)}")
    return WEIGHTS_DIR / SHIPPED[name]


def resolve_checkpoint(spec: str | Path | None = None) -> Path:
    """A model argument -> an existing file.

    ``None`` or ``""`` = the shipped ``default``; a shipped name (``default``, ``baseline-2d``) = that file in
    this package; anything else is a path (``~`` expanded): a ``.safetensors`` checkpoint or, where the caller
    takes one, an ``.onnx`` export. FileNotFoundError says what was looked for.
    """
    text = "" if spec is None else str(spec)
    if text in ("", *SHIPPED):
        name = text or "default"
        path = default_weights_path(name)
        if not path.is_file():
            raise FileNotFoundError(f"the shipped {name} weights are not installed (looked for {path}): pass a "
                                    ".safetensors checkpoint or an .onnx file exported by `lbi export`")
        return path
    path = Path(text).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist"
                                + (" (not a regular file)" if path.exists() else "")
                                + f"; shipped names are {sorted(SHIPPED)}")
    return path
