"""``lbi build-engine model.onnx [--max-batch 16] [--fp16] [--cache-dir DIR]``: build the TensorRT engine.

Builds (or finds valid in the cache) the engine the node will load for this ONNX file on this GPU, with
one optimisation profile of 1..max-batch persons, so the node's first start does not pay the build.
Needs a CUDA device and NVIDIA's TensorRT; without them it exits with code 1 and says which is missing.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("build-engine", help="build and cache the TensorRT engine of an ONNX file (GPU)")
    parser.add_argument("onnx", type=Path, help="ONNX file exported by `lbi export`")
    parser.add_argument("--max-batch", type=int, default=16, help="most persons per call (profile max)")
    parser.add_argument("--opt-batch", type=int, default=None, help="persons to tune for (default min(4, max))")
    parser.add_argument("--fp16", action="store_true",
                        help="build from the fp16 graph (converted into the cache if the file is fp32)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="engine cache (default ~/.cache/lbi_ros/engines)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lbi_ros.runtime.engine_cache import BatchProfile
    from lbi_ros.runtime.factory import DEFAULT_CACHE_DIR, onnx_with_precision
    from lbi_ros.runtime.tensorrt_backend import ensure_engine, tensorrt_unavailable_reason

    if not args.onnx.is_file():
        raise FileNotFoundError(f"ONNX model {args.onnx} does not exist")
    profile = BatchProfile.up_to(args.max_batch, args.opt_batch)
    reason = tensorrt_unavailable_reason()
    if reason:
        raise RuntimeError(f"cannot build a TensorRT engine on this machine: {reason}. Build on the target "
                           "(Jetson/GPU) instead; docs/deployment.md has the recipe")
    cache_dir = (args.cache_dir or DEFAULT_CACHE_DIR).expanduser()
    onnx_path = onnx_with_precision(args.onnx, "fp16", cache_dir) if args.fp16 else args.onnx
    cached = ensure_engine(onnx_path, cache_dir, profile)
    print(f"{'built' if cached.built else 'reused valid'} engine {cached.path} "
          f"(persons {profile.min_batch}..{profile.max_batch}, opt {profile.opt_batch})")
    return 0
