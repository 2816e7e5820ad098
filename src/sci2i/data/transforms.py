"""Geometric transforms that keep an image and its label map aligned (image size:
docs/METHOD.md, "Data").

Training (paper): rescale so that the longer side is ``long_side`` (1024), take a random
``crop_size``² crop (384), optionally flip horizontally. Evaluation: the network input is
rescaled to ``eval_long_side`` while the label stays at its full resolution, and logits are
upsampled to it (see :mod:`sci2i.eval.evaluator`).

Both transforms take and return numpy arrays: image H×W×3 uint8 RGB and an optional label
H×W uint8 (trainIds, 255 = ignore). Images are resized with area averaging when shrinking and
bilinear interpolation when enlarging; labels always with pixel-centre-aligned nearest
neighbour (``INTER_NEAREST_EXACT``), so the two grids stay aligned.

Randomness comes from the ``rng`` argument (a ``numpy.random.Generator``). When it is omitted,
one is seeded from torch's global generator, which torch seeds per DataLoader worker; the
result is therefore reproducible under ``torch.manual_seed`` and differs between workers.
:func:`sci2i.data.stream.infinite_loader` passes an explicit per-sample generator instead.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np
import torch

from sci2i.labels import IGNORE_INDEX

Label = Optional[np.ndarray]


def default_rng() -> np.random.Generator:
    """A numpy generator seeded from torch's global RNG (per-worker seeded by DataLoader)."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))


def scaled_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(height, width) after rescaling so that the longer side equals ``long_side``."""
    scale = long_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an RGB uint8 image (area when shrinking, bilinear when enlarging)."""
    if image.shape[:2] == (height, width):
        return image
    shrink = height * width < image.shape[0] * image.shape[1]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp)


def resize_label(label: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a label map with nearest neighbour at pixel centres (no new class values)."""
    if label.shape[:2] == (height, width):
        return label
    return cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)


def _check_pair(image: np.ndarray, label: Label) -> None:
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be H×W×3, got shape {image.shape}")
    if label is not None and label.shape != image.shape[:2]:
        raise ValueError(f"label shape {label.shape} does not match image {image.shape[:2]}")


class TrainTransform:
    """Rescale (longer side = ``long_side``), random ``crop_size``² crop, optional h-flip.

    If the rescaled image is smaller than the crop along a side (e.g. a 2:1 image with
    ``crop_size`` > ``long_side / 2``), it is padded at the bottom/right with black pixels and
    ignore labels (255) before cropping, so every output is exactly ``crop_size``².
    """

    def __init__(self, long_side: int, crop_size: int, flip: bool) -> None:
        if long_side <= 0 or crop_size <= 0:
            raise ValueError(f"long_side and crop_size must be > 0, got {long_side}, {crop_size}")
        self.long_side = long_side
        self.crop_size = crop_size
        self.flip = flip

    def __repr__(self) -> str:
        return f"TrainTransform(long_side={self.long_side}, crop_size={self.crop_size}, flip={self.flip})"

    def __call__(
        self, image: np.ndarray, label: Label = None, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, Label]:
        _check_pair(image, label)
        rng = rng if rng is not None else default_rng()
        h, w = scaled_size(image.shape[0], image.shape[1], self.long_side)
        image = resize_image(image, h, w)
        label = resize_label(label, h, w) if label is not None else None

        c = self.crop_size
        if h < c or w < c:
            pad_h, pad_w = max(0, c - h), max(0, c - w)
            image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), constant_values=0)
            if label is not None:
                label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=IGNORE_INDEX)
            h, w = image.shape[:2]
        y0 = int(rng.integers(0, h - c + 1))
        x0 = int(rng.integers(0, w - c + 1))
        image = image[y0 : y0 + c, x0 : x0 + c]
        label = label[y0 : y0 + c, x0 : x0 + c] if label is not None else None

        if self.flip and rng.random() < 0.5:
            image = image[:, ::-1]
            label = label[:, ::-1] if label is not None else None
        image = np.ascontiguousarray(image)
        label = np.ascontiguousarray(label) if label is not None else None
        return image, label


class EvalTransform:
    """Rescale the image so that its longer side is ``long_side``; the label is untouched.

    The label keeps its full resolution (Cityscapes: 2048×1024) because the paper scores
    predictions there; the evaluator upsamples logits to the label size.
    """

    def __init__(self, long_side: int) -> None:
        if long_side <= 0:
            raise ValueError(f"long_side must be > 0, got {long_side}")
        self.long_side = long_side

    def __repr__(self) -> str:
        return f"EvalTransform(long_side={self.long_side})"

    def __call__(
        self, image: np.ndarray, label: Label = None, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, Label]:
        _check_pair(image, label)
        h, w = scaled_size(image.shape[0], image.shape[1], self.long_side)
        return np.ascontiguousarray(resize_image(image, h, w)), label
