"""The perturbation P(x_t) of Eq. 12: colour jitter, Gaussian blur, noise (Zhou et al. 2020).

Photometric only, so the student's prediction on P(x_t) stays pixel-aligned with the
teacher's on x_t. Batched on the images' device with plain torch; every image of the batch gets
its own random parameters, drawn from torch's global RNG (seeded, and saved in checkpoints).

For each image, in this order (values clamped to [0, 1] after each photometric op):

* brightness ``x·b``, contrast ``(x − mean gray)·c + mean gray``, saturation
  ``gray + (x − gray)·s`` with ``b, c, s ~ U[1 − jitter, 1 + jitter]``, then a hue rotation by
  ``h ~ U[−jitter/4, jitter/4]`` of a turn in YIQ space (jitter 0.4 -> hue ±0.1, the usual
  torchvision ColorJitter(0.4, 0.4, 0.4, 0.1) strength);
* Gaussian blur with ``σ ~ U[blur_sigma]`` (separable, reflect padding, kernel ±3σ_max);
* additive Gaussian noise ``N(0, noise_std²)``.

``jitter = 0``, ``blur_sigma = [0, 0]`` and ``noise_std = 0`` make P the identity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

# RGB -> YIQ and back (NTSC); hue rotation is a rotation of the (I, Q) plane.
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_GRAY = torch.tensor([0.299, 0.587, 0.114])


def _uniform(n: int, low: float, high: float, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(n, device=like.device, dtype=like.dtype) * (high - low) + low


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (x * _GRAY.to(x).view(1, 3, 1, 1)).sum(1, keepdim=True)


def color_jitter(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Random brightness, contrast, saturation (factors in [1 ± s]) and hue (±s/4 turn)."""
    if strength <= 0:
        return x
    n = x.shape[0]
    view = (n, 1, 1, 1)
    lo, hi = max(0.0, 1.0 - strength), 1.0 + strength
    x = (x * _uniform(n, lo, hi, x).view(view)).clamp(0, 1)
    mean = _gray(x).mean(dim=(2, 3), keepdim=True)
    x = ((x - mean) * _uniform(n, lo, hi, x).view(view) + mean).clamp(0, 1)
    gray = _gray(x)
    x = ((x - gray) * _uniform(n, lo, hi, x).view(view) + gray).clamp(0, 1)
    angle = _uniform(n, -strength / 4, strength / 4, x) * 2 * math.pi
    cos, sin = angle.cos(), angle.sin()
    rot = torch.zeros(n, 3, 3, device=x.device, dtype=x.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    to_yiq = _RGB2YIQ.to(x)
    mat = torch.linalg.inv(to_yiq) @ rot @ to_yiq  # (n, 3, 3) per-image colour transform
    x = torch.einsum("nij,njhw->nihw", mat, x)
    return x.clamp(0, 1)


def gaussian_blur(x: torch.Tensor, sigma_range: Sequence[float]) -> torch.Tensor:
    """Separable Gaussian blur with a per-image σ ~ U[sigma_range]; σ = 0 is the identity."""
    lo, hi = float(sigma_range[0]), float(sigma_range[1])
    if hi <= 0:
        return x
    n, c, h, w = x.shape
    sigma = _uniform(n, lo, hi, x).clamp(min=1e-3)
    radius = max(1, min(math.ceil(3 * hi), (min(h, w) - 1) // 2))
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets.view(1, -1) / sigma.view(-1, 1)) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (n, k)
    kernel = kernel.repeat_interleave(c, dim=0)  # one kernel per (image, channel) group
    y = x.reshape(1, n * c, h, w)
    y = F.pad(y, (radius, radius, 0, 0), mode="reflect")
    y = F.conv2d(y, kernel.view(n * c, 1, 1, -1), groups=n * c)
    y = F.pad(y, (0, 0, radius, radius), mode="reflect")
    y = F.conv2d(y, kernel.view(n * c, 1, -1, 1), groups=n * c)
    return y.view(n, c, h, w)


def gaussian_noise(x: torch.Tensor, std: float) -> torch.Tensor:
    if std <= 0:
        return x
    return (x + torch.randn_like(x) * std).clamp(0, 1)


@dataclass(frozen=True)
class Perturbation:
    """P(x_t) of Eq. 12 with strengths from ``cfg.seg`` (``jitter``, ``blur_sigma``, ``noise_std``)."""

    jitter: float = 0.4
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    noise_std: float = 0.05

    @classmethod
    def from_config(cls, seg_cfg) -> "Perturbation":
        return cls(seg_cfg.jitter, tuple(seg_cfg.blur_sigma), seg_cfg.noise_std)  # type: ignore[arg-type]

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] -> perturbed copy, same shape; no gradient."""
        x = color_jitter(images.float(), self.jitter)
        x = gaussian_blur(x, self.blur_sigma)
        return gaussian_noise(x, self.noise_std).to(images.dtype)
