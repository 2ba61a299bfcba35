"""``lbi build-engine MODEL [--max-batch 16] [--fp16] [--cache-dir DIR]``: build the TensorRT engine.

MODEL is an ONNX file exported by ``lbi export``, a ``.safetensors`` checkpoint, or ``default`` /
``baseline-2d`` (the shipped weights; :func:`lbi_ros.weights.resolve_checkpoint`, as in ``lbi eval``). A
checkpoint is first exported into the cache exactly as the node does it (:func:`exported_onnx`), so the
engine built here is the one the node finds. Builds (or finds valid in the cache) the engine with one
optimisation profile of 1..max-batch persons, so the node's first start does not pay the build.
Needs a CUDA device and NVIDIA's TensorRT; without them it exits with code 1 and says which is missing.
**Not yet run on hardware** (no GPU or Jetson in this project's runs so far): the CPU-side checks are the
TensorRT-RTX op check of ``lbi export`` and the engine-cache tests (docs/deployment.md, "Hardware status").
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("build-engine", help="build and cache the TensorRT engine of a model (GPU)")
    parser.add_argument("model", help="ONNX file from `lbi export`, a .safetensors checkpoint, or 'default' / "
                        "'baseline-2d' (shipped weights)")
    parser.add_argument("--max-batch", type=int, default=16, help="most persons per call (profile max)")
    parser.add_argument("--opt-batch", type=int, default=None, help="persons to tune for (default min(4, max))")
    parser.add_argument("--fp16", action="store_true",
                        help="build from the fp16 graph (converted into the cache if the file is fp32)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="engine cache (default ~/.cache/lbi_ros/engines)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lbi_ros.runtime.engine_cache import BatchProfile
    from lbi_ros.runtime.factory import DEFAULT_CACHE_DIR, ONNX_SUFFIXES, exported_onnx, onnx_with_precision
    from lbi_ros.runtime.tensorrt_backend import ensure_engine, tensorrt_unavailable_reason
    from lbi_ros.weights import resolve_checkpoint

    model = resolve_checkpoint(args.model)
    profile = BatchProfile.up_to(args.max_batch, args.opt_batch)
    reason = tensorrt_unavailable_reason()
    if reason:
        raise RuntimeError(f"cannot build a TensorRT engine on this machine: {reason}. Build on the target "
                           "(Jetson/GPU) instead; docs/deployment.md has the recipe")
    cache_dir = (args.cache_dir or DEFAULT_CACHE_DIR).expanduser()
    precision = "fp16" if args.fp16 else "fp32"
    if model.suffix in ONNX_SUFFIXES:
        onnx_path = onnx_with_precision(model, precision, cache_dir) if args.fp16 else model
    else:  # a checkpoint: the node's own export (same cache key), so the node reuses this engine
        onnx_path = exported_onnx(model, cache_dir, precision)
    cached = ensure_engine(onnx_path, cache_dir, profile)
    print(f"{'built' if cached.built else 'reused valid'} engine {cached.path} "
          f"(persons {profile.min_batch}..{profile.max_batch}, opt {profile.opt_batch})")
    return 0
