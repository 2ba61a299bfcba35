"""``lbi eval CKPT --data DIR [--split test] [--json PATH] [--out DIR]``: score a checkpoint.

CKPT is a ``.safetensors`` checkpoint or ``default`` / ``baseline-2d`` (the weights shipped in
``lbi_ros/weights``). DIR is a mocap cache (``lbi data prepare-mocap``; rendered with a fixed seed, every clip
unless ``--split``) or, with ``--benchmark``, a Human3.6M / MPI-INF-3DHP data config (YAML, see
``config/train/eval_h36m.yaml`` and ``config/train/eval_3dhp.yaml``; paths with ``--set key=value``).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger("lbi.eval")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a checkpoint on held-out data")
    parser.add_argument("checkpoint", help="checkpoint file, or 'default' / 'baseline-2d' (shipped weights)")
    parser.add_argument("--data", required=True, help="mocap cache folder, or a benchmark YAML with --benchmark")
    parser.add_argument("--split", choices=("train", "val", "test"), default=None,
                        help="cache split (default: every clip)")
    parser.add_argument("--benchmark", choices=("h36m", "3dhp"), default=None,
                        help="--data is a benchmark data config (H36MConfig / MPI3DHPConfig YAML)")
    parser.add_argument("--num-samples", type=int, default=5000, help="rendered samples (mocap cache)")
    parser.add_argument("--seed", type=int, default=2024, help="rendering seed (mocap cache)")
    parser.add_argument("--latency-repeats", type=int, default=30,
                        help="batch-1 latency timing calls (0 = skip)")
    parser.add_argument("--output", choices=("refined", "coarse"), default="refined")
    parser.add_argument("--json", default=None, help="write the metrics JSON here")
    parser.add_argument("--out", default=None, help="folder for report.md/report.json and plots")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field (repeatable): a benchmark's (--set annot_dir=/data/3dhp) or, "
                             "for a mocap cache, the rendering's (--set mesh.fraction=1 --set mesh.appearance=heldout)")
    parser.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    import torch

    from lbi_ros.checkpoint import load_model
    from lbi_ros.evaluation import evaluate_model, latency_ms, rendered_eval_set
    from lbi_ros.evaluation.report import SUMMARY_KEYS, write_report
    from lbi_ros.model.build import count_parameters
    from lbi_ros.weights import resolve_checkpoint

    path = resolve_checkpoint(args.checkpoint)
    model, ckpt = load_model(path)
    if args.benchmark:
        eval_set = _benchmark_set(args)
    else:
        from lbi_ros.config import with_overrides
        from lbi_ros.synth.dataset import SyntheticDataConfig

        # --set on a mocap cache overrides the rendering (SyntheticDataConfig), e.g. --set mesh.fraction=1
        data = with_overrides(SyntheticDataConfig(), args.overrides)
        eval_set = rendered_eval_set(args.data, args.split, args.num_samples, args.seed, data=data)
    with torch.inference_mode():
        metrics, predicted = evaluate_model(model, eval_set, output=args.output)
        if args.latency_repeats > 0:
            metrics["latency_ms_batch1"] = latency_ms(model, eval_set, args.latency_repeats)
    metrics["checkpoint"] = str(path)
    metrics["model_kind"] = ckpt.model_config.kind
    metrics["params"] = count_parameters(model)
    for key in SUMMARY_KEYS:
        print(f"{key:>16}: {metrics[key]:.2f}" if isinstance(metrics[key], float) else f"{key:>16}: {metrics[key]}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(metrics, indent=1))
    if args.out:
        write_report(metrics, eval_set, predicted, args.out, title=f"lbi eval {args.checkpoint}")
        log.info("report in %s", args.out)
    return 0


def _benchmark_set(args: argparse.Namespace):  # noqa: ANN202 - EvalSet, imported lazily
    from lbi_ros.config import load_yaml
    from lbi_ros.evaluation import benchmark_eval_set

    if args.benchmark == "h36m":
        from lbi_ros.datasets.h36m import H36MConfig, Human36MDataset

        dataset = Human36MDataset(load_yaml(H36MConfig, args.data, args.overrides))
        return benchmark_eval_set("h36m", dataset, ("action", "subject"))
    from lbi_ros.datasets.mpi_inf_3dhp import MPI3DHPConfig, MPI3DHPDataset

    dataset = MPI3DHPDataset(load_yaml(MPI3DHPConfig, args.data, args.overrides))
    return benchmark_eval_set("mpi_inf_3dhp", dataset, ("scene", "sequence"))
