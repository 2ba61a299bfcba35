"""``lbi export CKPT --onnx model.onnx [--fp16 | --int8] [--opset 18]``: ONNX for deployment, with its checks.

CKPT is a ``.safetensors`` checkpoint or ``default`` / ``baseline-2d`` (the shipped weights; resolved by
:func:`lbi_ros.weights.resolve_checkpoint`, as in ``lbi eval``). Exports the checkpoint's lifter (rebuilt from the config it carries), reports the max abs error of
ONNX Runtime CPU against PyTorch per output, and checks that TensorRT supports every op by parsing and
building the graph with TensorRT-RTX (skipped, with the reason, where it is not installed). Exit code 1
when parity exceeds its bound or the TensorRT check fails. ``--int8`` (ONNX Runtime CPU): the image backbone
quantized, calibrated on the demo scene's person crops; its check is the *mean* abs error on other crops of
that scene (:mod:`lbi_ros.runtime.precision`), and TensorRT is not checked (the engine builder takes fp32/fp16).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a checkpoint to ONNX and check it (parity, TensorRT ops)")
    parser.add_argument("checkpoint", help="checkpoint file, or 'default' / 'baseline-2d' (shipped weights)")
    parser.add_argument("--onnx", type=Path, required=True, metavar="PATH", help="ONNX file to write")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true",
                           help="fp16 graph (LayerNorm, Softmax and the heads stay fp32; I/O float32) for TensorRT")
    precision.add_argument("--int8", action="store_true",
                           help="int8 image backbone for ONNX Runtime on the CPU (a model that reads the image)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (JetPack 6's TensorRT reads <= 20)")
    parser.add_argument("--include-coarse", action="store_true", help="also output joints_3d_coarse (stage 1)")
    parser.add_argument("--max-batch", type=int, default=16, help="persons in the TensorRT check's profile")
    parser.add_argument("--no-trt-check", action="store_true", help="skip the TensorRT-RTX parse/build check")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lbi_ros.runtime.engine_cache import BatchProfile
    from lbi_ros.runtime.factory import export_checkpoint
    from lbi_ros.runtime.trt_check import check_tensorrt_support
    from lbi_ros.weights import resolve_checkpoint

    checkpoint = resolve_checkpoint(args.checkpoint)
    precision = "fp16" if args.fp16 else "int8" if args.int8 else "fp32"
    report = export_checkpoint(checkpoint, args.onnx, precision, args.opset, args.include_coarse)
    size_mb = args.onnx.stat().st_size / 1e6
    print(f"exported {checkpoint} -> {args.onnx} ({precision}, opset {args.opset}, {report.num_nodes} nodes, "
          f"{size_mb:.1f} MB)")
    print(f"inputs  {', '.join(f'{t.name} {tuple(t.shape)}' for t in report.io_spec.inputs)}")
    print(f"outputs {', '.join(f'{t.name} {tuple(t.shape)}' for t in report.io_spec.outputs)}")
    print("int8 vs PyTorch fp32 (ONNX Runtime CPU, held-out demo-scene crops), mean abs error:" if args.int8 else
          "parity vs PyTorch fp32 (ONNX Runtime CPU, batch 1 and 5), max abs error:")
    for name, err in report.max_abs_error.items():
        bound = report.tolerance[name]
        print(f"  {name:<18} {err:.2e}  (bound {bound:.2g})  {'OK' if err <= bound else 'FAIL'}")
    ok = report.parity_ok
    if args.no_trt_check or args.int8:
        print(f"TensorRT op check: not run ({'--int8 is an ONNX Runtime CPU graph' if args.int8 else '--no-trt-check'})")
    else:
        result = check_tensorrt_support(args.onnx, BatchProfile.up_to(args.max_batch))
        print(f"TensorRT op check: {result.status.upper()}: {result.reason}"
              + (f" [{result.checker}, {result.seconds:.1f} s]" if result.checker else ""))
        for error in result.errors:
            print(f"  {error}")
        ok = ok and result.status != "failed"
    return 0 if ok else 1
