"""Evaluation reports: JSON + markdown + plots (per-joint errors, error vs viewpoint, example predictions).

Plots use matplotlib's Agg backend (no display needed); everything is written under one output folder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lbi_ros.evaluation.sets import EvalSet
from lbi_ros.skeleton import H36M17, H36M_LEFT, H36M_RIGHT

log = logging.getLogger(__name__)

SUMMARY_KEYS = ("mpjpe_mm", "p_mpjpe_mm", "n_mpjpe_mm", "depth_mpjpe_mm", "pck150", "auc", "num_samples")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: Path) -> None:
    """Lay out, write and release a report figure."""
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    _plt().close(fig)


def _bone_color(child: int) -> str:
    return "tab:orange" if child in H36M_LEFT else "tab:blue" if child in H36M_RIGHT else "tab:green"


def skeleton_figure(predicted: np.ndarray, target: np.ndarray, title: str = "") -> Any:
    """3D figure, one panel per pose: target (solid, coloured by side) vs prediction (dashed red). Metres."""
    plt = _plt()
    n = len(predicted)
    fig = plt.figure(figsize=(3 * n, 3.2))
    for i in range(n):
        ax = fig.add_subplot(1, n, i + 1, projection="3d")
        for p, c in H36M17.bones:
            for pose, style in ((target[i], "-"), (predicted[i], "--")):
                color = _bone_color(c) if style == "-" else "tab:red"
                # camera axes (x right, y down, z forward) drawn as x, z (depth), -y (up)
                ax.plot([pose[p, 0], pose[c, 0]], [pose[p, 2], pose[c, 2]], [-pose[p, 1], -pose[c, 1]],
                        style, color=color, lw=1.5)
        ax.set_xlim(-1, 1), ax.set_ylim(-1, 1), ax.set_zlim(-1, 1)
        ax.set_xlabel("x"), ax.set_ylabel("z (depth)")
        ax.view_init(elev=10, azim=-70)
    if title:
        fig.suptitle(title + "  (solid: true, dashed red: predicted)")
    fig.tight_layout()
    return fig


def plot_learning_curve(metrics_files: Sequence[Path], out: Path, labels: Sequence[str] | None = None,
                        xlabel: str = "wall time (min)") -> None:
    """Validation MPJPE (mm) vs wall time (min) from one or more runs' ``metrics.jsonl``."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for i, path in enumerate(metrics_files):
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        val = [r for r in rows if "val/mpjpe_mm" in r]
        if not val:
            continue
        label = labels[i] if labels else Path(path).parent.name
        ax.plot([r["elapsed_s"] / 60 for r in val], [r["val/mpjpe_mm"] for r in val], "o-", ms=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation MPJPE (mm)")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, out)


def _per_joint_plot(metrics: dict[str, Any], out: Path) -> None:
    plt = _plt()
    names = list(metrics["per_joint_mm"])
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar(x - 0.2, [metrics["per_joint_mm"][n] for n in names], 0.4, label="MPJPE")
    ax.bar(x + 0.2, [metrics["per_joint_depth_mm"][n] for n in names], 0.4, label="depth (|dz|)")
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("error (mm)")
    ax.legend()
    _save(fig, out)


def _azimuth_plot(metrics: dict[str, Any], out: Path) -> None:
    plt = _plt()
    bins = metrics["by_azimuth"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    az = [b["azimuth_deg"] for b in bins]
    ax.plot(az, [b["mpjpe_mm"] for b in bins], "o-", label="MPJPE")
    ax.plot(az, [b["depth_mpjpe_mm"] for b in bins], "s-", label="depth (|dz|)")
    ax.set_xlabel("camera azimuth around the person (deg; 0 = facing the camera)")
    ax.set_ylabel("error (mm)")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, out)


def _examples_plot(eval_set: EvalSet, predicted: np.ndarray, out: Path, count: int = 12) -> None:
    """Crops with the true (green) and predicted (red) skeletons projected with the true root and camera."""
    from lbi_ros.geometry import Intrinsics, project
    from lbi_ros.preprocess import CropBox

    plt = _plt()
    if not {"root_cam", "box", "intrinsics"} <= set(eval_set.extras):
        log.warning("evaluation set lacks root/box/intrinsics: no example grid")
        return
    idx = np.linspace(0, len(eval_set) - 1, min(count, len(eval_set))).astype(int)
    cols = 6
    rows = int(np.ceil(len(idx) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 2.1), squeeze=False)
    mean, std = np.array(eval_set.crop_mean), np.array(eval_set.crop_std)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, idx, strict=False):
        image = eval_set.inputs["image_crop"][i].transpose(1, 2, 0) * std + mean
        h, w = image.shape[:2]
        ax.imshow(np.clip(image, 0, 1))
        box = CropBox.from_array(eval_set.extras["box"][i])
        intr = Intrinsics(*map(float, eval_set.extras["intrinsics"][i]))
        root = eval_set.extras["root_cam"][i].astype(np.float64)
        for pose, color in ((eval_set.joints_3d[i], "lime"), (predicted[i], "red")):
            uv = box.to_crop_pixels(project(pose + root, intr), h, w)
            for p, c in H36M17.bones:
                ax.plot([uv[p, 0], uv[c, 0]], [uv[p, 1], uv[c, 1]], color=color, lw=1)
        err = 1000 * float(np.linalg.norm(predicted[i] - eval_set.joints_3d[i], axis=-1).mean())
        ax.set_title(f"{err:.0f} mm", fontsize=8)
        ax.set_xlim(0, w), ax.set_ylim(h, 0)
    fig.suptitle("green: true, red: predicted (true root)", fontsize=9)
    _save(fig, out)


def markdown_report(metrics: dict[str, Any], title: str = "Evaluation") -> str:
    lines = [f"# {title}", "", f"Data: `{metrics.get('dataset', '?')}`, {metrics['num_samples']} samples, "
             f"{metrics.get('output', 'refined')} output.", "",
             "| MPJPE (mm) | P-MPJPE (mm) | N-MPJPE (mm) | depth err (mm) | PCK@150 (%) | AUC (%) |",
             "|---|---|---|---|---|---|",
             f"| {metrics['mpjpe_mm']:.1f} | {metrics['p_mpjpe_mm']:.1f} | {metrics['n_mpjpe_mm']:.1f} | "
             f"{metrics['depth_mpjpe_mm']:.1f} | {metrics['pck150']:.1f} | {metrics['auc']:.1f} |", ""]
    if metrics.get("averaged_over", "sample") != "sample":
        lines += [f"MPJPE and P-MPJPE are means over {metrics['averaged_over']}s of the per-{metrics['averaged_over']} "
                  f"means; over samples they are {metrics['mpjpe_mm_per_sample']:.1f} and "
                  f"{metrics['p_mpjpe_mm_per_sample']:.1f} mm.", ""]
    if "pck_joints" in metrics:
        lines += [f"PCK@150 mm and AUC (0-150 mm, error < threshold) score {len(metrics['pck_joints'])} joints: "
                  f"{', '.join(metrics['pck_joints'])}.", ""]
    for key, groups in metrics.get("per_label", {}).items():
        lines += [f"## Per {key}", "", f"| {key} | n | MPJPE (mm) | depth err (mm) |", "|---|---|---|---|"]
        lines += [f"| {k} | {g['num_samples']} | {g['mpjpe_mm']:.1f} | {g['depth_mpjpe_mm']:.1f} |"
                  for k, g in groups.items()]
        lines.append("")
    lines += ["## Per joint", "", "| joint | MPJPE (mm) | depth err (mm) |", "|---|---|---|"]
    lines += [f"| {n} | {v:.1f} | {metrics['per_joint_depth_mm'][n]:.1f} |" for n, v in metrics["per_joint_mm"].items()]
    lines += ["", "Plots: `per_joint.png`, `viewpoint.png`, `examples.png`.", ""]
    return "\n".join(lines)


def write_report(metrics: dict[str, Any], eval_set: EvalSet, predicted: np.ndarray, out_dir: str | Path,
                 title: str = "Evaluation") -> Path:
    """Write ``report.json``, ``report.md`` and the three plots into ``out_dir``; returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(metrics, indent=1))
    (out / "report.md").write_text(markdown_report(metrics, title))
    _per_joint_plot(metrics, out / "per_joint.png")
    _azimuth_plot(metrics, out / "viewpoint.png")
    _examples_plot(eval_set, predicted, out / "examples.png")
    return out
