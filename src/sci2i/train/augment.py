"""The "+plain augmentation" control of Table 4: x_s made to look different without a network.

Phase (c) mixes G(x_s) into the source batch (Eq. 11). ``seg.second_source=plain_aug`` mixes
a photometric augmentation of x_s instead, drawn on the fly, so that a Table 4 row measures
what the translation adds beyond "the source images, but looking different" (issue 17: grey,
blurred, lower-contrast, noisy source images alone gained about as much as the translation).

Per image, in this order, each with its own random parameters (torch's global RNG, seeded and
saved in checkpoints, as for P(x_t)), batched on the images' device with plain torch
(:mod:`sci2i.train.perturb`), values clamped to [0, 1]:

* greyscale with probability ``grey_p`` (the luma copied into the three channels);
* colour jitter of strength ``jitter`` (brightness, contrast, saturation, hue:
  :func:`~sci2i.train.perturb.color_jitter`);
* contrast lowered towards the image's mean grey: ``(x − m)·c + m``, ``c ~ U[contrast]``;
* Gaussian blur, ``σ ~ U[blur_sigma]``;
* additive Gaussian noise ``N(0, noise_std²)``.

The labels are unchanged: every operation is photometric and pixel-aligned.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sci2i.train.perturb import _gray, _uniform, color_jitter, gaussian_blur, gaussian_noise


def random_greyscale(x: torch.Tensor, p: float) -> torch.Tensor:
    """Each image of ``x`` (N, 3, H, W) replaced by its luma with probability ``p``."""
    if p <= 0:
        return x
    pick = (torch.rand(x.shape[0], device=x.device) < p).view(-1, 1, 1, 1)
    return torch.where(pick, _gray(x).expand_as(x), x)


def lower_contrast(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Contrast scaled by ``c ~ U[low, high]`` per image, around the image's mean grey."""
    if low == high == 1.0:
        return x
    mean = _gray(x).mean(dim=(2, 3), keepdim=True)
    c = _uniform(x.shape[0], low, high, x).view(-1, 1, 1, 1)
    return ((x - mean) * c + mean).clamp(0, 1)


@dataclass(frozen=True)
class PlainAugmentation:
    """The augmentation of ``seg.second_source=plain_aug`` (strengths: see module docstring)."""

    grey_p: float = 0.5
    jitter: float = 0.4
    contrast: tuple[float, float] = (0.5, 1.0)
    blur_sigma: tuple[float, float] = (0.0, 1.5)
    noise_std: float = 0.03

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] -> augmented copy, same shape and dtype; no gradient."""
        x = random_greyscale(images.float(), self.grey_p)
        x = color_jitter(x, self.jitter)
        x = lower_contrast(x, *self.contrast)
        x = gaussian_blur(x, self.blur_sigma).clamp(0, 1)
        return gaussian_noise(x, self.noise_std).to(images.dtype)
