"""Token embeddings: keypoints (docs/method.md §2.2) and image patches (§2.1).

Keypoint token j of a person, width d::

    visible_j:  T_j = Linear(4 -> d)([x_crop, y_crop, x_cam, y_cam]) + PE(x_crop, y_crop) + E_joint[j] + C
    missing_j:  T_j = m                                                                + E_joint[j] + C

with ``C = Linear(4 -> d)(crop_cam)`` the crop box in camera-normalised terms, **added to every keypoint
token** (our choice over an extra token: it keeps N = 17 and costs one matmul per person; together with
the camera-normalised keypoints it lets the lifter tell a near small person from a far tall one). A joint
is missing when its confidence is <= ``min_confidence``; its coordinates are never read (they are
replaced by zeros before any arithmetic, so NaN coordinates cannot leak) and it gets the learned token
``m`` and no positional encoding. With ``use_confidence`` the projection takes the confidence as a 5th input.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lbi_ros.model.position import SineCosineEncoding2d


class KeypointEmbedding(nn.Module):
    """(keypoints_crop (B, J, 3), keypoints_cam (B, J, 2), crop_cam (B, 4)) -> keypoint tokens (B, J, d)."""

    def __init__(
        self,
        num_joints: int,
        dim: int,
        position: SineCosineEncoding2d,
        *,
        use_confidence: bool = False,
        min_confidence: float = 0.0,
    ) -> None:
        super().__init__()
        self.use_confidence = use_confidence
        self.min_confidence = float(min_confidence)
        self.coord_proj = nn.Linear(5 if use_confidence else 4, dim)
        self.crop_cam_proj = nn.Linear(4, dim, bias=False)  # coord_proj's bias already covers the offset
        self.missing_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.joint_embed = nn.Parameter(torch.zeros(1, num_joints, dim))
        self.position = position
        nn.init.trunc_normal_(self.missing_token, std=0.02)
        nn.init.trunc_normal_(self.joint_embed, std=0.02)

    def forward(self, keypoints_crop: Tensor, keypoints_cam: Tensor, crop_cam: Tensor) -> Tensor:
        confidence = keypoints_crop[..., 2:3]  # (B, J, 1)
        visible = confidence > self.min_confidence  # (B, J, 1) bool
        # Zero the inputs of missing joints *before* any arithmetic: where() selects in forward, but the
        # weight gradient multiplies the raw inputs, so a NaN there would poison it (NaN * 0 = NaN).
        xy_crop = torch.where(visible, keypoints_crop[..., 0:2], 0.0)  # (B, J, 2), missing -> 0
        xy_cam = torch.where(visible, keypoints_cam, 0.0)  # (B, J, 2)
        if self.use_confidence:
            features = [xy_crop, xy_cam, torch.where(visible, confidence, 0.0)]
        else:
            features = [xy_crop, xy_cam]
        coords = self.coord_proj(torch.cat(features, dim=-1)) + self.position(xy_crop)  # (B, J, d)
        tokens = torch.where(visible, coords, self.missing_token)  # (B, J, d)
        return tokens + self.joint_embed + self.crop_cam_proj(crop_cam).unsqueeze(1)


class PatchEmbedding(nn.Module):
    """image_crop (B, 3, H, W) -> patch tokens (B, HW, d): encoder, 1x1 projection C -> d, flatten, + PE."""

    def __init__(self, encoder: nn.Module, dim: int, position: SineCosineEncoding2d, num_patches: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.proj = nn.Conv2d(encoder.out_channels, dim, kernel_size=1)
        self.position = position
        self.dim = dim
        self.num_patches = num_patches

    def forward(self, image_crop: Tensor) -> Tensor:
        features = self.proj(self.encoder(image_crop))  # (B, d, Hg, Wg)
        tokens = features.reshape(-1, self.dim, self.num_patches).transpose(1, 2)  # (B, HW, d), row-major
        return tokens + self.position.patch_encoding
