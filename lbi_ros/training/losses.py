"""Training losses on root-relative joints in metres (docs/method.md §2.8).

All take ``predicted``/``target`` (B, J, 3) and return a scalar tensor. Joint 0 (the pelvis) is zero in
both by construction; it is kept in the means so the pose loss equals the reported MPJPE exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lbi_ros.skeleton import H36M17
from lbi_ros.training.config import LossConfig

_PARENTS = torch.tensor([max(p, 0) for p in H36M17.parents])
_CHILDREN = torch.tensor([j for j, p in enumerate(H36M17.parents) if p >= 0])


def mpjpe_loss(predicted: Tensor, target: Tensor) -> Tensor:
    """Mean per-joint Euclidean error (m): the reported metric (Protocol 1) as a loss."""
    return (predicted - target).square().sum(-1).add(1e-12).sqrt().mean()


def mse_loss(predicted: Tensor, target: Tensor) -> Tensor:
    """Mean per-joint *squared* Euclidean error (m^2), the paper's "MSE" reading (§2.8)."""
    return (predicted - target).square().sum(-1).mean()


def gaussian_nll(predicted: Tensor, target: Tensor, logvar: Tensor) -> Tensor:
    """NLL of an isotropic Gaussian per joint with per-coordinate variance exp(logvar) (B, J), constants dropped:
    0.5 * (|e|^2 / var + 3 * logvar), averaged over joints 1..J-1 (the root carries no information).

    The error is detached: this term calibrates the uncertainty head without pulling the pose estimate.
    """
    sq = (predicted.detach() - target).square().sum(-1)[:, 1:]  # (B, J-1)
    lv = logvar[:, 1:]
    return 0.5 * (sq * torch.exp(-lv) + 3.0 * lv).mean()


def bone_length_loss(predicted: Tensor, target: Tensor) -> Tensor:
    """Mean absolute difference of the H36M-17 bone lengths (m)."""
    children = _CHILDREN.to(predicted.device)
    parents = _PARENTS.to(predicted.device)[children]

    def lengths(x: Tensor) -> Tensor:
        return (x[:, children] - x[:, parents]).square().sum(-1).add(1e-12).sqrt()  # (B, bones)

    return (lengths(predicted) - lengths(target)).abs().mean()


def pose_loss(
    config: LossConfig, predicted: Tensor, target: Tensor, logvar: Tensor | None = None
) -> tuple[Tensor, dict[str, float]]:
    """Total loss for the head being trained and its parts (floats, for logging)."""
    point = mpjpe_loss(predicted, target) if config.pose == "mpjpe" else mse_loss(predicted, target)
    total = point
    parts = {f"loss/{config.pose}": float(point.detach())}
    if logvar is not None and config.nll_weight > 0:
        nll = gaussian_nll(predicted, target, logvar)
        total = total + config.nll_weight * nll
        parts["loss/nll"] = float(nll.detach())
    if config.bone_weight > 0:
        bone = bone_length_loss(predicted, target)
        total = total + config.bone_weight * bone
        parts["loss/bone"] = float(bone.detach())
    parts["loss/total"] = float(total.detach())
    return total, parts
