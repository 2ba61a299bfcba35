"""``lbi bench model``: parameters, FLOPs and per-person latency of the lifters, torch eager vs ONNX Runtime.

For each model config (default: config/model/lbi.yaml and config/model/lift2d.yaml) and batch size
(default 1 and 8) it measures, in one process and one run so the numbers compare:

* params and GFLOPs per person (``torch.utils.flop_counter.FlopCounterMode``, math attention, batch 1);
* torch eager latency (``inference_mode``, ``set_num_threads(threads)``);
* ONNX Runtime CPU latency of the exported inference graph (``threads`` intra-op threads, spinning off,
  ORT_ENABLE_ALL; CPU_BUDGET.md's protocol), after a parity check against torch.

Latency is per person (call time / batch), p50 and p99 over ``--iters`` timed calls after ``--warmup``.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "model"
DEFAULT_CONFIGS = ("lbi.yaml", "lift2d.yaml")


@dataclass(frozen=True)
class BenchRow:
    model: str
    backend: str
    batch: int
    params: int
    gflops_per_person: float
    p50_ms: float
    p99_ms: float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", action="append", type=Path, metavar="PATH",
                        help="model YAML, repeatable (default: config/model/lbi.yaml and lift2d.yaml)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the rows as a JSON list")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes (persons)")
    parser.add_argument("--threads", type=int, default=2, help="torch and ORT intra-op threads")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--iters", type=int, default=200)


def time_calls(fn: Callable[[], Any], warmup: int, iters: int) -> np.ndarray:
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
            times[i] = time.perf_counter() - start
    finally:
        gc.enable()
    return times


def gflops_per_person(model: Any, feeds: dict[str, Any]) -> float:
    """FLOPs of one eval forward (math attention, as exported) divided by the batch size, in GFLOPs."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from lbi_ros.runtime.onnx_export import eval_mode, math_attention

    batch = next(iter(feeds.values())).shape[0]
    with eval_mode(model), math_attention(model), torch.inference_mode():
        counter = FlopCounterMode(display=False)
        with counter:
            model(**_torch_feeds(feeds))
    return counter.get_total_flops() / batch / 1e9


def _torch_feeds(feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {"image_crop": None}
    out.update({k: torch.from_numpy(v) for k, v in feeds.items()})
    return out


def bench_model(name: str, config: Any, batches: list[int], threads: int, warmup: int, iters: int,
                workdir: Path) -> list[BenchRow]:
    import torch

    from lbi_ros.model import build_model, count_parameters
    from lbi_ros.runtime.io_spec import build_io_spec, example_inputs
    from lbi_ros.runtime.onnx_export import check_onnx_parity, create_ort_session, export_onnx

    torch.manual_seed(0)
    model = build_model(config).eval()
    params = count_parameters(model)
    spec = build_io_spec(config)
    gflops = gflops_per_person(model, example_inputs(spec, 1))
    onnx_path = workdir / f"{name}.onnx"
    export_onnx(model, onnx_path)
    session = create_ort_session(onnx_path, intra_op_threads=threads, allow_spinning=False)
    err = check_onnx_parity(model, onnx_path, batch_sizes=batches, session=session)
    log.info("%s: %d params, %.3f GFLOPs/person, ONNX vs torch max abs err %.2e", name, params, gflops, err)

    rows = []
    torch.set_num_threads(threads)
    for batch in batches:
        feeds = example_inputs(spec, batch, seed=batch)
        torch_feeds = _torch_feeds(feeds)

        def torch_call(torch_feeds: dict[str, Any] = torch_feeds) -> None:
            with torch.inference_mode():
                model(**torch_feeds)

        def ort_call(feeds: dict[str, np.ndarray] = feeds) -> None:
            session.run(list(spec.output_names), feeds)

        for backend, fn in (("torch", torch_call), ("onnxruntime", ort_call)):
            time.sleep(0.2)  # let the other backend's worker threads go idle
            per_person_ms = time_calls(fn, warmup, iters) * 1e3 / batch
            rows.append(BenchRow(name, backend, batch, params, round(gflops, 4),
                                 round(float(np.percentile(per_person_ms, 50)), 3),
                                 round(float(np.percentile(per_person_ms, 99)), 3)))
    return rows


def format_table(rows: list[BenchRow]) -> str:
    header = f"{'model':<10} {'backend':<12} {'batch':>5} {'params':>10} {'GFLOPs/pp':>10} {'p50 ms/pp':>10} {'p99 ms/pp':>10}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r.model:<10} {r.backend:<12} {r.batch:>5} {r.params:>10,} {r.gflops_per_person:>10.3f} "
                     f"{r.p50_ms:>10.3f} {r.p99_ms:>10.3f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from lbi_ros.config import load_yaml
    from lbi_ros.model.config import ModelConfig

    paths = args.config or [DEFAULT_CONFIG_DIR / name for name in DEFAULT_CONFIGS]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"model config {path} not found; pass --config PATH")
    if min(args.batch) < 1 or args.iters < 1 or args.warmup < 0 or args.threads < 1:
        raise ValueError("--batch, --iters and --threads must be >= 1 and --warmup >= 0")
    rows: list[BenchRow] = []
    with tempfile.TemporaryDirectory(prefix="lbi_bench_") as tmp:
        for path in paths:
            config = load_yaml(ModelConfig, path)
            rows += bench_model(path.stem, config, list(args.batch), args.threads, args.warmup, args.iters,
                                Path(tmp))
    print(format_table(rows))
    print(f"(per person = call time / batch; {args.iters} timed calls after {args.warmup} warm-ups; "
          f"{args.threads} threads; ORT spinning off)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
