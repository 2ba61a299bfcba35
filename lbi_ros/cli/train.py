"""``lbi train CONFIG [key=value ...]``: run (or resume) a training run described by a YAML TrainConfig.

Multi-process: ``torchrun --nproc_per_node N -m lbi_ros.cli.main train CONFIG ...`` (same script; DDP with
NCCL on GPUs, gloo on CPU). A run resumes from ``log.out_dir`` when that folder holds a checkpoint.
"""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger("lbi.train")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a lifter from a config/train/*.yaml file")
    parser.add_argument("config", help="TrainConfig YAML (config/train/lbi.yaml, ...)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. log.out_dir=/tmp/run optim.lr=5e-4")
    parser.add_argument("--no-resume", action="store_true", help="start over even if out_dir has a checkpoint")
    parser.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from lbi_ros.training.config import load_train_config
    from lbi_ros.training.trainer import train

    config = load_train_config(args.config, args.overrides)
    result = train(config, resume=not args.no_resume)
    if result.validation:
        v = result.validation
        log.info("done at step %d in %.1f min: val MPJPE %.1f mm, P-MPJPE %.1f mm, depth %.1f mm",
                 result.step, result.elapsed_s / 60, v["mpjpe_mm"], v["p_mpjpe_mm"], v["depth_mpjpe_mm"])
    log.info("outputs in %s", result.out_dir)
    return 0
