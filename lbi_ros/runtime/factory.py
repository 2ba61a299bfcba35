"""``create_backend``: the one way the node, the CLI and the benchmarks get an :class:`InferenceBackend`.

``model_path`` is a ``.safetensors`` checkpoint (weights + the config that built them), an ``.onnx``
file exported by lbi_ros (carrying its I/O contract) or a shipped name (``default``, ``baseline-2d``;
:func:`lbi_ros.weights.resolve_checkpoint`). From a checkpoint, ONNX Runtime and TensorRT need
ONNX: it is exported once into ``<cache_dir>/onnx/`` keyed by the checkpoint's sha256, checked against
PyTorch, and reused afterwards. TensorRT engines go into ``<cache_dir>`` itself
(:mod:`lbi_ros.runtime.engine_cache`).

``backend="auto"`` takes the first available of TensorRT > ONNX Runtime > PyTorch (fastest first) and
logs why each faster one was passed over. A named backend that cannot run raises ``RuntimeError`` with
the reason; an unknown name or option is a ``ValueError`` and a missing file a ``FileNotFoundError``,
all at start-up, before any frame arrives. A checkpoint whose weights do not fit its config is a
:class:`~lbi_ros.checkpoint.CheckpointError` (a ``ValueError``).

Also here: :func:`export_checkpoint` (``lbi export``: ONNX + fp16 + parity report),
:func:`parity_errors`, the one parity test every backend passes against PyTorch, and
:func:`create_head_backend`, a gated lifter's head alone for a caller that holds its backbone's features.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lbi_ros.runtime.backend import InferenceBackend
from lbi_ros.runtime.engine_cache import BatchProfile, EngineCacheError
from lbi_ros.runtime.io_spec import IOSpec, example_inputs
from lbi_ros.runtime.safe_files import atomic_write_bytes, file_lock, sha256_file

log = logging.getLogger(__name__)

BackendName = Literal["auto", "tensorrt", "onnxruntime", "torch"]
BACKENDS: tuple[str, ...] = ("auto", "tensorrt", "onnxruntime", "torch")
AUTO_ORDER: tuple[str, ...] = ("tensorrt", "onnxruntime", "torch")
DeviceChoice = Literal["auto", "cpu", "cuda"]
DEFAULT_CACHE_DIR = Path("~/.cache/lbi_ros/engines")
DEFAULT_OPSET = 18
"""JetPack 6's TensorRT 10.3 reads ONNX opset <= 20; 18 has LayerNormalization and works everywhere."""
PRECISION_BACKEND = {"bf16": "torch", "int8": "onnxruntime"}
"""Precisions only one backend runs: bf16 autocast (torch on CUDA), the int8 backbone (ONNX Runtime CPU)."""
CHECKPOINT_SUFFIXES = (".safetensors",)
ONNX_SUFFIXES = (".onnx",)


# -- parity: the one test every backend passes -------------------------------------------------------------
def reference_outputs(model: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """PyTorch eager fp32 on the CPU (eval mode, attention as configured): the reference for every backend."""
    import torch

    from lbi_ros.runtime.onnx_export import call_lifter, eval_mode

    with eval_mode(model), torch.inference_mode():
        outputs = call_lifter(model, {k: torch.from_numpy(v) for k, v in feeds.items()})
    return {name: value.detach().cpu().numpy() for name, value in outputs._asdict().items() if value is not None}


def parity_errors(backend: InferenceBackend, model: Any, batch_sizes: Sequence[int] = (1, 5),
                  seed: int = 0, feeds: Sequence[Mapping[str, np.ndarray]] | None = None,
                  reduce: Literal["max", "mean"] = "max") -> dict[str, float]:
    """Max (or mean) abs difference per output name between ``backend`` and PyTorch on the same inputs:
    seeded example inputs of ``batch_sizes``, or the given ``feeds`` (real crops, for the int8 check)."""
    batches = list(feeds) if feeds is not None else [example_inputs(backend.io_spec, b, seed=seed + i)
                                                      for i, b in enumerate(batch_sizes)]
    if not batches:  # an empty comparison must not pass as a perfect one
        raise ValueError("parity_errors needs at least one batch of inputs")
    diffs: dict[str, list[np.ndarray]] = {}
    for batch in batches:
        got = backend.infer(batch)
        want = reference_outputs(model, batch)
        for name in backend.io_spec.output_names:
            if got[name].shape != want[name].shape:
                raise AssertionError(f"{backend.name} {name}: shape {got[name].shape}, PyTorch {want[name].shape}")
            diffs.setdefault(name, []).append(np.abs(got[name].astype(np.float64) - want[name]).ravel())
    pool = np.max if reduce == "max" else np.mean
    return {name: float(pool(np.concatenate(d))) for name, d in diffs.items()}


def precision_errors(backend: InferenceBackend, model: Any, precision: str,
                     batch_sizes: Sequence[int] = (1, 5)) -> dict[str, float]:
    """The error that ``tolerance(precision, name)`` bounds: max abs on seeded example inputs, or for int8
    (quantized image features, not bit-comparable) the mean abs on held-out demo-scene crops."""
    if precision != "int8":
        return parity_errors(backend, model, batch_sizes)
    from lbi_ros.demo.calibration import check_feeds

    return parity_errors(backend, model, feeds=check_feeds(backend.io_spec), reduce="mean")


# -- export ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportReport:
    onnx_path: Path
    io_spec: IOSpec
    precision: str
    opset: int
    num_nodes: int
    max_abs_error: dict[str, float]
    """Per output, ONNX Runtime CPU vs PyTorch fp32 (metres for joints); for int8 the *mean* abs error over
    held-out real crops (:func:`lbi_ros.demo.calibration.check_feeds`)."""
    tolerance: dict[str, float]

    @property
    def parity_ok(self) -> bool:
        return all(self.max_abs_error[k] <= self.tolerance[k] for k in self.max_abs_error)


def export_checkpoint(checkpoint: str | Path, onnx_path: str | Path, precision: Literal["fp32", "fp16", "int8"] = "fp32",
                      opset: int = DEFAULT_OPSET, include_coarse: bool = False,
                      batch_sizes: Sequence[int] = (1, 5), head_only: bool = False) -> ExportReport:
    """Export the checkpoint's lifter to ``onnx_path`` and report its error against PyTorch (ONNX Runtime CPU):
    fp16 converts the graph (I/O float32), int8 quantizes the image backbone (:mod:`lbi_ros.runtime.precision`,
    calibrated and checked on demo-scene crops). ``head_only``: a gated lifter's head (features in)."""
    import onnx

    from lbi_ros.checkpoint import load_model
    from lbi_ros.runtime import precision as reduced
    from lbi_ros.runtime.onnx_export import export_onnx
    from lbi_ros.runtime.ort_backend import OnnxRuntimeBackend

    if precision not in ("fp32", "fp16", "int8"):
        raise ValueError(f"precision must be fp32, fp16 or int8, got {precision!r}")
    if reason := {"fp16": reduced.fp16_available, "int8": reduced.int8_available}.get(precision, lambda: None)():
        raise RuntimeError(f"{precision} export unavailable: {reason}")
    model, _ = load_model(checkpoint)
    onnx_path = Path(onnx_path)
    if precision == "fp32":
        spec = export_onnx(model, onnx_path, opset=opset, include_coarse=include_coarse, head_only=head_only)
    else:
        fp32_path = onnx_path.with_name(onnx_path.stem + ".fp32.tmp.onnx")
        try:
            spec = export_onnx(model, fp32_path, opset=opset, include_coarse=include_coarse, head_only=head_only)
            if precision == "fp16":
                reduced.convert_to_fp16(fp32_path, onnx_path)
            else:
                from lbi_ros.demo.calibration import calibration_feeds

                reduced.quantize_backbone(fp32_path, onnx_path, calibration_feeds(spec))
        finally:
            fp32_path.unlink(missing_ok=True)
    backend = OnnxRuntimeBackend(onnx_path, device="cpu", intra_op_threads=1)
    errors = precision_errors(backend, model, precision, batch_sizes)
    num_nodes = len(onnx.load(str(onnx_path), load_external_data=False).graph.node)
    report = ExportReport(onnx_path, spec, precision, opset, num_nodes, errors,
                          {name: reduced.tolerance(precision, name) for name in errors})
    log.info("exported %s -> %s (%s, opset %d): error vs PyTorch %s", checkpoint, onnx_path, precision, opset,
             {k: f"{v:.2e}" for k, v in errors.items()})
    return report


def exported_onnx(checkpoint: str | Path, cache_dir: str | Path, precision: Literal["fp32", "fp16", "int8"] = "fp32",
                  opset: int = DEFAULT_OPSET, head_only: bool = False) -> Path:
    """The checkpoint's ONNX export in ``<cache_dir>/onnx``, exported (and parity-checked) on first use.
    ``head_only``: its head alone (:func:`create_head_backend`), cached beside it as ``...-head.onnx``.

    Keyed by the checkpoint's sha256, opset, precision and the exporter's versions (sidecar JSON); a file
    whose sidecar is missing or whose hash does not match is exported again. Locked and atomic like engines.
    """
    import torch

    from lbi_ros import __version__

    checkpoint = Path(checkpoint)
    digest = sha256_file(checkpoint)
    out_dir = Path(cache_dir).expanduser() / "onnx"
    path = out_dir / f"{checkpoint.stem}-{digest[:16]}-opset{opset}-{precision}{'-head' if head_only else ''}.onnx"
    sidecar_path = path.with_name(path.name + ".json")
    want = {"checkpoint_sha256": digest, "opset": opset, "precision": precision, "lbi_ros": __version__,
            "torch": torch.__version__}
    if precision == "int8":  # the quantizer and its calibration data decide the graph too
        import onnxruntime

        from lbi_ros.demo.calibration import CALIBRATION_ID

        want.update(onnxruntime=onnxruntime.__version__, calibration=CALIBRATION_ID)
    with file_lock(path.with_suffix(".lock")):
        with contextlib.suppress(OSError, ValueError):
            sidecar = json.loads(sidecar_path.read_text())
            if {k: sidecar.get(k) for k in want} == want and sidecar.get("onnx_sha256") == sha256_file(path):
                log.info("using cached ONNX export %s", path)
                return path
        tmp = out_dir / f".{path.stem}.{os.getpid()}.onnx"
        try:
            report = export_checkpoint(checkpoint, tmp, precision, opset, head_only=head_only)
            if not report.parity_ok:
                raise RuntimeError(f"the ONNX export of {checkpoint} does not match PyTorch: max abs errors "
                                   f"{report.max_abs_error}, tolerances {report.tolerance}")
            sidecar_path.unlink(missing_ok=True)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        want["onnx_sha256"] = sha256_file(path)
        want["max_abs_error"] = report.max_abs_error
        atomic_write_bytes(sidecar_path, (json.dumps(want, indent=2) + "\n").encode())
    return path


def onnx_with_precision(onnx_path: str | Path, precision: str, cache_dir: str | Path) -> Path:
    """``onnx_path`` itself if it has ``precision``, else its cached fp16 conversion (fp32 -> fp16 only)."""
    from lbi_ros.runtime.precision import convert_to_fp16, fp16_available
    from lbi_ros.runtime.tensorrt_backend import read_onnx_contract

    onnx_path = Path(onnx_path)
    _, have = read_onnx_contract(onnx_path)
    if have == precision:
        return onnx_path
    if (have, precision) != ("fp32", "fp16"):
        raise ValueError(f"{onnx_path} is {have}; cannot make {precision} from it (export again from the checkpoint)")
    if reason := fp16_available():
        raise RuntimeError(f"fp16 conversion unavailable: {reason}")
    path = Path(cache_dir).expanduser() / "onnx" / f"{onnx_path.stem}-{sha256_file(onnx_path)[:16]}-fp16.onnx"
    with file_lock(path.with_suffix(".lock")):
        if not path.is_file():
            tmp = path.with_name(f".{path.stem}.{os.getpid()}.onnx")
            try:
                convert_to_fp16(onnx_path, tmp)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
    return path


# -- availability and selection ----------------------------------------------------------------------------
def resolve_device(device: str) -> str:
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if device != "auto":
        return device
    from lbi_ros.runtime.torch_backend import cuda_unavailable_reason

    return "cpu" if cuda_unavailable_reason() else "cuda"


def unavailable_reason(backend: str, device: str = "auto", from_checkpoint: bool = True) -> str | None:
    """None if ``backend`` can run here on ``device`` with that kind of model file, else why not."""
    if backend == "tensorrt":
        if device == "cpu":
            return "device='cpu' was requested"
        from lbi_ros.runtime.tensorrt_backend import tensorrt_unavailable_reason

        return tensorrt_unavailable_reason()
    if backend == "onnxruntime":
        from lbi_ros.runtime.ort_backend import onnxruntime_unavailable_reason

        return onnxruntime_unavailable_reason(resolve_device(device))  # type: ignore[arg-type]
    if backend == "torch":
        if not from_checkpoint:
            return "the torch backend needs a .safetensors checkpoint, not an ONNX file"
        try:
            from lbi_ros.runtime.torch_backend import cuda_unavailable_reason
        except ImportError as exc:
            return f"torch is not installed ({exc})"
        return cuda_unavailable_reason() if device == "cuda" else None
    raise ValueError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")


def backend_availability(device: str = "auto", from_checkpoint: bool = True) -> dict[str, str | None]:
    """Backend -> None (available) or the reason it is not, in ``auto`` order."""
    return {name: unavailable_reason(name, device, from_checkpoint) for name in AUTO_ORDER}


def create_backend(
    model_path: str | Path | None,
    backend: str = "auto",
    *,
    cache_dir: str | Path | None = None,
    device: str = "auto",
    precision: str | None = None,
    max_batch: int = 16,
    opt_batch: int | None = None,
    threads: int = 2,
    allow_spinning: bool = False,
    cuda_graphs: bool = False,
    compile: bool = False,
    opset: int = DEFAULT_OPSET,
) -> InferenceBackend:
    """An inference backend for ``model_path`` (see the module doc for the rules and errors).

    ``model_path``: a checkpoint or ONNX file, a shipped name (``default``, ``baseline-2d``), or None/"" = the
    shipped default weights (:func:`lbi_ros.weights.resolve_checkpoint`, the resolver every entry point uses).

    ``precision``: ``fp32`` / ``fp16`` (an fp16 graph for ONNX Runtime and TensorRT, autocast for torch on
    CUDA) / ``bf16`` (torch on CUDA only); None = fp32, or the ONNX file's own precision.
    ``max_batch``/``opt_batch``: the TensorRT profile (persons). ``threads``: ONNX Runtime intra-op (and
    torch CPU) threads. ``cuda_graphs``/``compile``: torch on CUDA only.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
    if precision not in (None, "fp32", "fp16", "bf16", "int8"):
        raise ValueError(f"precision must be fp32, fp16, bf16 or int8, got {precision!r}")
    from lbi_ros.weights import resolve_checkpoint

    path = resolve_checkpoint(model_path)
    if path.suffix not in CHECKPOINT_SUFFIXES + ONNX_SUFFIXES:
        raise ValueError(f"model file {path} must be a {CHECKPOINT_SUFFIXES} checkpoint or an {ONNX_SUFFIXES} export")
    from_checkpoint = path.suffix in CHECKPOINT_SUFFIXES
    resolve_device(device)  # validates the name
    cache = Path(cache_dir or DEFAULT_CACHE_DIR).expanduser()
    options = dict(cache_dir=cache, device=device, precision=precision, profile=BatchProfile.up_to(max_batch, opt_batch),
                   threads=threads, allow_spinning=allow_spinning, cuda_graphs=cuda_graphs, compile=compile, opset=opset)

    if backend != "auto":
        reason = unavailable_reason(backend, device, from_checkpoint)
        if reason:
            raise RuntimeError(f"backend {backend!r} is unavailable: {reason}")
        return _create(backend, path, from_checkpoint, **options)

    passed_over: dict[str, str] = {}
    candidates = [n for n in AUTO_ORDER if n != "torch" or from_checkpoint]
    for name in candidates:
        reason = unavailable_reason(name, device, from_checkpoint)
        if reason is None and precision in ("bf16", "int8") and name != PRECISION_BACKEND[precision]:
            reason = f"{precision} is an option of {PRECISION_BACKEND[precision]} only"
        if reason:
            passed_over[name] = reason
            continue
        try:
            chosen = _create(name, path, from_checkpoint, **options)
        except (RuntimeError, EngineCacheError) as exc:
            if name == candidates[-1]:
                raise
            log.warning("backend auto: %s is available but failed to start (%s); trying the next", name, exc)
            passed_over[name] = f"failed to start: {exc}"
            continue
        why = "; ".join(f"{k}: {v}" for k, v in passed_over.items())
        log.info("backend auto -> %s (%s)%s", name, getattr(chosen, "description", name),
                 f"; passed over {why}" if why else "")
        return chosen
    raise RuntimeError("no inference backend can run here: " + "; ".join(f"{k}: {v}" for k, v in passed_over.items()))


def _create(name: str, path: Path, from_checkpoint: bool, *, cache_dir: Path, device: str, precision: str | None,
            profile: BatchProfile, threads: int, allow_spinning: bool, cuda_graphs: bool, compile: bool,
            opset: int) -> InferenceBackend:
    if precision in ("bf16", "int8") and name != PRECISION_BACKEND[precision]:
        raise ValueError(f"{precision} is an option of {PRECISION_BACKEND[precision]} only; {name} takes fp32 or fp16")
    if precision == "int8" and resolve_device(device) != "cpu":
        raise ValueError("int8 (the quantized image backbone) is an ONNX Runtime CPU option")
    if name == "torch":
        from lbi_ros.checkpoint import load_model
        from lbi_ros.runtime.torch_backend import TorchBackend

        torch_device = resolve_device(device)
        model, _ = load_model(path)
        return TorchBackend(model, torch_device, precision=precision or "fp32",  # type: ignore[arg-type]
                            cuda_graphs=cuda_graphs, compile=compile, threads=threads if torch_device == "cpu" else None)
    if cuda_graphs or compile:
        raise ValueError(f"cuda_graphs/compile are torch options; backend {name!r} does not take them")
    if from_checkpoint:
        onnx_path = exported_onnx(path, cache_dir, precision or "fp32", opset)  # type: ignore[arg-type]
    else:
        onnx_path = onnx_with_precision(path, precision, cache_dir) if precision else path
    if name == "onnxruntime":
        from lbi_ros.runtime.ort_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(onnx_path, device=resolve_device(device),  # type: ignore[arg-type]
                                  intra_op_threads=threads, allow_spinning=allow_spinning)
    from lbi_ros.runtime.tensorrt_backend import TensorRTBackend

    return TensorRTBackend.from_onnx(onnx_path, cache_dir, profile)


def create_head_backend(model_path: str | Path | None, backend: str = "auto", *, cache_dir: str | Path | None = None,
                        threads: int = 1) -> tuple[str, InferenceBackend] | None:
    """``(tap, head)`` when ``model_path`` is a gated lifter over a BlazePose landmark-net tap, else None.

    ``head`` runs the lifter on the ``tap`` map of the shared square crop (``features`` in place of
    ``image_crop``, :mod:`lbi_ros.runtime.io_spec`), for a built-in detector whose landmark pass already
    computed that map (:class:`~lbi_ros.pose2d.roi.SharedCrop`). It runs on the CPU: in ONNX Runtime (a
    head-only export, cached beside the full one) when installed and ``backend`` is not ``torch``, else in
    torch; TensorRT is not used for it (the head is ~1-2 ms a person). None also for an ONNX model file
    (the head cannot be exported without the checkpoint).
    """
    from lbi_ros.checkpoint import read_checkpoint
    from lbi_ros.model.encoder import shared_tap
    from lbi_ros.weights import resolve_checkpoint

    path = resolve_checkpoint(model_path)
    if path.suffix not in CHECKPOINT_SUFFIXES:
        return None
    tap = shared_tap(read_checkpoint(path).model_config)
    if tap is None:
        return None
    if backend != "torch" and unavailable_reason("onnxruntime", "cpu") is None:
        from lbi_ros.runtime.ort_backend import OnnxRuntimeBackend

        onnx_path = exported_onnx(path, Path(cache_dir or DEFAULT_CACHE_DIR).expanduser(), head_only=True)
        return tap, OnnxRuntimeBackend(onnx_path, device="cpu", intra_op_threads=threads)
    from lbi_ros.checkpoint import load_model
    from lbi_ros.runtime.torch_backend import TorchBackend

    return tap, TorchBackend(load_model(path)[0], "cpu", head_only=True)
