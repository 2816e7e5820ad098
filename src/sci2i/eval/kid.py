"""Kernel inception distance (KID, Bińkowski et al. 2018): how far G(x_s) is from x_t in look.

KID is the squared maximum mean discrepancy between two sets of image features under the
polynomial kernel ``k(a, b) = (a·b / d + 1)³`` (d = feature width), estimated without bias:

    MMD²_u = 1/(m(m−1)) Σ_{i≠j} k(x_i, x_j) + 1/(n(n−1)) Σ_{i≠j} k(y_i, y_j) − 2/(mn) Σ_{i,j} k(x_i, y_j)

(:func:`mmd2_unbiased`). As in the KID paper (and torch-fidelity, torchmetrics) it is averaged
over ``num_subsets`` random subsets of ``subset_size`` images of each set, with their standard
deviation (:func:`kid`); the subsets come from a generator of their own, so computing KID
inside a training loop draws nothing from the training's random numbers. 0 means the two sets
are alike (it can be slightly negative: the estimator is unbiased).

Features (:class:`KIDFeatures`): not Inception (nothing is downloaded at run time) but the
frozen ImageNet networks sci2i has, after their last ReLU and globally average-pooled, as
Inception's pool3 features are: EfficientNet-Lite0's head (1,280 channels, the input of its
classifier; the package weights) or VGG16's conv5_3 (512 channels, torchvision's weights).
Values are therefore comparable only between runs with the same features; they are not the
KID figures of other papers. Every set's images are rescaled to the same longer side
(``data.eval_long_side`` in the pipeline and the I2I loop).

Why not torchmetrics' ``KernelInceptionDistance``: it takes a custom feature extractor and
needs no download, but it would add two packages (torchmetrics, lightning-utilities) for the
few lines below, draws its subsets from torch's global RNG (which would change a training run
that computes KID along the way), and needs ``subset_size`` images in both sets.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np
import torch
from torch import nn

from sci2i.data.build import build_source_dataset, build_target_dataset
from sci2i.data.io import read_rgb
from sci2i.data.transforms import resize_image, scaled_size
from sci2i.models.backbones import FrozenTrunk, _load_vgg16
from sci2i.models.efficientnet import PACKAGE_NORM, build_efficientnet_lite0
from sci2i.models.input_norm import InputNorm
from sci2i.models.vgg16 import vgg16_conv5

log = logging.getLogger("sci2i")

#: Subset size and count of the KID paper's estimate (torch-fidelity's defaults).
SUBSET_SIZE = 1000
NUM_SUBSETS = 100


# ----------------------------------------------------------------------------- the estimator
def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``k(x_i, y_j) = (x_i·y_j / d + 1)³`` for (m, d) and (n, d) features -> (m, n)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """The unbiased estimate of MMD² between feature sets ``x`` (m, d) and ``y`` (n, d), m, n ≥ 2."""
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise ValueError(f"KID needs at least 2 images per set; got {m} and {n}")
    x, y = x.double(), y.double()
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * k_xy.mean())


def kid(x: torch.Tensor, y: torch.Tensor, subset_size: int = SUBSET_SIZE, num_subsets: int = NUM_SUBSETS,
        seed: int = 0) -> dict:
    """KID between feature sets ``x`` and ``y``: the mean and standard deviation of
    :func:`mmd2_unbiased` over ``num_subsets`` subsets of ``min(subset_size, m, n)`` rows of each,
    drawn without replacement by a generator seeded with ``seed``. When the subsets are both
    whole sets (``m == n <= subset_size``) every subset is the same: one estimate, no spread
    (``num_subsets`` 1, ``kid_std`` None).

    Returns ``{"kid", "kid_std", "n_x", "n_y", "subset_size", "num_subsets"}``.
    """
    m, n = x.shape[0], y.shape[0]
    size = min(subset_size, m, n)
    if size == m == n:
        return {"kid": mmd2_unbiased(x, y), "kid_std": None, "n_x": m, "n_y": n,
                "subset_size": size, "num_subsets": 1}
    gen = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(num_subsets):
        ix = torch.randperm(m, generator=gen)[:size]
        iy = torch.randperm(n, generator=gen)[:size]
        values.append(mmd2_unbiased(x[ix], y[iy]))
    v = np.asarray(values)
    return {"kid": float(v.mean()), "kid_std": float(v.std()), "n_x": m, "n_y": n,
            "subset_size": size, "num_subsets": num_subsets}


# ----------------------------------------------------------------------------- the features
class _LiteHeadFeatures(nn.Module):
    """EfficientNet-Lite0 up to its head's ReLU6 (what its classifier pools)."""

    def __init__(self, weights: str) -> None:
        super().__init__()

        net = build_efficientnet_lite0(weights)
        net._fc = nn.Identity()  # the classifier is not used
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)


class KIDFeatures(nn.Module):
    """A frozen ImageNet network, globally average-pooled: RGB in [0, 1] (N, 3, H, W) -> (N, D)."""

    def __init__(self, trunk: str = "efficientnet_lite0", weights: str = "package") -> None:
        super().__init__()

        # Building a network initialises its layers from torch's global RNG before the weights
        # are loaded: restore it, so that a training run that measures KID draws what it would
        # have drawn without (the I2I loop builds this after seeding).
        with torch.random.fork_rng(devices=[]):
            if trunk == "efficientnet_lite0":
                self.net = FrozenTrunk(InputNorm(PACKAGE_NORM), _LiteHeadFeatures(weights), 1280, 32)
            elif trunk == "vgg16":
                vgg, norm = _load_vgg16(weights, dilated=False)
                self.net = FrozenTrunk(InputNorm(norm), vgg16_conv5(vgg), 512, 16)
            else:
                raise ValueError(f"KID features: unknown trunk '{trunk}' (efficientnet_lite0 or vgg16)")
        self.name = f"{trunk} ({'package' if weights == 'package' else weights or 'random init'})"
        self.dim = self.net.out_channels

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).float().mean(dim=(2, 3))


@torch.no_grad()
def image_features(extractor: nn.Module, images: Iterable[torch.Tensor], device: torch.device | str = "cpu",
                   batch_size: int = 16) -> torch.Tensor:
    """Features (N, D) on the CPU of (3, H, W) images; consecutive images of one size are batched."""
    out: list[torch.Tensor] = []
    batch: list[torch.Tensor] = []

    def flush() -> None:
        if batch:
            out.append(extractor(torch.stack(batch).to(device)).cpu())
            batch.clear()

    for image in images:
        if batch and (image.shape != batch[0].shape or len(batch) == batch_size):
            flush()
        batch.append(image.float())
    flush()
    if not out:
        raise ValueError("KID: no images")
    return torch.cat(out)


def spread_indices(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when ``k`` is 0 or ≥ ``n``)."""
    if k <= 0 or k >= n:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, k).round()})


def read_image(path, long_side: int = 0) -> torch.Tensor:
    """An image file as (3, H, W) RGB in [0, 1], its longer side rescaled to ``long_side`` (0: as is)."""

    image = read_rgb(path)
    if long_side > 0:
        image = resize_image(image, *scaled_size(image.shape[0], image.shape[1], long_side))
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255)


def dataset_images(dataset, indices: Iterable[int], long_side: int = 0) -> Iterable[torch.Tensor]:
    """The images of ``dataset`` (any sci2i dataset: ``files(i)``) at ``indices``, at ``long_side``;
    the labels are not read."""
    for i in indices:
        yield read_image(dataset.files(i)[0], long_side)


# ----------------------------------------------------------------------------- the phase
def translation_kid(source, translated, target, extractor: nn.Module, device: torch.device | str = "cpu",
                    max_images: int = SUBSET_SIZE, long_side: int = 0, seed: int = 0) -> dict:
    """KID of x_s and of G(x_s) against x_t (datasets of the three sets, images at ``long_side``).

    At most ``max_images`` images of each set, spread over it; x_s and G(x_s) are the same
    images (G(x_s) is written under x_s's file names: matched by name, an image the translation
    skipped is left out of both). Returns ``{"features", "source_vs_target": kid(...),
    "translated_vs_target": kid(...)}``.
    """
    fake_index = {Path(translated.files(j)[0]).stem: j for j in range(len(translated))}
    pairs = [(i, fake_index.get(Path(source.files(i)[0]).stem)) for i in range(len(source))]
    pairs = [p for p in pairs if p[1] is not None]
    pairs = [pairs[k] for k in spread_indices(len(pairs), max_images)]
    src_idx, fake_idx = [i for i, _ in pairs], [j for _, j in pairs]
    trg = image_features(extractor, dataset_images(target, spread_indices(len(target), max_images), long_side),
                         device)
    src = image_features(extractor, dataset_images(source, src_idx, long_side), device)
    fake = image_features(extractor, dataset_images(translated, fake_idx, long_side), device)
    return {"features": getattr(extractor, "name", type(extractor).__name__),
            "source_vs_target": kid(src, trg, seed=seed),
            "translated_vs_target": kid(fake, trg, seed=seed)}


class KIDMonitor:
    """KID of EMA-G's translations of fixed source images against fixed target images, for the
    I2I loop (``i2i.kid_images``): the target's and the source's features are computed once."""

    def __init__(self, source_images: torch.Tensor | list, target_images: torch.Tensor | list,
                 extractor: nn.Module, device: torch.device | str = "cpu") -> None:
        self.extractor, self.device = extractor, device
        self.source_images = list(source_images)
        self.target = image_features(extractor, target_images, device)
        self.baseline = kid(image_features(extractor, self.source_images, device), self.target)

    def __call__(self, translate: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, float]:
        """``{"KID/translated_vs_target", "KID/source_vs_target"}`` with ``translate`` (a batch of
        one image -> its translation) applied to each fixed source image."""
        fake = image_features(self.extractor, (translate(x[None].to(self.device))[0] for x in self.source_images),
                              self.device)
        return {"KID/translated_vs_target": kid(fake, self.target)["kid"],
                "KID/source_vs_target": self.baseline["kid"]}


def kid_monitor(cfg, device) -> Optional[KIDMonitor]:
    """The I2I loop's :class:`KIDMonitor` for ``cfg`` (None with ``i2i.kid_images=0``): whole
    images at ``data.eval_long_side``, not the training crops."""
    n = cfg.i2i.kid_images
    if n <= 0:
        return None

    src = build_source_dataset(cfg.data, train=False)
    trg = build_target_dataset(cfg.data, cfg.data.target_train_split, with_labels=False, train=False)
    extractor = KIDFeatures(cfg.discriminator.trunk, cfg.discriminator.trunk_weights).to(device)
    side = cfg.data.eval_long_side
    monitor = KIDMonitor(list(dataset_images(src, spread_indices(len(src), n), side)),
                         list(dataset_images(trg, spread_indices(len(trg), n), side)), extractor, device)
    log.info("I2I KID monitor: %d source and %d target images, %s features; KID(x_s, x_t) = %.4f",
             len(monitor.source_images), monitor.target.shape[0], extractor.name, monitor.baseline["kid"])
    return monitor
