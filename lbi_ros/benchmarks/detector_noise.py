"""``lbi bench detector-noise``: measure the built-in detector's 2D errors and fit the synthetic noise to them.

Renders ``--num-samples`` people of a mocap cache split (default: train; never tune on test) exactly as
``lbi eval --keypoints detector`` does (:mod:`lbi_ros.evaluation.detector_input`), compares the detector's
H36M-17 keypoints with the projected true joints (:func:`lbi_ros.synth.noise_fit.measure_errors`) and
writes:

* ``--config`` (default ``config/data/detector_noise.yaml``): a full data config
  (:class:`~lbi_ros.synth.dataset.SyntheticDataConfig`) whose ``noise`` section is fitted
  (:func:`~lbi_ros.synth.noise_fit.fit_noise_config`); the header records the command and the statistics;
* ``--offsets`` (default ``lbi_ros/weights/blazepose_world_offsets.json``): the BlazePose world landmarks'
  mean per-joint offsets (:func:`lbi_ros.evaluation.peer.fit_joint_offsets`), measured on the same people,
  which ``lbi eval blazepose-world`` applies on test (``--offsets ''`` skips them).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("lbi.bench.detector_noise")

REPO = Path(__file__).resolve().parents[2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="mocap cache folder (lbi data prepare-mocap)")
    parser.add_argument("--split", choices=("train", "val", "test"), default="train")
    parser.add_argument("--num-samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--config", default=str(REPO / "config" / "data" / "detector_noise.yaml"),
                        help="data config to write ('' = do not write)")
    parser.add_argument("--offsets", default=None,
                        help="BlazePose world joint offsets JSON to write (default: the one lbi eval reads; '' = skip)")
    parser.add_argument("--json", default=None, help="also write the statistics and fitted fields here")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="rendering override (repeatable), e.g. --set mesh.fraction=0.5")


def _yaml_text(data_config: object, stats: dict, command: str) -> str:
    import yaml

    from lbi_ros.config import to_dict

    raw = to_dict(data_config)
    raw["cache_dir"] = ""
    header = [
        "# Synthetic training data with the 2D noise fitted to the built-in BlazePose detector (issue 17).",
        "# Same fields as config/data/synthetic.yaml (lbi_ros.synth.dataset.SyntheticDataConfig); only `noise`",
        "# (lbi_ros/synth/noise2d.py) differs from the rendering the statistics were measured with. Measured by",
        f"#   {command}",
        "# (lbi_ros/synth/noise_fit.py; errors in person heights, rates as fractions):",
    ]
    header += [f"#   {k}: {(round(v, 4) if isinstance(v, float) else v)}" for k, v in stats.items() if k != "joint_rms"]
    header.append("# The miss rate is not modelled: a person the detector misses never reaches the lifter.")
    header.append("# Use: load_yaml(SyntheticDataConfig, this file) or copy the `noise` section into a train config.")
    return "\n".join(header) + "\n" + yaml.safe_dump(raw, sort_keys=False, default_flow_style=None)


def run(args: argparse.Namespace) -> int:
    from lbi_ros.config import with_overrides
    from lbi_ros.evaluation.detector_input import detector_eval_set
    from lbi_ros.evaluation.peer import (
        DEFAULT_OFFSETS_PATH,
        fit_joint_offsets,
        peer_predictions,
        save_offsets,
    )
    from lbi_ros.synth.dataset import SyntheticDataConfig
    from lbi_ros.synth.noise_fit import fit_noise_config, measure_errors

    data = with_overrides(SyntheticDataConfig(), args.overrides)
    t0 = time.perf_counter()
    detected = detector_eval_set(args.data, args.split, args.num_samples, args.seed, data=data)
    es = detected.eval_set
    stats = measure_errors(es.extras["keypoints_px"], es.extras["keypoints_gt_px"], es.extras["image_size"],
                           int(detected.missed_index.size), min_confidence=data.crop.min_confidence)
    fitted = fit_noise_config(stats, data.noise)
    elapsed = time.perf_counter() - t0
    data_path = Path(args.data)
    shown = ["lbi", "bench", "detector-noise", "--data", f"<cache>/{data_path.name}", "--split", args.split,
             "--num-samples", str(args.num_samples), "--seed", str(args.seed)]
    shown += [f"--set {o}" for o in args.overrides if not o.startswith("mesh.assets_dir")]
    command = " ".join(shown)
    summary = stats.as_dict()
    print(f"{stats.num_detected} of {stats.num_rendered} people found ({100 * (1 - stats.miss_rate):.1f} %), "
          f"{elapsed:.0f} s")
    for key, value in summary.items():
        if key != "joint_rms":
            print(f"{key:>20}: {value:.4f}" if isinstance(value, float) else f"{key:>20}: {value}")
    print(f"fitted noise: {fitted}")
    if args.config:
        Path(args.config).parent.mkdir(parents=True, exist_ok=True)
        from dataclasses import replace

        Path(args.config).write_text(_yaml_text(replace(data, noise=fitted), summary, command))
        print(f"wrote {args.config}")
    offsets_path = DEFAULT_OFFSETS_PATH if args.offsets is None else (Path(args.offsets) if args.offsets else None)
    if offsets_path is not None:
        offsets = fit_joint_offsets(peer_predictions(es), es.joints_3d)
        save_offsets(offsets_path, offsets, measured_by=command, num_people=int(len(es)),
                     note="mean of (truth - BlazePose world landmarks mapped to H36M-17) per joint, in the "
                          "predicted person's frame (left, up, forward), metres; lbi_ros/evaluation/peer.py")
        print(f"wrote {offsets_path}")
    if args.json:
        Path(args.json).write_text(json.dumps({"stats": summary, "noise": str(fitted), "command": command,
                                               "argv": sys.argv[1:]}, indent=1))
    return 0
