"""``lbi eval CKPT --data DIR [--split test] [--json PATH] [--out DIR]``: score a checkpoint.

CKPT is a ``.safetensors`` checkpoint or ``default`` / ``baseline-2d`` (the weights shipped in
``lbi_ros/weights``). DIR is a mocap cache (``lbi data prepare-mocap``; rendered with a fixed seed and
without crop-box jitter, from the ``test`` split unless ``--split`` says otherwise: held-out styles, same
actors, see :mod:`lbi_ros.mocap.clips`) or, with ``--benchmark``, a Human3.6M / MPI-INF-3DHP data config
(YAML, see ``config/train/eval_h36m.yaml`` and ``config/train/eval_3dhp.yaml``; paths with ``--set
key=value``). Benchmark protocols (per-action Human3.6M MPJPE, 3DHP PCK/AUC on the universal skeleton):
:mod:`lbi_ros.evaluation.core`. An ``lbi_gated`` checkpoint is scored on the same rendered samples with the shared
256x256 square crop as its image (:func:`lbi_ros.training.square_crops.square_eval_set`).

``--keypoints detector`` (mocap cache only) feeds the lifter the built-in BlazePose detector's 2D on the
rendered people instead of the synthetic noise, scores only the people it finds and reports the detection
rate (:mod:`lbi_ros.evaluation.detector_input`). CKPT ``blazepose-world`` scores the landmark model's own
3D world landmarks on those people (:mod:`lbi_ros.evaluation.peer`).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("lbi.eval")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a checkpoint on held-out data")
    parser.add_argument("checkpoint", help="checkpoint file, or 'default' / 'baseline-2d' (shipped weights)")
    parser.add_argument("--data", required=True, help="mocap cache folder, or a benchmark YAML with --benchmark")
    parser.add_argument("--split", choices=("train", "val", "test"), default=None,
                        help="mocap cache split (default: test, the held-out styles; same actors as training)")
    parser.add_argument("--benchmark", choices=("h36m", "3dhp"), default=None,
                        help="--data is a benchmark data config (H36MConfig / MPI3DHPConfig YAML)")
    parser.add_argument("--num-samples", type=int, default=5000, help="rendered samples (mocap cache)")
    parser.add_argument("--seed", type=int, default=2024, help="rendering seed (mocap cache)")
    parser.add_argument("--latency-repeats", type=int, default=30,
                        help="batch-1 latency timing calls (0 = skip)")
    parser.add_argument("--output", choices=("refined", "coarse"), default="refined")
    parser.add_argument("--keypoints", choices=("synthetic", "detector"), default="synthetic",
                        help="mocap cache: 2D input from the synthetic noise model, or from the built-in BlazePose "
                             "detector run on the rendered people (only found people are scored; the detection "
                             "rate is reported). CKPT 'blazepose-world' (the landmark model's own 3D) implies detector")
    parser.add_argument("--images", choices=("real", "shuffled", "blank"), default="real",
                        help="also score with each sample given another sample's crop (shuffled) or a grey crop "
                             "(blank), and report the MPJPE increase (reliance on the image)")
    parser.add_argument("--runtime", choices=("torch", "onnxruntime", "onnxruntime-int8"), default="torch",
                        help="score the PyTorch model (default) or its deployed graph in ONNX Runtime on the CPU, "
                             "fp32 or with the int8 image backbone (lbi_ros.runtime.precision), as the node runs it")
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
    from lbi_ros.evaluation.report import SUMMARY_KEYS
    from lbi_ros.model.build import count_parameters
    from lbi_ros.weights import resolve_checkpoint

    if args.checkpoint == "blazepose-world":  # the peer model (issue 16): no checkpoint to load
        return _evaluate_peer(args)
    path = resolve_checkpoint(args.checkpoint)
    model, ckpt = load_model(path)
    detected = None
    square = ckpt.model_config.kind == "lbi_gated"  # reads the shared 256x256 square crop, not the 128x96 one
    if square and args.benchmark:
        raise ValueError("an lbi_gated checkpoint is scored on rendered square crops: use a mocap cache "
                         "(no --benchmark)")
    if args.benchmark:
        if args.keypoints == "detector":
            raise ValueError("--keypoints detector renders the people it detects: it needs a mocap cache, not --benchmark")
        eval_set = _benchmark_set(args)
    else:
        from lbi_ros.config import with_overrides
        from lbi_ros.synth.dataset import SyntheticDataConfig

        # --set on a mocap cache overrides the rendering (SyntheticDataConfig), e.g. --set mesh.fraction=1
        data = with_overrides(SyntheticDataConfig(), args.overrides)
        split = args.split or "test"
        print(f"split: {split}{' (default)' if args.split is None else ''}"
              f"{' - held-out styles, same actors' if split == 'test' else ''}")
        if args.keypoints == "detector":  # issue 17: the built-in detector's 2D (lbi_ros/evaluation/detector_input.py)
            from lbi_ros.evaluation.detector_input import detector_eval_set
            from lbi_ros.training.square_crops import square_detector_eval_set

            detected = (square_detector_eval_set if square else detector_eval_set)(args.data, split, args.num_samples,
                                                                                   args.seed, data=data)
            eval_set = detected.eval_set
        elif square:  # the same samples, image_crop = the square crop rendered as for training
            from lbi_ros.training.square_crops import square_eval_set

            eval_set = square_eval_set(args.data, split, args.num_samples, args.seed, data=data)
        else:
            eval_set = rendered_eval_set(args.data, split, args.num_samples, args.seed, data=data)
    params = count_parameters(model)
    if args.runtime != "torch":  # the same samples and metrics, through the deployed graph
        from lbi_ros.evaluation.core import BackendLifter
        from lbi_ros.runtime.factory import create_backend

        model = BackendLifter(create_backend(path, "onnxruntime", device="cpu",
                                             precision="int8" if args.runtime.endswith("int8") else "fp32"))
    with torch.inference_mode():
        metrics, predicted = evaluate_model(model, eval_set, output=args.output)
        if args.latency_repeats > 0:
            metrics["latency_ms_batch1"] = latency_ms(model, eval_set, args.latency_repeats)
    metrics["checkpoint"] = str(path)
    metrics["runtime"] = args.runtime
    metrics["model_kind"] = ckpt.model_config.kind
    metrics["params"] = params
    if args.images != "real":
        metrics.update(_image_reliance(model, eval_set, args.images, args.output, metrics["mpjpe_mm"]))
    if detected is not None:
        metrics.update(detected.summary())
        print(f"{'detection_rate':>16}: {metrics['detection_rate']:.2f} % ({metrics['num_detected']} of "
              f"{metrics['num_rendered']} people found; missed ones are left out, not scored)")
    for key in SUMMARY_KEYS:
        print(f"{key:>16}: {metrics[key]:.2f}" if isinstance(metrics[key], float) else f"{key:>16}: {metrics[key]}")
    if metrics["averaged_over"] != "sample":  # Human3.6M: per-action average above, per-sample mean beside it
        print(f"{'':>16}  (mean over {metrics['averaged_over']}s; over samples MPJPE "
              f"{metrics['mpjpe_mm_per_sample']:.2f}, P-MPJPE {metrics['p_mpjpe_mm_per_sample']:.2f})")
    _write_outputs(args, metrics, eval_set, predicted, f"lbi eval {args.checkpoint}")
    return 0


def _benchmark_set(args: argparse.Namespace):  # noqa: ANN202 - EvalSet, imported lazily
    from lbi_ros.config import load_yaml
    from lbi_ros.evaluation import benchmark_eval_set

    if args.benchmark == "h36m":
        from lbi_ros.datasets.h36m import H36MConfig, Human36MDataset

        dataset = Human36MDataset(load_yaml(H36MConfig, args.data, args.overrides))
        return benchmark_eval_set("h36m", dataset, ("action", "subject"), average_over="action")
    from lbi_ros.datasets.mpi_inf_3dhp import PCK_JOINTS, MPI3DHPConfig, MPI3DHPDataset

    dataset = MPI3DHPDataset(load_yaml(MPI3DHPConfig, args.data, args.overrides))
    return benchmark_eval_set("mpi_inf_3dhp", dataset, ("scene", "sequence"), pck_target="joints_3d_univ",
                              pck_joints=PCK_JOINTS)


def _evaluate_peer(args: argparse.Namespace) -> int:
    """``lbi eval blazepose-world``: the landmark model's world landmarks on the people the detector finds
    (lbi_ros/evaluation/peer.py), with and without the train-split joint offsets."""
    from lbi_ros.config import with_overrides
    from lbi_ros.evaluation.detector_input import detector_eval_set
    from lbi_ros.evaluation.peer import DEFAULT_OFFSETS_PATH, evaluate_peer, load_offsets
    from lbi_ros.evaluation.report import SUMMARY_KEYS
    from lbi_ros.synth.dataset import SyntheticDataConfig

    if args.benchmark:
        raise ValueError("blazepose-world runs the landmark model on rendered people: it needs a mocap cache")
    split = args.split or "test"
    print(f"split: {split}{' (default)' if args.split is None else ''}")
    data = with_overrides(SyntheticDataConfig(), args.overrides)
    detected = detector_eval_set(args.data, split, args.num_samples, args.seed, data=data)
    offsets = load_offsets(DEFAULT_OFFSETS_PATH) if DEFAULT_OFFSETS_PATH.is_file() else None
    if offsets is None:
        log.warning("%s missing (lbi bench detector-noise writes it): no joint offsets", DEFAULT_OFFSETS_PATH)
    metrics, predicted = evaluate_peer(detected.eval_set, offsets)
    metrics.update(detected.summary())
    metrics.update(checkpoint="blazepose-world", model_kind="blazepose_world", dataset=detected.eval_set.name)
    for key in SUMMARY_KEYS:
        print(f"{key:>16}: {metrics[key]:.2f}" if isinstance(metrics[key], float) else f"{key:>16}: {metrics[key]}")
    if "without_offsets" in metrics:
        raw = metrics["without_offsets"]
        print(f"{'':>16}  (without the train-split joint offsets: MPJPE {raw['mpjpe_mm']:.2f}, "
              f"P-MPJPE {raw['p_mpjpe_mm']:.2f}, depth {raw['depth_mpjpe_mm']:.2f}, PCK150 {raw['pck150']:.2f})")
    print(f"{'detection_rate':>16}: {metrics['detection_rate']:.2f} % ({metrics['num_detected']} of "
          f"{metrics['num_rendered']} people found; missed ones are left out, not scored)")
    _write_outputs(args, metrics, detected.eval_set, predicted, "lbi eval blazepose-world")
    return 0


def _image_reliance(model, eval_set, images: str, output: str, mpjpe_real: float) -> dict:  # noqa: ANN001
    """MPJPE with the crops replaced (:mod:`lbi_ros.evaluation.reliance`) and its increase over real crops."""
    import torch

    from lbi_ros.evaluation import evaluate_model
    from lbi_ros.evaluation.reliance import with_images

    with torch.inference_mode():
        changed, _ = evaluate_model(model, with_images(eval_set, images), output=output)  # type: ignore[arg-type]
    increase = 100.0 * (changed["mpjpe_mm"] / mpjpe_real - 1.0)
    print(f"{'images':>16}: {images}: MPJPE {changed['mpjpe_mm']:.2f} mm ({increase:+.1f} % vs real crops)")
    return {"images": images, f"mpjpe_mm_images_{images}": changed["mpjpe_mm"],
            f"p_mpjpe_mm_images_{images}": changed["p_mpjpe_mm"], "mpjpe_increase_pct": increase}


def _write_outputs(args: argparse.Namespace, metrics: dict, eval_set: Any, predicted: Any, title: str) -> None:
    """``--json`` (the metrics) and ``--out`` (report.md/report.json and plots), for every kind of model."""
    from lbi_ros.evaluation.report import write_report  # matplotlib: only when a report is asked for

    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(metrics, indent=1))
    if args.out:
        write_report(metrics, eval_set, predicted, args.out, title=title)
        log.info("report in %s", args.out)
