"""``Lift2DLifter``: the 2D-only baseline the LBI lifter is judged against.

Same keypoint tokens (coordinates, joint embedding, sine PE, crop_cam, missing-joint token) and the same
heads as :class:`lbi_ros.model.lifter.LBILifter`, but no image branch: ``depth_lift2d`` pre-LN layers of
keypoint self-attention + MLP (ratio ``mlp_ratio_lift2d``). The defaults (7 layers, ratio 3.5) put it
within about 1% of the full model's parameter count, so a comparison measures the image, not capacity.
It has no stage 1, hence no coarse output.
"""

from __future__ import annotations

from torch import Tensor, nn

from lbi_ros.model.config import ModelConfig
from lbi_ros.model.layers import TransformerLayer, drop_path_rates, init_weights
from lbi_ros.model.lifter import (
    LifterOutput,
    LogVarHead,
    PoseHead,
    keypoint_embedding,
    position_without_image,
)


class Lift2DLifter(nn.Module):
    """2D-only lifter. Takes (and ignores) ``image_crop`` so every lifter shares one call signature."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.kind != "lift2d":
            raise ValueError(f"Lift2DLifter needs kind 'lift2d', got {config.kind!r}")
        self.config = c = config
        self.keypoint_embed = keypoint_embedding(c, position_without_image(c))
        self.layers = nn.ModuleList(
            TransformerLayer(
                c.dim, c.num_heads, c.mlp_ratio_lift2d,
                num_joints=c.num_joints, num_patches=None,
                qkv_bias=c.qkv_bias, attn_drop=c.attn_drop, proj_drop=c.proj_drop, drop_path=rate,
            )
            for rate in drop_path_rates(c.drop_path, c.depth_lift2d)
        )
        self.head = PoseHead(c.dim)
        self.logvar_head = LogVarHead(c.dim, c.num_joints, c.logvar_min, c.logvar_max)
        self.apply(init_weights)

    def forward(
        self, image_crop: Tensor | None, keypoints_crop: Tensor, keypoints_cam: Tensor, crop_cam: Tensor
    ) -> LifterOutput:
        """keypoints_crop (B, J, 3), keypoints_cam (B, J, 2), crop_cam (B, 4); image_crop is ignored."""
        tokens = self.keypoint_embed(keypoints_crop, keypoints_cam, crop_cam)  # (B, J, d)
        for layer in self.layers:
            tokens, _, _ = layer(tokens, None)
        return LifterOutput(self.head(tokens), self.logvar_head(tokens), None)
