"""AFSM, the Adaptive Feature Selection Module (docs/method.md §2.6): keep the K image tokens keypoints look at most.

``score = mean over heads and keypoints of the last stage-1 layer's cross-attention map`` (B, HW), then
``topk(score, K, sorted=True)`` and ``gather`` of the *enhanced* (post-PGTL) patch tokens. K is a Python
int fixed at build time, so the exported graph has static shapes (ONNX TopK + GatherElements; no masks,
``nonzero`` or ``masked_select``). The selection is a hard choice and passes no gradient to the scores;
it is only ever trained after stage 1 is frozen. The positional encoding is already inside the tokens, so
the order of the kept tokens does not matter.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TokenSelector(nn.Module):
    """(patches (B, HW, d), attention (B, H, N, HW)) -> (kept (B, K, d) [+ rest token], index (B, K))."""

    def __init__(self, num_patches: int, num_keep: int, dim: int, rest_token: bool = False) -> None:
        super().__init__()
        if not 1 <= num_keep <= num_patches:
            raise ValueError(f"num_keep must be in [1, {num_patches}], got {num_keep}")
        self.num_patches = num_patches
        self.num_keep = num_keep
        self.dim = dim
        self.rest_token = rest_token

    @property
    def num_out(self) -> int:
        """Tokens handed to stage 2: K, plus one with the rest token."""
        return self.num_keep + int(self.rest_token)

    @staticmethod
    def scores(attention: Tensor) -> Tensor:
        """(B, H, N, HW) attention map -> (B, HW) mean over heads and keypoints (each row sums to 1)."""
        return attention.mean(dim=(1, 2))

    def forward(self, patches: Tensor, attention: Tensor) -> tuple[Tensor, Tensor]:
        score = self.scores(attention)  # (B, HW)
        top_score, index = torch.topk(score, self.num_keep, dim=1, largest=True, sorted=True)  # (B, K)
        # repeat (Tile with a constant) rather than expand(-1, ...), which would trace Shape ops.
        kept = torch.gather(patches, 1, index.unsqueeze(-1).repeat(1, 1, self.dim))  # (B, K, d)
        if self.rest_token:
            # EViT-style fusion: score-weighted mean of the pruned tokens, computed as (all - kept) so
            # the shape stays static: rest = (s^T T - s_K^T T_K) / (sum s - sum s_K).
            total = score.unsqueeze(1) @ patches  # (B, 1, d)
            kept_sum = top_score.unsqueeze(1) @ kept  # (B, 1, d)
            mass = (score.sum(dim=1) - top_score.sum(dim=1)).clamp_min(1e-6)  # (B,)
            kept = torch.cat([kept, (total - kept_sum) / mass.reshape(-1, 1, 1)], dim=1)  # (B, K + 1, d)
        return kept, index
