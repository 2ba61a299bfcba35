"""TensorRT op-support check of an exported ONNX graph, runnable on a CPU-only machine.

``tensorrt_rtx`` (TensorRT for RTX, a real pip wheel, requirements/deploy.txt) parses and builds ONNX
without a GPU; it only *runs* engines on RTX GPUs. Its ONNX parser and builder are the TensorRT ones, so
a graph that parses and builds with the batch profile here uses only ops (and op attributes such as
TopK's K and sorted flag) that TensorRT supports. The check goes through the same
:func:`~lbi_ros.runtime.engine_cache.build_serialized_engine` the node's engine build uses.

Where ``tensorrt_rtx`` is not importable the check is *skipped* with the reason, never faked. It does
not replace running the engine on the target: the deployment recipe (docs/deployment.md) builds with
JetPack's TensorRT and checks parity there (that recipe is not yet run on hardware; this check is what
has run, on x86_64 CPUs).
"""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lbi_ros.runtime.engine_cache import BatchProfile, EngineBuildError, build_serialized_engine

log = logging.getLogger(__name__)

CheckStatus = Literal["passed", "failed", "skipped"]


@dataclass(frozen=True)
class TrtCheckResult:
    status: CheckStatus
    reason: str
    """What was checked (passed), what went wrong (failed) or why nothing was checked (skipped)."""
    checker: str = ""
    """``tensorrt_rtx <version>`` where it ran."""
    errors: tuple[str, ...] = ()
    """Parser errors ``[node op] message``: the unsupported nodes, when failed."""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def import_tensorrt_rtx() -> tuple[Any, str | None]:
    """``(module, None)`` or ``(None, reason)``; loading its shared libraries can fail too, not just the import."""
    try:
        return importlib.import_module("tensorrt_rtx"), None
    except ImportError as exc:
        return None, f"tensorrt_rtx is not installed ({exc}); pip install -r requirements/deploy.txt"
    except OSError as exc:
        return None, f"tensorrt_rtx is installed but its libraries do not load: {exc}"


def check_tensorrt_support(onnx_path: str | Path, profile: BatchProfile | None = None,
                           build: bool = True) -> TrtCheckResult:
    """Parse (and with ``build``, build with ``profile``, default persons 1..16) ``onnx_path`` with TensorRT-RTX."""
    path = Path(onnx_path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model {path} does not exist")
    trt, reason = import_tensorrt_rtx()
    if trt is None:
        return TrtCheckResult("skipped", reason or "tensorrt_rtx unavailable")
    checker = f"tensorrt_rtx {trt.__version__}"
    profile = profile or BatchProfile()
    start = time.monotonic()
    try:
        if build:
            data, _ = build_serialized_engine(trt, path, profile, timing_cache=None)
            what = (f"parsed and built a strongly typed engine for persons {profile.min_batch}..{profile.max_batch} "
                    f"({len(data) / 1e6:.1f} MB)")
        else:
            logger = trt.Logger(trt.Logger.WARNING)
            network = trt.Builder(logger).create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
            parser = trt.OnnxParser(network, logger)
            if not parser.parse_from_file(str(path)):
                from lbi_ros.runtime.engine_cache import parser_errors

                raise EngineBuildError(f"TensorRT could not parse {path}", parser_errors(parser))
            what = f"parsed {network.num_layers} layers"
    except EngineBuildError as exc:
        return TrtCheckResult("failed", str(exc).splitlines()[0], checker, exc.errors, time.monotonic() - start)
    seconds = time.monotonic() - start
    log.info("TensorRT op check of %s with %s: %s in %.1f s", path, checker, what, seconds)
    return TrtCheckResult("passed", what, checker, (), seconds)
