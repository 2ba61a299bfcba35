"""Evaluation: the one code path behind ``lbi eval`` and training's validation (see :mod:`.core`)."""

from lbi_ros.evaluation.core import (
    compute_metrics,
    evaluate_model,
    latency_ms,
    predict,
    viewpoint_azimuth_deg,
)
from lbi_ros.evaluation.sets import EvalSet, benchmark_eval_set, rendered_eval_set, stack_samples

__all__ = [
    "EvalSet", "benchmark_eval_set", "compute_metrics", "evaluate_model", "latency_ms", "predict",
    "rendered_eval_set", "stack_samples", "viewpoint_azimuth_deg",
]
