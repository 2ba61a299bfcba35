"""``LBILifter``: the two-stage Lifting-by-Image network (docs/method.md §2), readable top to bottom.

    keypoint tokens (§2.2) ─┐
    image -> encoder -> patch tokens (§2.1)
        stage 1 "broad query":  TL -> PGTL -> TL            -> coarse head  -> joints_3d_coarse
        AFSM: top-K patches by the last layer's MCA map (§2.6)
        stage 2 "focused exploration": 3 TLs over detached stage-1 keypoint tokens and the K kept patches
                                                             -> refined head -> joints_3d
                                                             -> log-variance -> joints_logvar

Inputs and outputs follow the I/O contract in :mod:`lbi_ros.runtime.io_spec`: the forward takes
``(image_crop, keypoints_crop, keypoints_cam, crop_cam)`` and returns a :class:`LifterOutput` whose field
names are the contract's output names. Call it with keywords (``model(**inputs)``).

Training schedule (§2.9): train encoder + stage 1 on the coarse head with :meth:`stage1_parameters`, then
:meth:`freeze_stage1` and train :meth:`stage2_parameters` on the refined head (and the log-variance).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor, nn

from lbi_ros.model.afsm import TokenSelector
from lbi_ros.model.config import ModelConfig
from lbi_ros.model.encoder import build_encoder
from lbi_ros.model.layers import PoseGuidedLayer, TransformerLayer, drop_path_rates, init_weights
from lbi_ros.model.position import SineCosineEncoding2d, receptive_field_centres
from lbi_ros.model.tokens import KeypointEmbedding, PatchEmbedding

# Positional-encoding grid of the 2D-only paths (no encoder to define one): one unit per 8 crop pixels,
# the deployment encoder's stride, so every lifter encodes keypoints identically at 128x96.
PE_STRIDE_WITHOUT_IMAGE = 8


class LifterOutput(NamedTuple):
    """Lifter outputs; field names equal the I/O-contract output names."""

    joints_3d: Tensor
    """(B, J, 3) metres, camera axes (x right, y down, z forward), relative to the pelvis (row 0 is zero)."""
    joints_logvar: Tensor
    """(B, J) per-joint log-variance of ``joints_3d`` in m^2 (row 0, the root, carries no information)."""
    joints_3d_coarse: Tensor | None
    """(B, J, 3) stage-1 pose, same convention; None for the 2D-only baseline."""


class PoseHead(nn.Module):
    """LayerNorm + Linear(d -> 3) per keypoint token, then subtract the predicted pelvis (joint 0).

    No bias: a bias is the same 3-vector on every joint and cancels exactly in the subtraction.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.linear = nn.Linear(dim, 3, bias=False)

    def forward(self, tokens: Tensor) -> Tensor:
        joints = self.linear(self.norm(tokens))  # (B, J, 3)
        return joints - joints[:, 0:1]


class LogVarHead(nn.Module):
    """LayerNorm + Linear(d -> 1) per keypoint token, squashed into [lo, hi] with a sigmoid -> (B, J)."""

    def __init__(self, dim: int, num_joints: int, logvar_min: float, logvar_max: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.linear = nn.Linear(dim, 1)
        self.num_joints = num_joints
        self.low = float(logvar_min)
        self.span = float(logvar_max - logvar_min)

    def forward(self, tokens: Tensor) -> Tensor:
        raw = self.linear(self.norm(tokens)).reshape(-1, self.num_joints)  # (B, J)
        return self.low + self.span * torch.sigmoid(raw)


def keypoint_embedding(config: ModelConfig, position: SineCosineEncoding2d) -> KeypointEmbedding:
    return KeypointEmbedding(
        config.num_joints,
        config.dim,
        position,
        use_confidence=config.use_confidence,
        min_confidence=config.min_confidence,
    )


def position_without_image(config: ModelConfig) -> SineCosineEncoding2d:
    """PE for the 2D-only paths (see :data:`PE_STRIDE_WITHOUT_IMAGE`)."""
    return SineCosineEncoding2d(
        config.dim,
        max(config.crop_height // PE_STRIDE_WITHOUT_IMAGE, 1),
        max(config.crop_width // PE_STRIDE_WITHOUT_IMAGE, 1),
    )


class LBILifter(nn.Module):
    """The LBI network. Build it with :func:`lbi_ros.model.build_model`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.kind != "lbi":
            raise ValueError(f"LBILifter needs kind 'lbi', got {config.kind!r}")
        self.config = config
        c = config
        J, d = c.num_joints, c.dim

        # --- tokens -----------------------------------------------------------------------------------
        if c.use_image:
            encoder = build_encoder(c)
            grid_h, grid_w = c.crop_height // encoder.stride, c.crop_width // encoder.stride
            self.num_patches = grid_h * grid_w
            centres = None
            if c.patch_centres == "receptive_field":
                centres = receptive_field_centres(grid_h, grid_w, encoder.stride,
                                                  float(getattr(encoder, "patch_offset_px", (encoder.stride - 1) / 2)))
            position = SineCosineEncoding2d(d, grid_h, grid_w, centres)
            self.patch_embed: PatchEmbedding | None = PatchEmbedding(encoder, d, position, self.num_patches)
        else:
            self.num_patches = 0
            position = position_without_image(c)
            self.patch_embed = None
        self.keypoint_embed = keypoint_embedding(c, position)

        # --- AFSM geometry, fixed at build --------------------------------------------------------------
        self.num_keep = max(1, round(c.keep_ratio * self.num_patches)) if c.use_image else 0
        prune = c.use_image and c.stage2 and self.num_keep < self.num_patches
        self.selector = (
            TokenSelector(self.num_patches, self.num_keep, d, rest_token=c.rest_token) if prune else None
        )

        # --- stage 1 ----------------------------------------------------------------------------------
        common = dict(qkv_bias=c.qkv_bias, attn_drop=c.attn_drop, proj_drop=c.proj_drop, num_joints=J)
        stage1: list[nn.Module] = []
        for i, rate in enumerate(drop_path_rates(c.drop_path, c.depth_stage1)):
            if c.use_image and c.pgtl and i == c.pgtl_layer:
                stage1.append(
                    PoseGuidedLayer(d, c.num_heads, c.mlp_ratio, num_patches=self.num_patches, drop_path=rate,
                                    **common)
                )
            else:
                stage1.append(
                    TransformerLayer(
                        d, c.num_heads, c.mlp_ratio,
                        num_patches=self.num_patches if c.use_image else None,
                        drop_path=rate,
                        return_attention=prune and i == c.depth_stage1 - 1,
                        **common,
                    )
                )
        self.stage1 = nn.ModuleList(stage1)
        self.coarse_head = PoseHead(d)

        # --- stage 2 ----------------------------------------------------------------------------------
        if c.stage2:
            num_context = self.selector.num_out if self.selector is not None else self.num_patches
            self.stage2: nn.ModuleList | None = nn.ModuleList(
                TransformerLayer(
                    d, c.num_heads, c.mlp_ratio,
                    num_patches=num_context if c.use_image else None,
                    drop_path=rate,
                    **common,
                )
                for rate in drop_path_rates(c.drop_path, c.depth_stage2)
            )
            self.refined_head: PoseHead | None = PoseHead(d)
        else:
            self.stage2 = None
            self.refined_head = None
        self.logvar_head = LogVarHead(d, J, c.logvar_min, c.logvar_max)

        for name, child in self.named_children():
            if name != "patch_embed":
                child.apply(init_weights)
        if self.patch_embed is not None:
            self.patch_embed.proj.apply(init_weights)  # the encoder initialised (or loaded) itself
        self._stage1_frozen = False
        self._encoder_frozen = False

    # ------------------------------------------------------------------------------------------------
    def forward(
        self, image_crop: Tensor | None, keypoints_crop: Tensor, keypoints_cam: Tensor, crop_cam: Tensor
    ) -> LifterOutput:
        """image_crop (B, 3, H, W) or None without an image branch; keypoints_crop (B, J, 3) = crop-normalised
        x, y in [-1, 1] and confidence; keypoints_cam (B, J, 2) camera-normalised; crop_cam (B, 4)."""
        if self.patch_embed is not None and image_crop is None:
            raise ValueError("this lifter reads the image: image_crop must be given")
        grad_context = torch.no_grad() if self._stage1_frozen else contextlib.nullcontext()
        with grad_context:
            tokens = self.keypoint_embed(keypoints_crop, keypoints_cam, crop_cam)  # (B, J, d)
            patches = self.patch_embed(image_crop) if self.patch_embed is not None else None  # (B, HW, d)
            attention = None
            for layer in self.stage1:
                tokens, patches, attention = layer(tokens, patches)
            coarse = self.coarse_head(tokens)  # (B, J, 3)
        if self.stage2 is None:
            return LifterOutput(coarse, self.logvar_head(tokens), coarse)

        if self.config.detach_stage2_input:  # gradient truncation between the stages (§2.7)
            tokens = tokens.detach()
            patches = patches.detach() if patches is not None else None
        context = self.selector(patches, attention)[0] if self.selector is not None else patches  # (B, K, d)
        for layer in self.stage2:
            tokens, _, _ = layer(tokens, context)
        return LifterOutput(self.refined_head(tokens), self.logvar_head(tokens), coarse)

    # --- two-stage schedule ------------------------------------------------------------------------
    def _stage1_modules(self) -> list[nn.Module]:
        modules: list[nn.Module] = [self.keypoint_embed, self.stage1, self.coarse_head]
        if self.patch_embed is not None:
            modules.append(self.patch_embed)
        if self.stage2 is None:
            modules.append(self.logvar_head)  # without stage 2 the uncertainty reads stage-1 tokens
        return modules

    def _stage2_modules(self) -> list[nn.Module]:
        if self.stage2 is None:
            return []
        return [self.stage2, self.refined_head, self.logvar_head]

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        """The image encoder's parameters (for a separate, e.g. 0.1x, learning rate)."""
        if self.patch_embed is not None:
            yield from self.patch_embed.encoder.parameters()

    def stage1_parameters(self, include_encoder: bool = True) -> Iterator[nn.Parameter]:
        """Encoder (optional), token embeddings, stage-1 layers and the coarse head."""
        encoder_ids = {id(p) for p in self.encoder_parameters()}
        for module in self._stage1_modules():
            for p in module.parameters():
                if include_encoder or id(p) not in encoder_ids:
                    yield p

    def stage2_parameters(self) -> Iterator[nn.Parameter]:
        """Stage-2 layers, refined head and uncertainty head (empty when ``stage2`` is off)."""
        for module in self._stage2_modules():
            yield from module.parameters()

    def freeze_encoder(self) -> None:
        """Freeze the image encoder (eval mode, no gradients), e.g. a 2D-pose-pretrained backbone (§4)."""
        self._encoder_frozen = True
        for p in self.encoder_parameters():
            p.requires_grad_(False)
        self.train(self.training)

    def freeze_stage1(self) -> None:
        """Stage-2 training: freeze encoder and stage 1, keep them in eval mode, run them under no_grad."""
        self._stage1_frozen = True
        for module in self._stage1_modules():
            for p in module.parameters():
                p.requires_grad_(False)
        self.train(self.training)

    @property
    def stage1_frozen(self) -> bool:
        return self._stage1_frozen

    def train(self, mode: bool = True) -> LBILifter:
        super().train(mode)
        if self._stage1_frozen:
            for module in self._stage1_modules():
                module.eval()
        elif self._encoder_frozen and self.patch_embed is not None:
            self.patch_embed.encoder.eval()
        return self
