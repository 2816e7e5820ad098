"""StyleGAN building blocks (Karras et al. 2018/2019) used by the generator G.

The paper lists "deconvolution kernels, PixelNorm, Equalized Learning Rate, Adaptive Instance
Normalization and Stochastic Variation as proposed in (Karras et al.)". Each is one small
module here:

=============================  =====================================================
StyleGAN component             code
=============================  =====================================================
equalized learning rate        :class:`EqualizedConv2d`, :class:`EqualizedConvTranspose2d`,
                               :class:`EqualizedLinear` (weights ~ N(0, 1), scaled at
                               run time by the He constant ``gain / sqrt(fan_in)``)
PixelNorm                      :class:`PixelNorm` (unit mean square over channels)
AdaIN                          :class:`AdaIN` (instance norm, then a per-channel scale
                               ``1 + γ(w)`` and bias ``β(w)`` predicted from the style ``w``)
stochastic variation           :class:`NoiseInjection` (per-pixel Gaussian noise times a
                               learned per-channel strength, initialised to 0)
mapping network z -> w         :class:`MappingNetwork`
learned scale and bias         :class:`ScaleBias` (paper: "in every layer, we append a
                               learned scaling factor as well as a learned bias term")
=============================  =====================================================
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: He constant for leaky-ReLU-like activations: weights are scaled by sqrt(2 / fan_in).
HE_GAIN = math.sqrt(2.0)


class EqualizedConv2d(nn.Module):
    """Conv2d with equalized learning rate: ``w`` ~ N(0, 1), used as ``w · gain / sqrt(fan_in)``.

    Because Adam normalises update sizes per parameter, storing unit-variance weights and
    applying the He constant at run time gives every layer the same effective learning rate.
    ``bias=False`` by default: in G a :class:`ScaleBias` follows each convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, gain: float = HE_GAIN, padding_mode: str = "zeros",
                 bias: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = gain / math.sqrt(in_channels * kernel_size * kernel_size)
        self.stride, self.padding, self.padding_mode = stride, padding, padding_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.scale
        if self.padding_mode != "zeros" and self.padding:
            x = F.pad(x, [self.padding] * 4, mode=self.padding_mode)
            return F.conv2d(x, w, self.bias, stride=self.stride)
        return F.conv2d(x, w, self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, stride={self.stride}, padding={self.padding}"


class EqualizedConvTranspose2d(nn.Module):
    """Transposed convolution ("deconvolution") with equalized learning rate.

    ``fan_in`` is the number of inputs that reach one output pixel:
    ``in_channels · (kernel_size / stride)²`` (for kernel 4, stride 2: 4·in_channels).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, gain: float = HE_GAIN, bias: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(in_channels, out_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = gain / math.sqrt(in_channels * (kernel_size / stride) ** 2)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(x, self.weight * self.scale, self.bias, stride=self.stride,
                                  padding=self.padding)

    def extra_repr(self) -> str:
        i, o, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, stride={self.stride}, padding={self.padding}"


class EqualizedLinear(nn.Module):
    """Linear layer with equalized learning rate and an optional learning-rate multiplier.

    ``lr_mul`` < 1 (StyleGAN's mapping network uses 0.01) stores ``w / lr_mul`` and multiplies
    back at run time, so Adam's steps on the stored value are ``lr_mul`` times smaller.
    """

    def __init__(self, in_features: int, out_features: int, gain: float = HE_GAIN,
                 lr_mul: float = 1.0, bias_init: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul))
        self.scale = gain / math.sqrt(in_features) * lr_mul
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class PixelNorm(nn.Module):
    """``x / sqrt(mean_c x² + eps)``: every pixel's feature vector gets unit mean square."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)


class ScaleBias(nn.Module):
    """A learned per-channel scale (init 1) and bias (init 0): ``x · s_c + b_c``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias.view(1, -1, 1, 1), x, self.scale.view(1, -1, 1, 1))


class NoiseInjection(nn.Module):
    """Stochastic variation: ``x + strength_c · n`` with one N(0, 1) value per pixel.

    ``strength`` starts at 0, so the network learns how much noise each channel wants.
    ``generator`` makes the noise reproducible; ``enabled=False`` (``generator.noise=false``)
    removes the layer's effect.
    """

    def __init__(self, channels: int, enabled: bool = True) -> None:
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(channels))
        self.enabled = enabled

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.enabled:
            return x
        n, _, h, w = x.shape
        noise = torch.randn((n, 1, h, w), generator=generator, device=x.device, dtype=x.dtype)
        return x + self.strength.view(1, -1, 1, 1) * noise


class AdaIN(nn.Module):
    """Adaptive instance normalisation: ``(1 + γ(w)) · IN(x) + β(w)``.

    γ and β come from an :class:`EqualizedLinear` of the style vector ``w`` (gain 1, weights
    N(0, 1) scaled by ``1/sqrt(style_dim)``, bias 0): StyleGAN's style modulation
    ``x · (1 + γ) + β`` with StyleGAN's initialisation (StyleGAN2 writes the ``1 +`` as an
    affine bias initialised to 1). At initialisation it is therefore *not* a plain instance
    norm: per channel γ, β ~ N(0, rms(w)²), so each ``z`` renders differently from the first
    step; only ``w = 0`` gives ``IN(x)`` (tests/test_generator.py).
    """

    def __init__(self, channels: int, style_dim: int) -> None:
        super().__init__()
        self.affine = EqualizedLinear(style_dim, 2 * channels, gain=1.0)
        self.eps = 1e-5

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.affine(w).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        x = F.instance_norm(x, eps=self.eps)
        return torch.addcmul(beta, x, 1.0 + gamma)


class MappingNetwork(nn.Module):
    """StyleGAN mapping network: ``w = MLP(PixelNorm(z))`` with leaky-ReLU, lr multiplier 0.01."""

    def __init__(self, latent_dim: int, style_dim: int, num_layers: int,
                 negative_slope: float = 0.2, lr_mul: float = 0.01) -> None:
        super().__init__()
        self.norm = PixelNorm()
        dims = [latent_dim] + [style_dim] * max(num_layers, 1)
        self.layers = nn.ModuleList(
            EqualizedLinear(a, b, lr_mul=lr_mul) for a, b in zip(dims[:-1], dims[1:])
        )
        self.negative_slope = negative_slope
        self.latent_dim = latent_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        w = self.norm(z)
        for layer in self.layers:
            w = F.leaky_relu(layer(w), self.negative_slope)
        return w
