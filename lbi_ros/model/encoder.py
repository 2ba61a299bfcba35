"""Image encoders: a registry of small CNNs that turn the person crop into a grid of feature vectors.

Interface (what :class:`lbi_ros.model.tokens.PatchEmbedding` relies on): an encoder is an ``nn.Module``
with two int attributes and one forward:

* ``out_channels`` C and ``stride`` s;
* ``forward(image_crop (B, 3, H, W)) -> features (B, C, H / s, W / s)``, where H, W are the config's crop
  size and the input is ImageNet mean/std normalised RGB.

The lifter adds the 1x1 projection C -> d, the flattening to H/s * W/s tokens and the positional encoding,
so an encoder knows nothing about the transformer. ``build_model`` runs one dry forward and raises if the
grid does not match.

Plugging a pretrained backbone: register a factory ``ModelConfig -> nn.Module`` under a new name and set
``encoder: <name>`` in the model YAML. The factory loads its own weights, e.g.::

    @register_encoder("mobilenetv2_coco_s8")
    def _mobilenet(config):
        net = MyMobileNetV2()
        net.load_state_dict(safetensors.torch.load_file("weights/mbv2_coco.safetensors"))
        return FeatureTap(net.features[:7], out_channels=32, stride=8)   # any module with the interface

Freezing it (docs/method.md §4) is the training schedule's business: ``LBILifter.freeze_encoder()``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor, nn

from lbi_ros.model.config import ModelConfig
from lbi_ros.model.layers import init_weights

log = logging.getLogger(__name__)

EncoderFactory = Callable[[ModelConfig], nn.Module]
ENCODERS: dict[str, EncoderFactory] = {}


def register_encoder(name: str) -> Callable[[EncoderFactory], EncoderFactory]:
    """Decorator: make ``factory(config) -> encoder`` buildable as ``ModelConfig(encoder=name)``."""

    def decorate(factory: EncoderFactory) -> EncoderFactory:
        if name in ENCODERS:
            raise ValueError(f"encoder {name!r} is already registered")
        ENCODERS[name] = factory
        return factory

    return decorate


def build_encoder(config: ModelConfig) -> nn.Module:
    """Build the encoder ``config.encoder`` and check it maps the crop to a (H/s, W/s) grid."""
    if config.encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {config.encoder!r}; registered: {sorted(ENCODERS)}")
    encoder = ENCODERS[config.encoder](config)
    for attr in ("out_channels", "stride"):
        if not isinstance(getattr(encoder, attr, None), int):
            raise TypeError(f"encoder {config.encoder!r} must expose an int attribute {attr!r}")
    s = encoder.stride
    if config.crop_height % s or config.crop_width % s:
        raise ValueError(
            f"crop {config.crop_height}x{config.crop_width} is not divisible by encoder stride {s}"
        )
    expected = (encoder.out_channels, config.crop_height // s, config.crop_width // s)
    was_training = encoder.training
    encoder.eval()
    with torch.no_grad():
        got = tuple(encoder(torch.zeros(1, 3, config.crop_height, config.crop_width)).shape[1:])
    encoder.train(was_training)
    if got != expected:
        raise ValueError(f"encoder {config.encoder!r} produced features {got}, expected (C, H/s, W/s) {expected}")
    return encoder


def _conv_bn_act(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand -> 3x3 depthwise (stride) -> 1x1 linear projection, residual if shapes match."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, expansion: int = 3) -> None:
        super().__init__()
        hidden = c_in * expansion
        self.use_residual = stride == 1 and c_in == c_out
        self.block = nn.Sequential(
            _conv_bn_act(c_in, hidden, 1),
            _conv_bn_act(hidden, hidden, 3, stride, groups=hidden),
            _conv_bn_act(hidden, c_out, 1, act=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class InvertedResidualNet(nn.Module):
    """A small MobileNetV2-style CNN (docs/cpu_budget.md §A): stem conv s2, then inverted-residual stages.

    ``stages`` lists (out_channels, stride) per block. ``stride`` is the product of all strides.
    """

    def __init__(self, stages: list[tuple[int, int]], stem_channels: int = 16, expansion: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_act(3, stem_channels, 3, 2)]
        c, stride = stem_channels, 2
        for c_out, s in stages:
            layers.append(InvertedResidual(c, c_out, s, expansion))
            c, stride = c_out, stride * s
        self.features = nn.Sequential(*layers)
        self.out_channels = c
        self.stride = stride
        # Symmetric "same" padding (k // 2) keeps output cell i centred on input pixel stride * i.
        self.patch_offset_px = 0.0
        self.apply(init_weights)  # an encoder owns its init: the lifter never re-initialises a backbone

    def forward(self, image_crop: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, C, H / stride, W / stride)."""
        return self.features(image_crop)


@register_encoder("irnet_s8")
def _irnet_s8(config: ModelConfig) -> nn.Module:
    """Deployment profile at 128x96: stride 8 -> 16x12 grid, 64 channels, ~72 K params, ~36 MFLOPs."""
    return InvertedResidualNet([(24, 2), (24, 1), (48, 2), (48, 1), (64, 1)])


@register_encoder("irnet_s16")
def _irnet_s16(config: ModelConfig) -> nn.Module:
    """Same family for a 256x192 crop: stride 16 -> 16x12 grid, 64 channels (misses 2 ms at batch 1)."""
    return InvertedResidualNet([(24, 2), (24, 1), (40, 2), (40, 1), (64, 2), (64, 1)])


class PoseBackboneTap(nn.Module):
    """A frozen BlazePose landmark-net feature map (docs/pose_backbone.md) behind the encoder interface.

    ``forward(image_crop (B, 3, S, S))``, ImageNet-normalised RGB as every lifter input, -> (B, C, S/s, S/s):
    the crop is mapped back to [0, 1] NHWC, the landmark net's input. The net's weights come from the
    pinned TFLite file (:mod:`lbi_ros.pose2d.model_files`); they are buffers-in-parameters that never train.
    ``patch_offset_px = (stride - 1) / 2``: the grid-cell centre. TF "SAME" padding is asymmetric, but the
    top-down FPN (bilinear, half-pixel) re-centres the maps; gradient centroids of interior cells on random
    crops scatter around the cell centre (within +-10 px at stride 32, +-5 px at stride 16).
    """

    def __init__(self, tap: str) -> None:
        super().__init__()
        from lbi_ros.pose2d.blazepose import LANDMARK_INPUT_HW, TAP_SHAPES, load_landmark_net

        self.net = load_landmark_net((tap,))
        self.tap = tap
        self.out_channels, grid, _ = TAP_SHAPES[tap]
        self.stride = LANDMARK_INPUT_HW[0] // grid
        self.patch_offset_px = (self.stride - 1) / 2.0
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1), persistent=False)
        for p in self.net.parameters():
            p.requires_grad_(False)

    def forward(self, image_crop: Tensor) -> Tensor:
        rgb = (image_crop * self.std + self.mean).permute(0, 2, 3, 1)  # (B, S, S, 3) in [0, 1]
        return self.net(rgb)[self.tap]


for _tap in ("add_8", "add_9", "add_10"):
    register_encoder(f"blazepose_{_tap}")(lambda config, tap=_tap: PoseBackboneTap(tap))


def shared_tap(config: ModelConfig) -> str | None:
    """The landmark-net tap a gated lifter reads (``"add_8"`` for ``blazepose_add_8``), or None: a built-in
    BlazePose detector can then hand its landmark pass's map of the shared square crop to the lifter's head
    instead of the lifter running the same backbone again (``DetectorConfig.share_features_tap``)."""
    if config.kind != "lbi_gated" or not config.encoder.startswith("blazepose_"):
        return None
    return config.encoder.removeprefix("blazepose_")
