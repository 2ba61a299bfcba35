"""``lbi doctor``: a true report of what this machine can run.

Each check imports or probes the real thing (no version guessing from file names). TensorRT is only
imported when a CUDA device is present: creating a TensorRT runtime without a GPU can crash the
process.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import platform
import sys
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _version_of(module_name: str) -> Check:
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - report any import failure verbatim
        return Check(module_name, False, f"not importable: {type(exc).__name__}: {exc}")
    return Check(module_name, True, str(getattr(module, "__version__", "installed")))


def check_torch() -> list[Check]:
    torch_check = _version_of("torch")
    if not torch_check.ok:
        return [torch_check, Check("cuda", False, "torch missing")]
    import torch

    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        cuda = Check("cuda", True, f"CUDA {torch.version.cuda}: {names}")
    else:
        cuda = Check("cuda", False, f"no CUDA device (torch build: {torch.version.cuda or 'CPU only'})")
    return [torch_check, cuda]


def check_onnxruntime() -> Check:
    check = _version_of("onnxruntime")
    if not check.ok:
        return check
    import onnxruntime

    return Check("onnxruntime", True, f"{check.detail}, providers: {', '.join(onnxruntime.get_available_providers())}")


def check_tensorrt(cuda_ok: bool) -> Check:
    spec = importlib.util.find_spec("tensorrt") or importlib.util.find_spec("tensorrt_rtx")
    if spec is None:
        return Check("tensorrt", False, "not installed (install from NVIDIA: pip with NVIDIA's index, or JetPack)")
    if not cuda_ok:
        return Check("tensorrt", False, f"{spec.name} installed but no CUDA device: not loaded (it can crash without one)")
    check = _version_of(spec.name)
    return Check("tensorrt", check.ok, f"{spec.name} {check.detail}")


def run_checks() -> list[Check]:
    checks = [Check("python", True, f"{platform.python_version()} ({sys.executable})")]
    from lbi_ros import __version__

    checks.append(Check("lbi_ros", True, __version__))
    torch_checks = check_torch()
    checks += torch_checks
    checks.append(check_onnxruntime())
    checks.append(_version_of("onnx"))
    checks.append(check_tensorrt(cuda_ok=torch_checks[1].ok))
    from lbi_ros.ros.tools.availability import check_messages, check_rclpy

    checks += [Check(*c) for c in check_rclpy()]
    checks += [Check(*c) for c in check_messages()]
    return checks


def run(args: argparse.Namespace) -> int:
    checks = run_checks()
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            print(f"{'ok ' if c.ok else '-- '} {c.name:<{width}}  {c.detail}")
    from lbi_ros.ros.tools.availability import MESSAGE_TYPES

    required = {"python", "lbi_ros", "torch", "onnxruntime", "rclpy", "rmw"} | set(MESSAGE_TYPES)
    missing = [c.name for c in checks if c.name in required and not c.ok]
    if missing:
        print(f"missing required parts: {', '.join(missing)} (run scripts/setup.sh)", file=sys.stderr)
        return 1
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("doctor", help="report Python, torch/CUDA, ONNX Runtime, TensorRT, ROS 2")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)
