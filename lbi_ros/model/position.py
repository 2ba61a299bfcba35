"""Fixed 2D sine-cosine positional encoding shared by patch tokens and keypoint tokens (docs/method.md §2.1).

Both are evaluated from crop-normalised coordinates in [-1, 1] (x = u_crop / (W/2) - 1), measured in
units of one patch, so a keypoint lying at a patch centre receives exactly that patch's encoding and
keypoint -> patch alignment needs no learning. Patch encodings are a constant buffer; keypoint encodings
are sin/cos of the input coordinates, so export sees static shapes and elementwise ops only.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

# Frequencies span 1 rad/patch down to 1/TEMPERATURE rad/patch. The MAE/ViT value 10000 is meant for
# hundreds of positions; with grids of 12-16 patches most of those bands would be constant.
TEMPERATURE = 100.0


def patch_centres(grid_height: int, grid_width: int) -> Tensor:
    """Crop-normalised (x, y) of every patch centre in row-major (token) order. Returns (H*W, 2)."""
    ys = (torch.arange(grid_height, dtype=torch.float64) + 0.5) / grid_height * 2.0 - 1.0
    xs = (torch.arange(grid_width, dtype=torch.float64) + 0.5) / grid_width * 2.0 - 1.0
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=-1).float()


def receptive_field_centres(grid_height: int, grid_width: int, stride: int, offset_px: float) -> Tensor:
    """Crop-normalised (x, y) of every patch's receptive-field centre, row-major. Returns (H*W, 2).

    Patch (i, j) of an encoder whose cell 0 is centred on pixel index ``offset_px`` sits at pixel index
    ``(offset_px + stride * j, offset_px + stride * i)``; pixel index p is edge coordinate p + 0.5, and the
    crop (``grid * stride`` pixels) maps to [-1, 1] like the keypoints (``x = u_edge / (W / 2) - 1``).
    :func:`patch_centres` is the special case ``offset_px = (stride - 1) / 2``.
    """
    ys = (offset_px + stride * torch.arange(grid_height, dtype=torch.float64) + 0.5) / (grid_height * stride / 2) - 1
    xs = (offset_px + stride * torch.arange(grid_width, dtype=torch.float64) + 0.5) / (grid_width * stride / 2) - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=-1).float()


class SineCosineEncoding2d(nn.Module):
    """``encode(xy)`` maps crop-normalised (x, y) to a ``dim``-vector: [sin x, cos x, sin y, cos y] bands.

    ``xy`` in [-1, 1] is first converted to patch units (x * W_grid / 2, y * H_grid / 2), so the same
    frequency means the same number of patches on both axes. ``centres`` (H*W, 2) overrides where the
    patches are (:func:`receptive_field_centres`); by default the grid-cell centres.
    """

    def __init__(self, dim: int, grid_height: int, grid_width: int, centres: Tensor | None = None) -> None:
        super().__init__()
        if dim % 4:
            raise ValueError(f"dim must be divisible by 4, got {dim}")
        num_bands = dim // 4
        omega = TEMPERATURE ** (-torch.arange(num_bands, dtype=torch.float64) / max(num_bands - 1, 1))
        self.dim = dim
        # (2, F): row 0 scales x, row 1 scales y; folds the patch-unit conversion into the frequencies.
        scale = torch.tensor([[grid_width / 2.0], [grid_height / 2.0]], dtype=torch.float64)
        self.register_buffer("frequencies", (scale * omega).float(), persistent=False)
        if centres is None:  # the grid-cell centres (what the shipped weights were trained with)
            centres = patch_centres(grid_height, grid_width)
        patch_pe = self._encode(centres, self.frequencies)
        self.register_buffer("patch_encoding", patch_pe.unsqueeze(0), persistent=False)  # (1, HW, dim)

    @staticmethod
    def _encode(xy: Tensor, frequencies: Tensor) -> Tensor:
        phase_x = xy[..., 0:1] * frequencies[0]  # (..., F)
        phase_y = xy[..., 1:2] * frequencies[1]  # (..., F)
        return torch.cat([phase_x.sin(), phase_x.cos(), phase_y.sin(), phase_y.cos()], dim=-1)

    def forward(self, xy: Tensor) -> Tensor:
        """(..., 2) crop-normalised coordinates -> (..., dim) encoding."""
        return self._encode(xy, self.frequencies)


def sincos_reference(x: float, y: float, dim: int, grid_height: int, grid_width: int) -> Tensor:
    """Scalar reference of the encoding (for tests): (dim,) vector at one crop-normalised point."""
    num_bands = dim // 4
    out = []
    for coord, half in ((x, grid_width / 2.0), (y, grid_height / 2.0)):
        phases = [coord * half * TEMPERATURE ** (-k / max(num_bands - 1, 1)) for k in range(num_bands)]
        out += [math.sin(p) for p in phases] + [math.cos(p) for p in phases]
    return torch.tensor(out)
