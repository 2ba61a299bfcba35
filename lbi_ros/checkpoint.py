"""Checkpoints: safetensors weights plus the config that built them, and nothing executable.

A checkpoint file (``*.safetensors``) holds the model's state dict and, in the safetensors header's
string metadata, the :class:`~lbi_ros.model.config.ModelConfig` (JSON) and free-form JSON extras
(training config, step, metrics). Evaluation, export and the node rebuild the network from the file
alone with :func:`load_model`.

Why safetensors: a checkpoint may come from anywhere (a colleague, a download); pickle would execute
whatever it contains. Optimiser state for exact resume lives in a separate file written by the
trainer and read with ``torch.load(weights_only=True)``.

Third-party weights are never written: a model may name ``external_state_prefixes`` (the gated LBI's frozen
BlazePose ``backbone.``), tensors that its constructor rebuilds from a pinned, sha256-checked file fetched by
``scripts/setup.sh``. :func:`save_checkpoint` leaves them out and :func:`load_model` takes them from the
model as built (a file that does carry them, from before this rule, is read and those tensors are ignored).
That keeps Google's Apache-2.0 BlazePose weights out of our non-commercial weights files and the repository.

Every failure mode a user can hit is a :class:`CheckpointError` that says what was expected and what
came: missing file, truncated or not-safetensors file, no/invalid config, a config that does not
build the weights it ships with (wrong architecture, missing or unexpected tensors, shape mismatches).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lbi_ros.config import ConfigError, from_dict, to_dict
from lbi_ros.model import build_model
from lbi_ros.model.config import ModelConfig

log = logging.getLogger(__name__)

FORMAT_VERSION = "1"
KEY_FORMAT = "lbi_ros.format"
KEY_MODEL_CONFIG = "lbi_ros.model_config"
KEY_EXTRA = "lbi_ros.extra"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with the reason."""


@dataclass(frozen=True)
class Checkpoint:
    model_config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    extra: dict[str, Any]


def save_checkpoint(path: str | Path, model: torch.nn.Module, model_config: ModelConfig,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights and config atomically (temp file + rename: a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    external = external_state_prefixes(model)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()
               if not k.startswith(external)}
    metadata = {
        KEY_FORMAT: FORMAT_VERSION,
        KEY_MODEL_CONFIG: json.dumps(to_dict(model_config)),
        KEY_EXTRA: json.dumps(extra or {}),
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def external_state_prefixes(model: torch.nn.Module) -> tuple[str, ...]:
    """State-dict key prefixes the model rebuilds from pinned third-party files (never saved)."""
    return tuple(getattr(model, "external_state_prefixes", ()))


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read and validate a checkpoint file (weights stay on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        state_dict = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint (truncated or another format?): "
                              f"{exc}") from exc
    if metadata.get(KEY_FORMAT) != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not an lbi_ros checkpoint of format {FORMAT_VERSION} "
                              f"(metadata {KEY_FORMAT}={metadata.get(KEY_FORMAT)!r})")
    try:
        model_config = from_dict(ModelConfig, json.loads(metadata[KEY_MODEL_CONFIG]))
        extra = json.loads(metadata.get(KEY_EXTRA, "{}"))
    except (KeyError, json.JSONDecodeError, ConfigError) as exc:
        raise CheckpointError(f"{path}: invalid model config in the checkpoint: {exc}") from exc
    return Checkpoint(model_config, state_dict, extra)


def load_weights_into(model: torch.nn.Module, path: str | Path, model_config: ModelConfig) -> None:
    """Load a checkpoint's weights into an existing ``model`` built from ``model_config`` (fine-tuning);
    the checkpoint's own model config must be the same."""
    checkpoint = read_checkpoint(path)
    if checkpoint.model_config != model_config:
        raise CheckpointError(f"{path} holds another model config than the model it should initialise")
    model.load_state_dict(checkpoint.state_dict, strict=True)
    log.info("initialised from the weights of %s", path)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Checkpoint]:
    """Rebuild the network from the checkpoint's own config and load its weights strictly; eval mode."""
    checkpoint = read_checkpoint(path)
    model = build_model(checkpoint.model_config)
    external = external_state_prefixes(model)
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith(external)}
    state_dict = {k: v for k, v in checkpoint.state_dict.items() if not k.startswith(external)}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state_dict.items() if k in expected and v.shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"{path}: the weights do not fit the config they ship with ({checkpoint.model_config.kind}); "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, "
            f"shape mismatches {mismatched[:5]}"
        )
    model.load_state_dict(state_dict, strict=not external)  # checked above: only the external tensors are absent
    model.to(device).eval()
    return model, checkpoint
