"""Transformer building blocks: attention (fused and plain-math paths), MLP, DropPath, TL and PGTL.

Shapes use B = persons, N = keypoint tokens (17), M = image tokens (192 in stage 1, K in stage 2),
D = width, H = heads, Dh = D / H.

Export rules (docs/method.md §5) shape this file:

* Every head split is ``reshape(-1, n, H, Dh)`` with ``n`` a Python int fixed at construction. Reading
  ``x.shape`` in forward would trace Shape/Gather/Concat chains that double the ONNX node count.
* Attention that must expose its map (the AFSM score, the PGTL's shared map) is written as explicit
  MatMul -> Softmax -> MatMul. The fused ``scaled_dot_product_attention`` path is used only where the map is
  not needed, and :func:`set_fused_attention` turns it off for export.
* Cross-attention's math path never projects the M image tokens to K and V. With N = 17 queries and
  N * H < D it is cheaper to move the projections onto the queries (per head h, W_k,h and W_v,h are the
  Dh x D row blocks of W_k and W_v; p are the image tokens)::

      logits_h = (q_h W_k,h) p^T                    instead of  q_h (p W_k,h^T)^T
      A_h V_h  = (A_h p) W_v,h^T + rowsum(A_h) b_v,h  instead of  A_h (p W_v,h^T + b_v,h)

  The same numbers (to float rounding; the fused path, which projects K and V, is tested against it),
  about 17% fewer FLOPs for the whole lifter and no per-head transpose of M-token tensors: ~10% lower
  ONNX Runtime latency at batch 1 and 8. The parameters are the usual ``k``/``v`` Linears.
* No key bias: softmax is invariant to adding the same number to every logit of a row, and ``q . b_k`` is
  exactly such a number, so a key bias only ever receives a zero gradient (the BEiT form: q and v biases).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

AttentionResult = tuple[Tensor, Tensor | None]
LayerResult = tuple[Tensor, Tensor | None, Tensor | None]


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch for whole samples (training only)."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class Mlp(nn.Module):
    """Linear -> GELU -> Linear (the FFN of a TL)."""

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def _split_heads(x: Tensor, n: int, num_heads: int, head_dim: int) -> Tensor:
    """(B, n, H * Dh) -> (B, H, n, Dh) with a static reshape."""
    return x.reshape(-1, n, num_heads, head_dim).transpose(1, 2)


def _split_packed(x: Tensor, n: int, parts: int, num_heads: int, head_dim: int) -> tuple[Tensor, ...]:
    """(B, n, parts * H * Dh) packed projections (QKV or KV) -> ``parts`` tensors of (B, H, n, Dh)."""
    return x.reshape(-1, n, parts, num_heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)


def _merge_heads(x: Tensor, n: int, dim: int) -> Tensor:
    """(B, H, n, Dh) -> (B, n, D) with a static reshape."""
    return x.transpose(1, 2).reshape(-1, n, dim)


def _absorbed_logits(q: Tensor, k_weight: Tensor, context: Tensor, num_heads: int, head_dim: int) -> Tensor:
    """Logits of queries q (B, H, N, Dh) against keys W_k p without projecting p: (q_h W_k,h) p^T -> (B, H, N, M)."""
    qk = q @ k_weight.reshape(num_heads, head_dim, num_heads * head_dim)  # (B, H, N, D); constant reshape
    return qk @ context.transpose(-2, -1).unsqueeze(1)  # (B, H, N, D) @ (B, 1, D, M)


def _absorbed_values(attn: Tensor, context: Tensor, v: nn.Linear, num_heads: int, head_dim: int,
                     rows_sum_to_one: bool) -> Tensor:
    """sum_m A_h[n, m] (W_v p_m + b_v)_h = (A_h p) W_v,h^T + rowsum(A_h) b_v,h -> (B, H, N, Dh)."""
    w = v.weight.reshape(num_heads, head_dim, num_heads * head_dim).transpose(-2, -1)  # (H, D, Dh), constant
    out = (attn @ context.unsqueeze(1)) @ w  # (B, H, N, D) @ (H, D, Dh)
    if v.bias is not None:
        bias = v.bias.reshape(num_heads, 1, head_dim)
        # softmax rows sum to 1; after attention dropout they do not, and the bias must be scaled too
        out = out + (bias if rows_sum_to_one else attn.sum(dim=-1, keepdim=True) * bias)
    return out


class Attention(nn.Module):
    """Multi-head attention, self (``num_keys=None``) or cross (queries from x, keys/values from context).

    ``softmax(Q K^T / sqrt(Dh)) V`` followed by an output projection. ``num_queries`` / ``num_keys`` are the
    token counts, fixed at construction so that every reshape is static.

    Two numerically equivalent paths: ``fused`` (``F.scaled_dot_product_attention``, used when the map is
    not requested) and math (explicit matmuls, returns the (B, H, Nq, Nk) map, pre-dropout).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        *,
        num_queries: int,
        num_keys: int | None = None,
        fused: bool = True,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.num_queries = num_queries
        self.is_cross = num_keys is not None
        self.num_keys = num_keys if num_keys is not None else num_queries
        self.fused = fused
        self.attn_drop_p = attn_drop
        if self.is_cross:
            # Separate K and V Linears: the math path reads their weights per head (absorbed form), and a
            # packed KV would cost the fused path a 5-D permute plus a Split of the largest tensor.
            self.q = nn.Linear(dim, dim, bias=qkv_bias)
            self.k = nn.Linear(dim, dim, bias=False)
            self.v = nn.Linear(dim, dim, bias=qkv_bias)
        else:
            # 17 tokens: one packed projection (fewer nodes); the key slice of its bias is a zero buffer.
            self.qkv = nn.Linear(dim, 3 * dim, bias=False)
            self.q_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
            self.v_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
            self.register_buffer("k_bias", torch.zeros(dim), persistent=False)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, context: Tensor | None = None, need_weights: bool = False) -> AttentionResult:
        """x (B, Nq, D), context (B, Nk, D) or None -> (out (B, Nq, D), map (B, H, Nq, Nk) or None)."""
        if self.is_cross != (context is not None):
            raise ValueError("cross-attention needs a context; self-attention takes none")
        H, Dh = self.num_heads, self.head_dim
        use_fused = self.fused and not need_weights
        attn = None
        if self.is_cross:
            q = _split_heads(self.q(x), self.num_queries, H, Dh)  # (B, H, Nq, Dh)
            if use_fused:
                k = _split_heads(self.k(context), self.num_keys, H, Dh)  # (B, H, Nk, Dh)
                v = _split_heads(self.v(context), self.num_keys, H, Dh)
            else:  # projection-absorbed math path (module docstring)
                attn = _absorbed_logits(q * self.scale, self.k.weight, context, H, Dh).softmax(dim=-1)
                attn_d = self.attn_drop(attn)
                rows_sum_to_one = self.attn_drop.p == 0.0 or not self.training
                out = _absorbed_values(attn_d, context, self.v, H, Dh, rows_sum_to_one)  # (B, H, Nq, Dh)
        else:
            b = torch.cat([self.q_bias, self.k_bias, self.v_bias]) if self.q_bias is not None else None
            q, k, v = _split_packed(F.linear(x, self.qkv.weight, b), self.num_queries, 3, H, Dh)
            if not use_fused:
                attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, H, N, N)
                out = self.attn_drop(attn) @ v  # (B, H, N, Dh)
        if use_fused:
            out = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.attn_drop_p if self.training else 0.0, scale=self.scale
            )
        out = _merge_heads(out, self.num_queries, self.dim)
        return self.proj_drop(self.proj(out)), attn


class PoseGuidedAttention(nn.Module):
    """The PGTL's dual attention (docs/method.md §2.4): ONE map A, read by keypoints and transposed for patches.

    ``A_h = softmax(Q_h K_h^T / sqrt(Dh))`` over the M patches for each keypoint row, then
    keypoints: ``W_oJ concat_h(A_h V_I,h)`` and patches: ``W_oI concat_h(A_h^T V_J,h)``.
    Patch i receives ``c_i * (convex mix of V_J)`` with column mass ``c_i = sum_j A[j, i]``, so a patch no
    keypoint attends to gets (almost) no update. ``W_oI`` therefore has **no bias**: a bias would add the same
    update to every patch, background included, and undo exactly that suppression.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        *,
        num_queries: int,
        num_keys: int,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.num_queries = num_queries
        self.num_keys = num_keys
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=False)  # from the image tokens
        self.v_image = nn.Linear(dim, dim, bias=qkv_bias)  # V_I, from the image tokens
        self.v_joint = nn.Linear(dim, dim, bias=qkv_bias)  # V_J, from the keypoint tokens
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj_joint = nn.Linear(dim, dim)
        self.proj_patch = nn.Linear(dim, dim, bias=False)
        self.proj_drop = nn.Dropout(proj_drop)

    def attention_logits(self, q: Tensor, patches: Tensor) -> Tensor:
        """q (B, H, N, Dh), patches (B, M, D) -> scaled logits (B, H, N, M). A method so tests can force logits."""
        return _absorbed_logits(q * self.scale, self.k.weight, patches, self.num_heads, self.head_dim)

    def forward(self, x: Tensor, patches: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, N, D), patches (B, M, D), both LayerNorm'd -> (dx (B, N, D), dp (B, M, D), A (B, H, N, M)).

        K and V_I use the projection-absorbed form of the module docstring (the image tokens are never
        projected); V_J is an ordinary projection of the 17 keypoint tokens.
        """
        H, Dh = self.num_heads, self.head_dim
        q = _split_heads(self.q(x), self.num_queries, H, Dh)  # (B, H, N, Dh)
        v_joint = _split_heads(self.v_joint(x), self.num_queries, H, Dh)  # (B, H, N, Dh)
        attn = self.attention_logits(q, patches).softmax(dim=-1)  # (B, H, N, M), rows sum to 1
        attn_d = self.attn_drop(attn)
        rows_sum_to_one = self.attn_drop.p == 0.0 or not self.training
        joint_out = _absorbed_values(attn_d, patches, self.v_image, H, Dh, rows_sum_to_one)  # (B, H, N, Dh)
        joint_out = _merge_heads(joint_out, self.num_queries, self.dim)  # (B, N, D)
        patch_out = _merge_heads(attn_d.transpose(-2, -1) @ v_joint, self.num_keys, self.dim)  # (B, M, D)
        return (
            self.proj_drop(self.proj_joint(joint_out)),
            self.proj_drop(self.proj_patch(patch_out)),
            attn,
        )


class TransformerLayer(nn.Module):
    """TL (docs/method.md §2.3), pre-LN: x += MSA(LN x); x += MCA(LN x, LN p); x += FFN(LN x). Patches unchanged.

    With ``num_patches=None`` there is no MCA (a keypoint-only layer: the 2D-only paths). With
    ``return_attention`` the MCA uses the math path and returns its map (the AFSM reads it).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        *,
        num_joints: int,
        num_patches: int | None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        drop_path: float = 0.0,
        return_attention: bool = False,
    ) -> None:
        super().__init__()
        self.return_attention = return_attention
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, num_heads, qkv_bias, attn_drop, proj_drop, num_queries=num_joints)
        if num_patches is not None:
            self.norm2 = nn.LayerNorm(dim)
            self.norm_context = nn.LayerNorm(dim)
            self.cross_attn = Attention(
                dim, num_heads, qkv_bias, attn_drop, proj_drop, num_queries=num_joints, num_keys=num_patches
            )
        else:
            self.cross_attn = None
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(round(dim * mlp_ratio)), proj_drop)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, patches: Tensor | None) -> LayerResult:
        """x (B, N, D), patches (B, M, D) or None -> (x, patches unchanged, MCA map (B, H, N, M) or None)."""
        x = x + self.drop_path(self.self_attn(self.norm1(x))[0])
        attn = None
        if self.cross_attn is not None:
            out, attn = self.cross_attn(
                self.norm2(x), self.norm_context(patches), need_weights=self.return_attention
            )
            x = x + self.drop_path(out)
        x = x + self.drop_path(self.mlp(self.norm3(x)))
        return x, patches, attn


class PoseGuidedLayer(nn.Module):
    """PGTL (docs/method.md §2.4): MSA, then the dual attention that also updates patches, then FFN on keypoints.

    V_J comes from the LayerNorm'd keypoint tokens after this layer's MSA (the same normed tokens that
    give Q). No FFN on the patches: it would update background tokens regardless of their column mass.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        *,
        num_joints: int,
        num_patches: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, num_heads, qkv_bias, attn_drop, proj_drop, num_queries=num_joints)
        self.norm2 = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.dual_attn = PoseGuidedAttention(
            dim, num_heads, qkv_bias, attn_drop, proj_drop, num_queries=num_joints, num_keys=num_patches
        )
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(round(dim * mlp_ratio)), proj_drop)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, patches: Tensor | None) -> LayerResult:
        """x (B, N, D), patches (B, M, D) -> (x, enhanced patches (B, M, D), shared map (B, H, N, M))."""
        if patches is None:
            raise ValueError("a PGTL needs image tokens")
        x = x + self.drop_path(self.self_attn(self.norm1(x))[0])
        dx, dp, attn = self.dual_attn(self.norm2(x), self.norm_context(patches))
        x = x + self.drop_path(dx)
        patches = patches + self.drop_path(dp)
        x = x + self.drop_path(self.mlp(self.norm3(x)))
        return x, patches, attn


def set_fused_attention(module: nn.Module, enabled: bool) -> None:
    """Switch every :class:`Attention` under ``module`` between the fused and the plain-math path."""
    for m in module.modules():
        if isinstance(m, Attention):
            m.fused = enabled


def init_weights(module: nn.Module) -> None:
    """ViT-style init (timm ``init_weights_vit_timm``): truncated normal(0.02) Linear weights, zero biases,
    unit LayerNorms; Kaiming (fan-out) convs and unit BatchNorms for the CNN encoder. Use ``model.apply``."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Linear stochastic-depth ramp 0 .. rate over ``depth`` layers (timm convention)."""
    if depth == 1:
        return [0.0]
    return [rate * i / (depth - 1) for i in range(depth)]


__all__ = [
    "Attention",
    "DropPath",
    "Mlp",
    "PoseGuidedAttention",
    "PoseGuidedLayer",
    "TransformerLayer",
    "drop_path_rates",
    "init_weights",
    "set_fused_attention",
]
