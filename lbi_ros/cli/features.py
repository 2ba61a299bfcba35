"""``lbi features POOL --data DIR --assets DIR [--out DIR] [--shard i/n]``: build (or resume) a feature-cache pool.

POOL is a preset of :func:`lbi_ros.training.feature_cache.preset` (train, val_capsule, val_mesh, test_capsule,
test_mesh). Several processes may build one pool at once, each with its own ``--shard i/n``; a killed build
resumes at its first unfinished chunk. The pool lands in ``OUT/<pool>-<key>/`` (default
``$LBI_CACHE/features``, outside the repository).
"""

from __future__ import annotations

import argparse
import logging
import os

log = logging.getLogger("lbi.features")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("features", help="render crops once and cache frozen pose-backbone features")
    parser.add_argument("pool", nargs="+", help="pool preset(s), built in order")
    parser.add_argument("--data", required=True, help="mocap cache folder (lbi data prepare-mocap)")
    parser.add_argument("--assets", default="", help="MakeHuman clothes/hair folder for mesh people")
    parser.add_argument("--out", default=None, help="cache root (default $LBI_CACHE/features)")
    parser.add_argument("--num-samples", type=int, default=None, help="pool size (default: the preset's)")
    parser.add_argument("--shard", default="0/1", help="i/n: build chunks c with c %% n == i")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (1 or 2)")
    parser.set_defaults(func=_build)
    add_train_parser(subparsers)
    add_eval_parser(subparsers)


def _build(args: argparse.Namespace) -> int:
    from lbi_ros.training.feature_cache import build_pool, preset

    out = args.out or os.path.join(os.environ.get("LBI_CACHE", os.path.expanduser("~/.cache/lbi_ros")), "features")
    shard, num_shards = (int(x) for x in args.shard.split("/"))
    for name in args.pool:
        spec = preset(name, args.data, args.assets, args.num_samples)
        directory = build_pool(spec, out, shard, num_shards, threads=args.threads)
        log.info("%s: %s", name, directory)
    return 0


def add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train-cached", help="train the gated LBI or its matched 2D-only lifter from a pool")
    parser.add_argument("config", help="CachedTrainConfig YAML (config/train/gated_*.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. pool_dir=... out_dir=... steps=2000")
    parser.add_argument("--no-resume", action="store_true")
    parser.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from lbi_ros.config import load_yaml
    from lbi_ros.training.cached_trainer import CachedTrainConfig, train_cached

    result = train_cached(load_yaml(CachedTrainConfig, args.config, args.overrides), resume=not args.no_resume)
    log.info("%s", result)
    return 0


def add_eval_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval-cached", help="score checkpoints on cached evaluation pools")
    parser.add_argument("checkpoint", nargs="+", help="checkpoints (lbi_gated or lift2d; 'baseline-2d' = shipped)")
    parser.add_argument("--pool", action="append", required=True, help="evaluation pool directory (repeatable)")
    parser.add_argument("--images", choices=("real", "shuffled", "blank"), action="append", default=None,
                        help="image condition(s) for image models (default: real)")
    parser.add_argument("--noise", default=None,
                        help="data config YAML whose 'noise' redraws the 2D inputs (e.g. config/data/detector_noise.yaml)")
    parser.add_argument("--json", default=None, help="append the metrics as JSON lines here")
    parser.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    import json

    import torch

    from lbi_ros.checkpoint import load_model
    from lbi_ros.training.cached_data import eval_batches
    from lbi_ros.training.cached_trainer import evaluate_pool
    from lbi_ros.weights import resolve_checkpoint

    torch.set_num_threads(1)
    noise = None
    if args.noise:
        from lbi_ros.config import load_yaml
        from lbi_ros.synth.dataset import SyntheticDataConfig

        noise = load_yaml(SyntheticDataConfig, args.noise).noise
    for spec in args.checkpoint:
        model, ckpt = load_model(resolve_checkpoint(spec))
        tap = ckpt.model_config.encoder.removeprefix("blazepose_") if ckpt.model_config.kind == "lbi_gated" else "add_8"
        conditions = args.images or ["real"]
        for pool in args.pool:
            for images in conditions if ckpt.model_config.kind == "lbi_gated" else ["real"]:
                metrics = evaluate_pool(model, eval_batches(pool, tap, images=images, noise=noise))
                record = {"checkpoint": spec, "pool": pool, "images": images, "noise": args.noise, **metrics}
                log.info("%s | %s | images=%s: MPJPE %.2f  P-MPJPE %.2f  depth %.2f mm (n=%d)", spec, pool, images,
                         metrics["mpjpe_mm"], metrics["p_mpjpe_mm"], metrics["depth_mm"], metrics["n"])
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(json.dumps(record) + "\n")
    return 0
