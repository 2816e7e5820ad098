"""Discriminator D: frozen ImageNet features, 3 residual blocks, a GAN head and an AC head.

Paper (§3.2 "Discriminator"): VGG16 features after ``block3_conv3`` (stride 4, 256 channels),
not fine-tuned, then 3 trainable residual blocks, then two separate decoders that each output
at image resolution:

* **GAN head** ``D_gan``: 1 + |C| maps — the domain map (Eqs. 2-3) and one class-wise map per
  class (Eqs. 4-5).
* **AC head** ``D_ac`` (auxiliary classifier): |C| segmentation logits (Eq. 1).

|C| = the run's classes (``num_classes``: Cityscapes' 19 trainIds for GTA5 / SYNTHIA, a
dataset file's own list otherwise; :func:`sci2i.data.custom.run_class_names`); with SYNTHIA
the three classes it lacks simply never receive a positive label (see :mod:`sci2i.losses.i2i`).

Layout (``ch`` = ``cfg.discriminator.channels``)::

    x ─ frozen trunk (stride 4) ─ [1×1 projection if widths differ] ─ 3 × ResBlock(ch) ─┬─ GAN decoder ─ (1+|C|, H, W)
                                                                                        └─ AC decoder  ─ (|C|, H, W)
    decoder: 2 × [4×4 deconv stride 2, leaky-ReLU] (ch → ch/2 → ch/4), 3×3 conv → outputs

All trainable layers use the equalized learning rate, like G's (the paper trains G and D with
one learning rate; with both parametrised alike one ``i2i.lr`` suits both, as in StyleGAN).
No normalisation layers.

The trunk is computed once per image: :meth:`Discriminator.trunk_features` (frozen, gradients
flow through to the input, i.e. to G) and :meth:`Discriminator.head_outputs` (trainable
parts) are separate calls so the I2I step can reuse ``trunk(G(x_s))`` for the D-step
(detached) and the G-step (attached). Plain ``D(x)`` does both.

Paper -> code: D_gan -> ``out.gan`` (``out.domain`` = channel 0, ``out.classwise`` =
channels 1..|C|); D_ac -> ``out.seg``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from sci2i.config.schema import DiscriminatorConfig
from sci2i.labels import NUM_CLASSES
from sci2i.models.backbones import FrozenTrunk, build_trunk
from sci2i.models.stylegan_layers import EqualizedConv2d, EqualizedConvTranspose2d

NEGATIVE_SLOPE = 0.2


class DiscriminatorOutput(NamedTuple):
    """Both heads at image resolution: ``gan`` (N, 1+|C|, H, W) and ``seg`` (N, |C|, H, W)."""

    gan: torch.Tensor
    seg: torch.Tensor

    @property
    def domain(self) -> torch.Tensor:
        """D_gan's domain map (N, H, W): Eqs. 2-3."""
        return self.gan[:, 0]

    @property
    def classwise(self) -> torch.Tensor:
        """D_gan's class-wise maps D_c (N, |C|, H, W): Eqs. 4-5."""
        return self.gan[:, 1:]


class ResBlock(nn.Module):
    """He et al. basic block without normalisation: ``lrelu(s(x) + conv(lrelu(conv(x))))``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = EqualizedConv2d(in_channels, out_channels, 3, padding=1, bias=True)
        self.conv2 = EqualizedConv2d(out_channels, out_channels, 3, padding=1, bias=True)
        self.shortcut = (
            EqualizedConv2d(in_channels, out_channels, 1, gain=1.0, bias=True)
            if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.leaky_relu(self.conv1(x), NEGATIVE_SLOPE))
        return F.leaky_relu(self.shortcut(x) + h, NEGATIVE_SLOPE)


class UpDecoder(nn.Module):
    """``log2(stride)`` × (4×4 deconv stride 2 halving the width, leaky-ReLU), then a 3×3 conv."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        stages = int(round(math.log2(stride)))
        if 2 ** stages != stride:
            raise ValueError(f"trunk stride must be a power of 2, got {stride}")
        layers: list[nn.Module] = []
        ch = in_channels
        for _ in range(stages):
            nxt = max(ch // 2, 16)
            layers += [EqualizedConvTranspose2d(ch, nxt, 4, stride=2, padding=1, bias=True),
                       nn.LeakyReLU(NEGATIVE_SLOPE)]
            ch = nxt
        layers.append(EqualizedConv2d(ch, out_channels, 3, padding=1, gain=1.0, bias=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        out = self.layers(x)
        if tuple(out.shape[-2:]) != tuple(size):  # sizes not divisible by the trunk stride
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        return out


class Discriminator(nn.Module):
    """D = frozen trunk → residual blocks → (GAN head, AC head), both at input resolution."""

    def __init__(self, cfg: DiscriminatorConfig | None = None, trunk: FrozenTrunk | None = None,
                 num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        cfg = cfg or DiscriminatorConfig()
        self.trunk = trunk if trunk is not None else build_trunk(cfg.trunk, cfg.trunk_weights)
        ch = cfg.channels
        widths = [self.trunk.out_channels] + [ch] * cfg.num_res_blocks
        self.res_blocks = nn.Sequential(*(ResBlock(a, b) for a, b in zip(widths[:-1], widths[1:])))
        body_out = widths[-1]
        self.gan_head = UpDecoder(body_out, 1 + num_classes, self.trunk.stride)
        self.ac_head = UpDecoder(body_out, num_classes, self.trunk.stride)
        self.num_classes = num_classes

    def trunk_features(self, x: torch.Tensor) -> torch.Tensor:
        """Frozen ImageNet features of RGB [0, 1] images; differentiable w.r.t. ``x``."""
        return self.trunk(x)

    def head_outputs(self, trunk_feat: torch.Tensor, size: tuple[int, int]) -> DiscriminatorOutput:
        """The trainable part: residual blocks once, then both heads at ``size``."""
        feat = self.res_blocks(trunk_feat)
        return DiscriminatorOutput(self.gan_head(feat, size), self.ac_head(feat, size))

    def forward(self, x: torch.Tensor) -> DiscriminatorOutput:
        return self.head_outputs(self.trunk_features(x), tuple(x.shape[-2:]))

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Everything but the frozen trunk (what D's optimiser steps)."""
        return [p for n, p in self.named_parameters() if not n.startswith("trunk.")]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """State of the trainable parts; the trunk is rebuilt from its own weights."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("trunk.")}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("trunk.")]
        if missing or unexpected:
            raise KeyError(f"discriminator state does not fit: missing {missing}, unexpected {unexpected}")

    def set_trainable(self, flag: bool) -> None:
        """Switch gradients of the trainable parts (the trunk always stays frozen)."""
        for p in self.trainable_parameters():
            p.requires_grad_(flag)


def build_discriminator(cfg: DiscriminatorConfig, num_classes: int) -> Discriminator:
    return Discriminator(cfg, num_classes=num_classes)
