"""``GatedLBILifter``: the 2D-only lifter, plus image blocks that add nothing until training opens their gates.

Why (issue 18): the from-scratch LBI was 1.25x *worse* than the matched 2D-only lifter. This design cannot
start worse: its keypoint path *is* :class:`~lbi_ros.model.baseline.Lift2DLifter` (same module names, so the
shipped ``lift2d-base`` weights load into ``lift``), and every image block adds ``gate * update`` with
``gate`` a zero-initialised per-channel vector. At initialisation the output equals the 2D-only lifter's
bit for bit (``x + 0 * u == x``); the gates receive gradient from the first step, the blocks behind them
from the second. The paper's parts (docs/method.md §2.4-§2.7) sit in the blocks::

    keypoints -> lift2d layers 0..6 (keypoint self-attention + MLP), and after layer gated_after[k]:
      k = 0:      PGTL-style block: one map A (keypoints -> patches) updates the keypoints (gated) and,
                  transposed, the patches (A^T V_J, the pose-guided patch update)
      k = 1..K-2: cross-attention block over all patches; the last of these returns its map for the AFSM
      k = K-1:    "stage 2": cross-attention over the top-k patches the AFSM kept (keep_ratio of them)
    image -> frozen pose backbone tap (B, C, g, g) -> LayerNorm(C) -> Linear(C -> d) + PE(patch centres)

Each block: ``x += gate_a * MCA(LN(x) + PE_img(kp), LN(p)); x += gate_m * MLP(LN(x))``. ``PE_img`` is the
sine-cosine encoding of the *square crop's* grid, evaluated at the keypoint's square-crop coordinate
``(x * w/h, y)`` (the square shares the box's centre and height, :func:`lbi_ros.pose2d.roi.person_roi_from_box`)
and at the patch centres, so keypoints and patches are aligned without learning.

Training reads cached backbone features through :meth:`GatedLBILifter.forward_features` (the backbone is
frozen, :mod:`lbi_ros.training.feature_cache`); :meth:`forward` runs the backbone itself (export, node).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from lbi_ros.model.afsm import TokenSelector
from lbi_ros.model.baseline import Lift2DLifter
from lbi_ros.model.config import ModelConfig
from lbi_ros.model.encoder import ENCODERS
from lbi_ros.model.layers import Attention, Mlp, PoseGuidedAttention, init_weights
from lbi_ros.model.lifter import LifterOutput
from lbi_ros.model.position import SineCosineEncoding2d, receptive_field_centres


class GatedImageBlock(nn.Module):
    """Keypoint tokens read image tokens; the result is added through zero-initialised gates.

    ``pose_guided``: the PGTL's dual attention (the same map, transposed, updates the patches; ungated,
    since it reaches the output only through later, gated blocks). ``need_map``: return the (B, H, N, M)
    map (the AFSM scores it).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, *, num_joints: int, num_patches: int,
                 pose_guided: bool = False, need_map: bool = False, qkv_bias: bool = True) -> None:
        super().__init__()
        self.pose_guided = pose_guided
        self.need_map = need_map
        self.norm_query = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        if pose_guided:
            self.attn: nn.Module = PoseGuidedAttention(dim, num_heads, qkv_bias, num_queries=num_joints,
                                                       num_keys=num_patches)
        else:
            self.attn = Attention(dim, num_heads, qkv_bias, num_queries=num_joints, num_keys=num_patches,
                                  fused=not need_map)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(round(dim * mlp_ratio)))
        self.gate_attn = nn.Parameter(torch.zeros(dim))
        self.gate_mlp = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor, query_pe: Tensor, patches: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """x (B, N, d), query_pe (B, N, d), patches (B, M, d) -> (x, patches, map (B, H, N, M) or None)."""
        q = self.norm_query(x) + query_pe
        p = self.norm_context(patches)
        attn = None
        if self.pose_guided:
            dx, dp, attn = self.attn(q, p)
            patches = patches + dp
        else:
            dx, attn = self.attn(q, p, need_weights=self.need_map)
        x = x + self.gate_attn * dx
        x = x + self.gate_mlp * self.mlp(self.norm_mlp(x))
        return x, patches, attn


class GatedLBILifter(nn.Module):
    """The gated LBI lifter. Build it with :func:`lbi_ros.model.build_model` (``kind: lbi_gated``).

    ``external_state_prefixes``: the frozen backbone is rebuilt from the pinned BlazePose file at
    construction, so checkpoints never store it (:func:`lbi_ros.checkpoint.save_checkpoint`).
    """

    external_state_prefixes = ("backbone.",)

    def __init__(self, config: ModelConfig, with_backbone: bool = True) -> None:
        super().__init__()
        if config.kind != "lbi_gated":
            raise ValueError(f"GatedLBILifter needs kind 'lbi_gated', got {config.kind!r}")
        self.config = c = config
        d = c.dim
        self.lift = Lift2DLifter(replace(c, kind="lift2d"))
        if c.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {c.encoder!r}; registered: {sorted(ENCODERS)}")
        backbone = ENCODERS[c.encoder](c)
        self.backbone: nn.Module | None = backbone if with_backbone else None
        stride, channels = int(backbone.stride), int(backbone.out_channels)
        if c.image_size % stride:
            raise ValueError(f"image_size {c.image_size} is not divisible by the backbone stride {stride}")
        grid = c.image_size // stride
        self.num_patches = grid * grid
        offset = float(getattr(backbone, "patch_offset_px", (stride - 1) / 2))
        centres = receptive_field_centres(grid, grid, stride, offset) if c.patch_centres == "receptive_field" else None
        self.image_position = SineCosineEncoding2d(d, grid, grid, centres)
        self.feature_norm = nn.LayerNorm(channels)
        self.feature_proj = nn.Linear(channels, d)
        self.feature_channels = channels
        # keypoint (x, y) in the box crop -> in the square crop: same centre and height (person_roi_from_box)
        self.register_buffer("to_square", torch.tensor([c.crop_width / c.crop_height, 1.0]), persistent=False)

        n_blocks = len(c.gated_after)
        self.num_keep = max(1, round(c.keep_ratio * self.num_patches))
        prune = n_blocks >= 3 and self.num_keep < self.num_patches
        self.selector = TokenSelector(self.num_patches, self.num_keep, d) if prune else None
        blocks = []
        for k in range(n_blocks):
            is_stage2 = prune and k == n_blocks - 1
            blocks.append(GatedImageBlock(
                d, c.num_heads, c.mlp_ratio, num_joints=c.num_joints,
                num_patches=self.num_keep if is_stage2 else self.num_patches,
                pose_guided=c.pgtl and k == 0, need_map=prune and k == n_blocks - 2, qkv_bias=c.qkv_bias))
        self.blocks = nn.ModuleList(blocks)
        self.block_at = {layer: k for k, layer in enumerate(c.gated_after)}
        for module in (self.blocks, self.feature_norm, self.feature_proj):
            module.apply(init_weights)
        for block in self.blocks:  # init_weights does not know the gates; keep them exactly zero
            nn.init.zeros_(block.gate_attn)
            nn.init.zeros_(block.gate_mlp)

    # ------------------------------------------------------------------------------------------------
    def image_tokens(self, features: Tensor) -> Tensor:
        """Backbone features (B, C, g, g) -> image tokens (B, g*g, d), row-major, with the patch PE."""
        tokens = features.reshape(-1, self.feature_channels, self.num_patches).transpose(1, 2)  # (B, M, C)
        return self.feature_proj(self.feature_norm(tokens)) + self.image_position.patch_encoding

    def forward(self, image_crop: Tensor | None, keypoints_crop: Tensor, keypoints_cam: Tensor,
                crop_cam: Tensor) -> LifterOutput:
        """image_crop (B, 3, S, S): the shared square person crop, ImageNet-normalised; the rest as every lifter."""
        if self.backbone is None:
            raise RuntimeError("this GatedLBILifter was built without its backbone: call forward_features")
        if image_crop is None:
            raise ValueError("this lifter reads the image: image_crop must be given")
        with torch.no_grad():
            features = self.backbone(image_crop)  # (B, C, g, g), frozen
        return self.forward_features(features, keypoints_crop, keypoints_cam, crop_cam)

    def forward_features(self, features: Tensor, keypoints_crop: Tensor, keypoints_cam: Tensor,
                         crop_cam: Tensor) -> LifterOutput:
        """The lifter on precomputed backbone features (B, C, g, g) (the feature cache)."""
        lift = self.lift
        tokens = lift.keypoint_embed(keypoints_crop, keypoints_cam, crop_cam)  # (B, J, d)
        visible = keypoints_crop[..., 2:3] > lift.keypoint_embed.min_confidence  # (B, J, 1)
        xy_square = torch.where(visible, keypoints_crop[..., 0:2], 0.0) * self.to_square  # (B, J, 2)
        query_pe = torch.where(visible, self.image_position(xy_square), 0.0)  # (B, J, d); none when missing
        patches = self.image_tokens(features)  # (B, M, d)
        attention = None
        for i, layer in enumerate(lift.layers):
            tokens, _, _ = layer(tokens, None)
            k = self.block_at.get(i)
            if k is None:
                continue
            if self.selector is not None and k == len(self.blocks) - 1:
                patches = self.selector(patches, attention)[0]  # (B, K, d), AFSM top-k (§2.6)
            tokens, patches, block_map = self.blocks[k](tokens, query_pe, patches)
            attention = block_map if block_map is not None else attention
        return LifterOutput(lift.head(tokens), lift.logvar_head(tokens), None)

    def load_lift2d(self, state_dict: dict[str, Tensor]) -> None:
        """Warm start: the matched 2D-only lifter's weights into the keypoint path (strict)."""
        self.lift.load_state_dict(state_dict, strict=True)

    def image_parameters(self) -> list[nn.Parameter]:
        """What the image adds (blocks, feature norm/projection); the backbone is frozen and excluded."""
        return [p for m in (self.blocks, self.feature_norm, self.feature_proj) for p in m.parameters()]
