"""Generator G: synthetic image x_s -> translated image G(x_s) with the look of the target.

Paper (§3.2 "Generator"): strided convolutions downsample by 8, one residual block, a stack of
deconvolution layers back to full size, no skip connections between encoder and decoder, a
learned scale and bias in every layer, leaky-ReLU everywhere except the output layer, and the
StyleGAN components of :mod:`sci2i.models.stylegan_layers`.

Layout (widths ``c0..c3`` = ``cfg.generator.channels``, default 64, 128, 256, 512)::

    x (3, H, W)  ── stem 7×7 conv ──> c0, H            ┐ encoder: conv → scale/bias → lrelu
               ── 4×4 conv, stride 2 ──> c1, H/2       │          → PixelNorm
               ── 4×4 conv, stride 2 ──> c2, H/4       │
               ── 4×4 conv, stride 2 ──> c3, H/8       ┘
               ── residual block (two 3×3 styled layers, identity shortcut) ──> c3, H/8
               ── 4×4 deconv, stride 2 ──> c2, H/4     ┐ decoder ("styled" layers):
               ── 4×4 deconv, stride 2 ──> c1, H/2     │   deconv → noise → scale/bias → lrelu
               ── 4×4 deconv, stride 2 ──> c0, H       ┘   → PixelNorm → AdaIN(w)
               ── 7×7 deconv (stride 1) → scale/bias → sigmoid ──> RGB in [0, 1]

Choices the paper leaves open (documented in docs/I2I.md):

* **Where the AdaIN style comes from**: a StyleGAN mapping network ``w = f(z)`` on a random
  latent ``z`` ~ N(0, I) of size ``latent_dim``. Translations are therefore stochastic; pass a
  fixed ``z`` (and a seeded ``generator`` for the per-pixel noise, or ``noise=False`` in the
  config) for reproducible output. Only the bottleneck and the decoder are styled: the
  encoder's job is to describe the content, the style decides how it is rendered.
* **Output range**: ``sigmoid`` gives RGB in [0, 1] directly, the range of every sci2i
  image (``(tanh + 1) / 2`` is the same function with the logit halved).
* **Sizes that are not multiples of 8**: the input is padded (edge replication) up to the
  next multiple of 8 and the output cropped back, so ``G(x).shape == x.shape`` always.

Paper -> code: G -> :class:`Generator`; z -> ``z``; mapping network -> ``mapping``;
"stochastic variation" -> :class:`NoiseInjection`.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from sci2i.config.schema import GeneratorConfig
from sci2i.models.stylegan_layers import (
    AdaIN,
    EqualizedConv2d,
    EqualizedConvTranspose2d,
    MappingNetwork,
    NoiseInjection,
    PixelNorm,
    ScaleBias,
)

#: Total downsampling of the encoder (three stride-2 stages).
OUTPUT_STRIDE = 8


class EncoderLayer(nn.Module):
    """conv (equalized lr) → learned scale/bias → leaky-ReLU → PixelNorm."""

    def __init__(self, conv: nn.Module, channels: int, negative_slope: float) -> None:
        super().__init__()
        self.conv = conv
        self.scale_bias = ScaleBias(channels)
        self.norm = PixelNorm()
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(F.leaky_relu(self.scale_bias(self.conv(x)), self.negative_slope))


class StyledLayer(nn.Module):
    """conv/deconv → noise → learned scale/bias → leaky-ReLU → PixelNorm → AdaIN(w)."""

    def __init__(self, conv: nn.Module, channels: int, style_dim: int, negative_slope: float,
                 noise: bool) -> None:
        super().__init__()
        self.conv = conv
        self.noise = NoiseInjection(channels, enabled=noise)
        self.scale_bias = ScaleBias(channels)
        self.norm = PixelNorm()
        self.adain = AdaIN(channels, style_dim)
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor, w: torch.Tensor,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        x = self.noise(self.conv(x), generator)
        x = self.norm(F.leaky_relu(self.scale_bias(x), self.negative_slope))
        return self.adain(x, w)


class StyledResBlock(nn.Module):
    """The single residual block at stride 8: ``x + f(x)``, f = two 3×3 styled layers."""

    def __init__(self, channels: int, style_dim: int, negative_slope: float, noise: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            StyledLayer(EqualizedConv2d(channels, channels, 3, padding=1), channels, style_dim,
                        negative_slope, noise)
            for _ in range(2)
        )

    def forward(self, x: torch.Tensor, w: torch.Tensor,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        h = x
        for layer in self.layers:
            h = layer(h, w, generator)
        return x + h


class Generator(nn.Module):
    """G(x, z): encoder (stride 8) → one residual block → deconv decoder; RGB [0,1] -> [0,1].

    ``forward(x, z=None, generator=None)``: ``x`` (N, 3, H, W) in [0, 1]; ``z`` (N, latent_dim)
    or (latent_dim,) (broadcast to the batch); ``None`` draws z ~ N(0, I) from ``generator``
    (or the global RNG). The per-pixel noise is drawn from ``generator`` too, so a seeded
    ``torch.Generator`` plus a fixed ``z`` gives a deterministic translation.
    """

    def __init__(self, cfg: GeneratorConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or GeneratorConfig()
        if len(cfg.channels) != 4:
            raise ValueError(f"generator.channels needs 4 widths (stem + 3 stages), got {cfg.channels}")
        c0, c1, c2, c3 = cfg.channels
        slope, style = cfg.negative_slope, cfg.style_dim
        self.latent_dim = cfg.latent_dim
        self.mapping = MappingNetwork(cfg.latent_dim, style, cfg.mapping_layers, slope)
        self.encoder = nn.Sequential(
            EncoderLayer(EqualizedConv2d(3, c0, 7, padding=3, padding_mode="replicate"), c0, slope),
            EncoderLayer(EqualizedConv2d(c0, c1, 4, stride=2, padding=1), c1, slope),
            EncoderLayer(EqualizedConv2d(c1, c2, 4, stride=2, padding=1), c2, slope),
            EncoderLayer(EqualizedConv2d(c2, c3, 4, stride=2, padding=1), c3, slope),
        )
        self.res_block = StyledResBlock(c3, style, slope, cfg.noise)
        self.decoder = nn.ModuleList(
            StyledLayer(EqualizedConvTranspose2d(a, b, 4, stride=2, padding=1), b, style, slope, cfg.noise)
            for a, b in ((c3, c2), (c2, c1), (c1, c0))
        )
        # Output layer: no activation but the squashing to [0, 1]; gain 1 (linear layer).
        self.to_rgb = EqualizedConvTranspose2d(c0, 3, 7, stride=1, padding=3, gain=1.0)
        self.to_rgb_scale_bias = ScaleBias(3)

    def sample_z(self, batch: int, device: torch.device | str = "cpu",
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """z ~ N(0, I), shape (batch, latent_dim)."""
        return torch.randn((batch, self.latent_dim), generator=generator, device=device)

    def style(self, z: torch.Tensor) -> torch.Tensor:
        """The AdaIN style vector w = mapping(z)."""
        return self.mapping(z)

    def forward(self, x: torch.Tensor, z: Optional[torch.Tensor] = None,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"Generator expects RGB images (N, 3, H, W), got {tuple(x.shape)}")
        n, _, h, w_ = x.shape
        if z is None:
            z = self.sample_z(n, x.device, generator)
        elif z.dim() == 1:
            z = z.unsqueeze(0).expand(n, -1)
        if z.shape != (n, self.latent_dim):
            raise ValueError(f"z must be ({n}, {self.latent_dim}) or ({self.latent_dim},), got {tuple(z.shape)}")
        w = self.style(z.to(device=x.device, dtype=x.dtype))
        pad_h, pad_w = (-h) % OUTPUT_STRIDE, (-w_) % OUTPUT_STRIDE
        if pad_h or pad_w:  # pad to a multiple of 8, crop back below
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        feat = self.res_block(self.encoder(x), w, generator)
        for layer in self.decoder:
            feat = layer(feat, w, generator)
        out = torch.sigmoid(self.to_rgb_scale_bias(self.to_rgb(feat)))
        return out[:, :, :h, :w_]


def build_generator(cfg: GeneratorConfig) -> Generator:
    return Generator(cfg)
