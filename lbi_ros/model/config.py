"""``ModelConfig``: every hyperparameter that changes the network's structure, in one frozen dataclass.

The config travels inside checkpoints and ONNX metadata, so evaluation, export and the node rebuild the
network from it alone (:func:`lbi_ros.model.build_model` is the only constructor call site). It is plain
data: importing it needs neither torch nor rclpy. Load and save it with :mod:`lbi_ros.config`
(``load_yaml(ModelConfig, "config/model/lbi.yaml")``); unknown keys are errors there.

Section references (§2.3 ...) point to ``docs/method.md``, the method description.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ModelKind = Literal["lbi", "lift2d", "lbi_gated"]
PatchCentres = Literal["grid", "receptive_field"]


@dataclass(frozen=True)
class ModelConfig:
    """Structure of an LBI lifter or of the 2D-only baseline.

    Defaults are the deployment profile (§2.1): 128x96 crop, 16x12 = 192 patch tokens, d = 128, 4 heads.
    """

    # --- which network -------------------------------------------------------------------------------
    kind: ModelKind = "lbi"
    """``lbi``: the two-stage image lifter; ``lift2d``: the 2D-only baseline (no image branch); ``lbi_gated``:
    the 2D-only lifter plus zero-gated image blocks over a frozen pose backbone (:mod:`lbi_ros.model.gated`)."""
    num_joints: int = 17
    """J; H36M-17 order. Joint 0 (pelvis) is the root the outputs are relative to."""

    # --- inputs --------------------------------------------------------------------------------------
    crop_height: int = 128
    crop_width: int = 96
    use_confidence: bool = False
    """Feed the detector confidence as a 5th keypoint feature (off: the CPN/SH files have none, §1)."""
    min_confidence: float = 0.0
    """A joint whose confidence is <= this is *missing*: its coordinates are ignored (learned token)."""

    # --- image encoder (lbi only) -------------------------------------------------------------------
    encoder: str = "irnet_s8"
    """Name in :data:`lbi_ros.model.encoder.ENCODERS`; must map the crop to a (crop / stride) grid."""
    patch_centres: PatchCentres = "grid"
    """Where the positional encoding puts patch i: ``grid`` = the centre of the i-th stride cell (what the
    shipped weights were trained with; for ``irnet_s8`` it is 3.5 px right of/below the receptive-field
    centre), ``receptive_field`` = the encoder's own ``patch_offset_px + stride * i`` (pixel index)."""
    image_size: int = 256
    """``lbi_gated`` only: side of the square person crop (:func:`lbi_ros.pose2d.roi.person_roi_from_box`)
    the backbone reads; ``crop_height`` x ``crop_width`` still define the keypoint box and its encoding."""
    gated_after: tuple[int, ...] = (1, 3, 5)
    """``lbi_gated``: indices of the 2D-only layers followed by a gated image block. The first is a PGTL-style
    block (its map also updates the patches), the last but one scores the AFSM top-k, the last reads only the
    kept patches (stage 2)."""

    # --- transformer width ---------------------------------------------------------------------------
    dim: int = 128
    num_heads: int = 4
    mlp_ratio: float = 2.0
    qkv_bias: bool = True
    attn_drop: float = 0.0
    proj_drop: float = 0.0
    drop_path: float = 0.1
    """Largest stochastic-depth rate; each stack ramps linearly from 0 to this (timm convention)."""

    # --- stage 1 (§2.5) and AFSM (§2.6) ------------------------------------------------------------
    depth_stage1: int = 3
    pgtl: bool = True
    """False: a plain TL replaces the PGTL (ablation)."""
    pgtl_layer: int = 1
    """Index of the PGTL in stage 1 (the paper: the 2nd of 3). Never the last layer (§2.4)."""
    keep_ratio: float = 0.3
    """AFSM retention r; K = round(r * HW) fixed at build. 1.0: no pruning, stage 2 sees every patch."""
    rest_token: bool = False
    """EViT-style extra token: score-weighted mean of the pruned patches (optional ablation, §2.6)."""

    # --- stage 2 (§2.7) ------------------------------------------------------------------------------
    stage2: bool = True
    """False: coarse head only; the refined output equals the coarse one."""
    depth_stage2: int = 3
    detach_stage2_input: bool = True
    """Stage 2 reads stage-1 tokens detached (the paper's gradient truncation). False: end-to-end."""

    # --- uncertainty ---------------------------------------------------------------------------------
    logvar_min: float = -12.0
    logvar_max: float = 4.0
    """Per-joint log-variance (m^2) is squashed into [logvar_min, logvar_max] with a sigmoid, so a
    Gaussian NLL can never see an infinite or vanishing variance (std 2.5 mm .. 7.4 m)."""

    # --- use_image = False: the 2D-only ablation of the LBI model ------------------------------------
    use_image: bool = True
    """False: no encoder and no cross-attention; both stages become keypoint-only transformers."""

    # --- kind = lift2d (2D-only baseline, sized to the full model's parameter count) ------------------
    depth_lift2d: int = 7
    mlp_ratio_lift2d: float = 3.5

    def __post_init__(self) -> None:
        def positive(name: str) -> None:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

        for name in ("num_joints", "crop_height", "crop_width", "dim", "num_heads", "depth_stage1",
                     "depth_stage2", "depth_lift2d"):
            positive(name)
        if self.dim % self.num_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by num_heads ({self.num_heads})")
        if self.dim % 4:
            raise ValueError(f"dim ({self.dim}) must be divisible by 4 (2D sine-cosine encoding)")
        for name in ("mlp_ratio", "mlp_ratio_lift2d"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("attn_drop", "proj_drop", "drop_path"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 < self.keep_ratio <= 1.0:
            raise ValueError(f"keep_ratio must be in (0, 1], got {self.keep_ratio}")
        if self.rest_token and self.keep_ratio == 1.0:
            raise ValueError("rest_token needs pruning (keep_ratio < 1): there is no rest to summarise")
        if self.pgtl and not 0 <= self.pgtl_layer < self.depth_stage1 - 1:
            raise ValueError(
                f"pgtl_layer must be in [0, depth_stage1 - 1) = [0, {self.depth_stage1 - 1}) so that a later "
                f"stage-1 layer reads (and supervises) the updated patches; got {self.pgtl_layer}"
            )
        if not 0.0 <= self.min_confidence < 1.0:
            raise ValueError(f"min_confidence must be in [0, 1), got {self.min_confidence}")
        if not self.logvar_min < self.logvar_max:
            raise ValueError(f"logvar_min ({self.logvar_min}) must be < logvar_max ({self.logvar_max})")
        if not self.encoder:
            raise ValueError("encoder must name a registered encoder")
        if self.kind == "lbi_gated":
            if not self.gated_after or any(not 0 <= i < self.depth_lift2d for i in self.gated_after):
                raise ValueError(f"gated_after must name layers in [0, {self.depth_lift2d}), got {self.gated_after}")
            if list(self.gated_after) != sorted(set(self.gated_after)):
                raise ValueError(f"gated_after must be strictly increasing, got {self.gated_after}")

    @property
    def has_image(self) -> bool:
        """True when the network reads ``image_crop`` (the I/O contract then includes it)."""
        return (self.kind == "lbi" and self.use_image) or self.kind == "lbi_gated"

    @property
    def has_coarse_output(self) -> bool:
        """True when the network produces a stage-1 coarse pose (only the LBI lifter does)."""
        return self.kind == "lbi"
