"""``lbi bench model [--backends all] [--json PATH]``: cost of the lifters on every backend that runs here.

For each model config (default: config/model/lbi.yaml and config/model/lift2d.yaml) it builds the
network (seed 0), writes it as a checkpoint, or with ``--checkpoint`` (repeatable: a ``.safetensors`` file
or ``default`` / ``baseline-2d``, resolved by :func:`lbi_ros.weights.resolve_checkpoint`) loads trained
weights instead, and opens it through :func:`lbi_ros.runtime.factory.create_backend`
(the node's code path: ONNX export, engine cache and all) once per backend variant:

=====================  ===========================================================================
variant                what
=====================  ===========================================================================
torch                  PyTorch eager, CPU, ``threads`` threads (the reference on the CPU)
onnxruntime            ONNX Runtime CPU EP, ``threads`` intra-op threads, spinning off
onnxruntime-int8       same, the image backbone in int8 (:mod:`lbi_ros.runtime.precision`; models that read
                       the image; ``max_abs_err`` is then the *mean* abs error on held-out demo-scene crops)
torch-cuda             PyTorch eager on CUDA (the reference on the GPU)
torch-cuda-graphs      same, one CUDA graph per batch size
torch-cuda-fp16/bf16   same, autocast
onnxruntime-cuda       ONNX Runtime CUDA EP
tensorrt, -fp16        TensorRT engine (fp32 graph / fp16 graph), profile 1..16 persons
=====================  ===========================================================================

``--backends all`` runs every variant available here and lists the others with the reason; or name
variants (``torch,onnxruntime``). Per variant and batch size (default 1, 3, 8 persons) it reports:

* latency per person (call time / batch) p50, p90, p99 over ``--iters`` calls after ``--warmup``, and
  the p50 per call, through ``backend.infer`` (numpy in, numpy out, as the node calls it);
* throughput in persons/s (batch / mean call time);
* peak memory: on the CPU the growth of this process's resident set from before the backend was
  created to after the timed calls (``rss_delta``); on CUDA ``torch.cuda.max_memory_allocated``
  (``cuda_max_allocated``; TensorRT's own activation memory is not in it);
* ``speedup_vs_torch``: torch eager p50 / this p50, both per person, same device, same run;
* ``max_abs_err``: the parity of the variant against PyTorch fp32 on the same inputs.

Params and GFLOPs per person (``FlopCounterMode``, math attention as exported, batch 1) head each model.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "model"
DEFAULT_CONFIGS = ("lbi.yaml", "lift2d.yaml")


@dataclass(frozen=True)
class Variant:
    label: str
    backend: str
    device: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def reference(self) -> str:
        return "torch" if self.device == "cpu" else "torch-cuda"


VARIANTS: tuple[Variant, ...] = (
    Variant("torch", "torch", "cpu"),
    Variant("onnxruntime", "onnxruntime", "cpu"),
    Variant("onnxruntime-int8", "onnxruntime", "cpu", {"precision": "int8"}),
    Variant("torch-cuda", "torch", "cuda"),
    Variant("torch-cuda-graphs", "torch", "cuda", {"cuda_graphs": True}),
    Variant("torch-cuda-fp16", "torch", "cuda", {"precision": "fp16"}),
    Variant("torch-cuda-bf16", "torch", "cuda", {"precision": "bf16"}),
    Variant("onnxruntime-cuda", "onnxruntime", "cuda"),
    Variant("tensorrt", "tensorrt", "cuda"),
    Variant("tensorrt-fp16", "tensorrt", "cuda", {"precision": "fp16"}),
)
VARIANT_BY_LABEL = {v.label: v for v in VARIANTS}


@dataclass(frozen=True)
class BenchRow:
    model: str
    backend: str
    batch: int
    params: int
    gflops_per_person: float
    p50_ms: float
    """Per person (call time / batch), like p90_ms and p99_ms."""
    p99_ms: float
    p90_ms: float
    call_p50_ms: float
    throughput_pps: float
    """Persons per second: batch / mean call time."""
    peak_mem_mb: float
    mem_kind: str
    speedup_vs_torch: float
    """Torch eager p50 / this p50 (per person, same device and run); > 1 = faster than torch."""
    device: str
    max_abs_err: float
    description: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", action="append", type=Path, metavar="PATH",
                        help="model YAML, repeatable (default: config/model/lbi.yaml and lift2d.yaml)")
    parser.add_argument("--checkpoint", action="append", metavar="CKPT",
                        help="trained weights instead of configs, repeatable: a .safetensors file or 'default' / "
                             "'baseline-2d' (shipped weights)")
    parser.add_argument("--backends", default="all",
                        help=f"'all' (every variant available here) or a comma list of {list(VARIANT_BY_LABEL)}")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the rows as a JSON list")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 3, 8], help="batch sizes (persons)")
    parser.add_argument("--threads", type=int, default=2, help="torch and ORT intra-op threads")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--iters", type=int, default=200)


def time_calls(fn: Callable[[], Any], warmup: int, iters: int, sync: Callable[[], None] | None = None) -> np.ndarray:
    """Seconds per call of ``fn`` over ``iters`` calls after ``warmup`` untimed ones (GC paused while timing)."""
    for _ in range(warmup):
        fn()
    times = np.empty(iters)
    gc.collect()
    gc.disable()
    try:
        for i in range(iters):
            start = time.perf_counter()
            fn()
            if sync is not None:
                sync()
            times[i] = time.perf_counter() - start
    finally:
        gc.enable()
    return times


def latency_fields(calls_s: np.ndarray, batch: int) -> dict[str, float]:
    """Per-call times (s) of a batch -> the :class:`BenchRow` latency fields: per-person p50/p90/p99 (call time /
    batch), the call's own p50 (ms) and persons per second (batch / mean call time)."""
    per_person_ms = calls_s * 1e3 / batch
    return {"p50_ms": round(float(np.percentile(per_person_ms, 50)), 3),
            "p99_ms": round(float(np.percentile(per_person_ms, 99)), 3),
            "p90_ms": round(float(np.percentile(per_person_ms, 90)), 3),
            "call_p50_ms": round(float(np.percentile(calls_s * 1e3, 50)), 3),
            "throughput_pps": round(batch / float(np.mean(calls_s)), 1)}


def gflops_per_person(model: Any, feeds: dict[str, Any]) -> float:
    """FLOPs of one eval forward (math attention, as exported) divided by the batch size, in GFLOPs."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from lbi_ros.runtime.onnx_export import eval_mode, math_attention

    batch = next(iter(feeds.values())).shape[0]
    torch_feeds: dict[str, Any] = {"image_crop": None}
    torch_feeds.update({k: torch.from_numpy(v) for k, v in feeds.items()})
    with eval_mode(model), math_attention(model), torch.inference_mode():
        counter = FlopCounterMode(display=False)
        with counter:
            model(**torch_feeds)
    return counter.get_total_flops() / batch / 1e9


def rss_mb() -> float:
    """Current resident set size of this process (Linux /proc; else the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def select_variants(spec: str) -> tuple[list[Variant], dict[str, str]]:
    """Variants to run (each device's torch reference first) and the skipped ones with the reason."""
    from lbi_ros.runtime.factory import unavailable_reason

    explicit = spec.strip() != "all"
    labels = [s.strip() for s in spec.split(",") if s.strip()] if explicit else list(VARIANT_BY_LABEL)
    unknown = [label for label in labels if label not in VARIANT_BY_LABEL]
    if unknown:
        raise ValueError(f"unknown backend variant(s) {unknown}; choose 'all' or from {list(VARIANT_BY_LABEL)}")
    chosen, skipped = [], {}
    for label in labels:
        variant = VARIANT_BY_LABEL[label]
        reason = unavailable_reason(variant.backend, variant.device)
        if reason is None and variant.backend == "onnxruntime" and variant.device == "cuda":
            from lbi_ros.runtime.ort_backend import onnxruntime_unavailable_reason

            reason = onnxruntime_unavailable_reason("cuda")
        if reason:
            if explicit:
                raise RuntimeError(f"backend variant {label} is unavailable here: {reason}")
            skipped[label] = reason
            continue
        chosen.append(variant)
    for variant in list(chosen):  # the ratio needs torch eager on the same device, measured in this run
        ref = VARIANT_BY_LABEL[variant.reference]
        if ref not in chosen:
            chosen.append(ref)
    order = list(VARIANT_BY_LABEL)
    chosen.sort(key=lambda v: (v.device != "cpu", v.label != v.reference, order.index(v.label)))
    return chosen, skipped


def bench_model(name: str, config: Any, variants: list[Variant], batches: list[int], threads: int, warmup: int,
                iters: int, workdir: Path, skipped: dict[str, str], checkpoint: Path | None = None) -> list[BenchRow]:
    """Rows for one network: ``config`` built with seed 0, or (``checkpoint`` given) that file's weights."""
    import torch

    from lbi_ros.checkpoint import load_model, save_checkpoint
    from lbi_ros.model import build_model, count_parameters
    from lbi_ros.runtime.factory import create_backend, precision_errors
    from lbi_ros.runtime.io_spec import build_io_spec, example_inputs

    if checkpoint is None:
        torch.manual_seed(0)
        model = build_model(config).eval()
        checkpoint = save_checkpoint(workdir / f"{name}.safetensors", model, config)
    else:
        model, loaded = load_model(checkpoint)
        model.eval()
        config = loaded.model_config
    params = count_parameters(model)
    gflops = gflops_per_person(model, example_inputs(build_io_spec(config), 1))
    log.info("%s: %d params, %.3f GFLOPs/person", name, params, gflops)

    rows: list[BenchRow] = []
    reference_p50: dict[tuple[str, int], float] = {}
    for variant in variants:
        time.sleep(0.2)  # let the previous backend's worker threads go idle
        gc.collect()
        cuda = variant.device == "cuda"
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        rss_before = rss_mb()
        try:
            backend = create_backend(checkpoint, variant.backend, cache_dir=workdir / "cache", device=variant.device,
                                     threads=threads, **variant.options)
        except (RuntimeError, ValueError) as exc:
            if variant.label == variant.reference:
                raise
            log.warning("%s: %s failed to start: %s", name, variant.label, exc)
            skipped[variant.label] = f"failed to start: {exc}"
            continue
        err = max(precision_errors(backend, model, variant.options.get("precision", "fp32"),
                                   batch_sizes=batches[:1] + batches[-1:]).values())
        sync = torch.cuda.synchronize if cuda else None
        peak = 0.0
        for batch in batches:
            feeds = example_inputs(backend.io_spec, batch, seed=batch)
            latency = latency_fields(time_calls(partial(backend.infer, feeds), warmup, iters, sync), batch)
            peak = max(peak, torch.cuda.max_memory_allocated() / 1e6 if cuda else rss_mb() - rss_before)
            p50 = latency["p50_ms"]
            if variant.label == variant.reference:
                reference_p50[(variant.device, batch)] = p50
            rows.append(BenchRow(
                model=name, backend=variant.label, batch=batch, params=params, gflops_per_person=round(gflops, 4),
                **latency, peak_mem_mb=round(peak, 1), mem_kind="cuda_max_allocated" if cuda else "rss_delta",
                speedup_vs_torch=round(reference_p50[(variant.device, batch)] / p50, 2),
                device=variant.device, max_abs_err=float(f"{err:.3g}"),
                description=getattr(backend, "description", variant.label)))
        close = getattr(backend, "close", None)
        if close:
            close()
        del backend
    if any(v.label == "onnxruntime" for v in variants):
        rows += _head_rows(name, checkpoint, batches, threads, warmup, iters, workdir, params, reference_p50)
    return rows


def _head_rows(name: str, checkpoint: Path, batches: list[int], threads: int, warmup: int, iters: int,
               workdir: Path, params: int, reference_p50: dict[tuple[str, int], float]) -> list[BenchRow]:
    """A gated lifter's head alone in ONNX Runtime (``onnxruntime-head``: the image features given, as when the
    built-in detector's landmark pass shares them); none for other models. Its parity with torch is a test
    (test/test_shared_backbone.py), so ``max_abs_err`` is NaN here."""
    from lbi_ros.runtime.factory import create_head_backend
    from lbi_ros.runtime.io_spec import example_inputs

    found = create_head_backend(checkpoint, "onnxruntime", cache_dir=workdir / "cache", threads=threads)
    if found is None:
        return []
    head = found[1]
    rows = []
    for batch in batches:
        latency = latency_fields(time_calls(partial(head.infer, example_inputs(head.io_spec, batch, seed=batch)),
                                            warmup, iters), batch)
        rows.append(BenchRow(
            model=name, backend="onnxruntime-head", batch=batch, params=params, gflops_per_person=float("nan"),
            **latency, peak_mem_mb=float("nan"), mem_kind="not measured",
            speedup_vs_torch=round(reference_p50.get(("cpu", batch), float("nan")) / latency["p50_ms"], 2),
            device="cpu", max_abs_err=float("nan"), description="lifter head, features given (ONNX Runtime)"))
    return rows


def format_table(rows: list[BenchRow]) -> str:
    header = (f"{'model':<8} {'backend':<18} {'batch':>5} {'GFLOPs/pp':>9} {'p50/pp':>8} {'p90/pp':>8} {'p99/pp':>8} "
              f"{'call p50':>9} {'persons/s':>9} {'mem MB':>7} {'x torch':>7} {'max err':>8}")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r.model:<8} {r.backend:<18} {r.batch:>5} {r.gflops_per_person:>9.3f} {r.p50_ms:>8.3f} "
                     f"{r.p90_ms:>8.3f} {r.p99_ms:>8.3f} {r.call_p50_ms:>9.3f} {r.throughput_pps:>9.0f} "
                     f"{r.peak_mem_mb:>7.1f} {r.speedup_vs_torch:>7.2f} {r.max_abs_err:>8.1e}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from lbi_ros.config import load_yaml
    from lbi_ros.model.config import ModelConfig
    from lbi_ros.weights import resolve_checkpoint

    checkpoints = {spec: resolve_checkpoint(spec) for spec in args.checkpoint or ()}
    paths = [] if checkpoints and not args.config else (
        args.config or [DEFAULT_CONFIG_DIR / name for name in DEFAULT_CONFIGS])
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"model config {path} not found; pass --config PATH")
    if min(args.batch) < 1 or args.iters < 1 or args.warmup < 0 or args.threads < 1:
        raise ValueError("--batch, --iters and --threads must be >= 1 and --warmup >= 0")
    variants, skipped = select_variants(args.backends)
    rows: list[BenchRow] = []
    with tempfile.TemporaryDirectory(prefix="lbi_bench_") as tmp:
        for path in paths:
            config = load_yaml(ModelConfig, path)
            rows += bench_model(path.stem, config, variants, list(args.batch), args.threads, args.warmup,
                                args.iters, Path(tmp), skipped)
        for spec, checkpoint in checkpoints.items():
            rows += bench_model(spec, None, variants, list(args.batch), args.threads, args.warmup,
                                args.iters, Path(tmp), skipped, checkpoint=checkpoint)
    for model in dict.fromkeys(r.model for r in rows):
        first = next(r for r in rows if r.model == model)
        print(f"{model}: {first.params:,} params, {first.gflops_per_person:.3f} GFLOPs/person")
    print(format_table(rows))
    print(f"(ms; /pp = per person = call time / batch; {args.iters} timed calls after {args.warmup} warm-ups through "
          f"backend.infer; {args.threads} threads; ORT spinning off; x torch = torch eager p50 / p50 on the same "
          "device; mem = RSS growth (CPU) or CUDA max allocated; max err vs PyTorch fp32)")
    for r in {r.backend: r for r in rows}.values():
        print(f"  {r.backend}: {r.description}")
    for label, reason in skipped.items():
        print(f"  skipped {label}: {reason}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
