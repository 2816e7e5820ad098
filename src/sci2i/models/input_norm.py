"""Input normalisation that pretrained weights expect, recorded beside the weights.

All sci2i models take RGB images in [0, 1]. Each backbone converts them to what its weights
were trained on. The convention is never guessed from a file name:

* ``torchvision``: RGB in [0, 1], minus ImageNet mean, divided by ImageNet std.
* ``caffe``: BGR in [0, 255] minus the mean pixel (Caffe-converted VGG16, as many DeepLab
  codebases use, and the DeepLab ResNet-101 COCO initialisation of AdaptSegNet and ADVENT).
* ``tf_lite``: RGB in [0, 255], (x - 127) / 128 (EfficientNet-Lite's TensorFlow weights).

For a user-supplied weights file ``W`` the convention is read from the sidecar ``W.json``
(``{"input_norm": "torchvision"}``), written once by the user (see README) or by
:func:`write_norm_sidecar`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from sci2i.errors import UserError

NORMS = {
    # name: (channel order, scale to apply to [0,1], mean, std) in the network's channel order
    "torchvision": ("rgb", 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "caffe": ("bgr", 255.0, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0)),
    "tf_lite": ("rgb", 255.0, (127.0, 127.0, 127.0), (128.0, 128.0, 128.0)),
}


class InputNorm(nn.Module):
    """Maps RGB [0, 1] images to the input convention of a set of weights (no parameters)."""

    def __init__(self, convention: str = "torchvision") -> None:
        super().__init__()
        if convention not in NORMS:
            raise UserError(f"unknown input normalisation '{convention}'; use one of {', '.join(NORMS)}")
        order, scale, mean, std = NORMS[convention]
        self.convention = convention
        self.flip = order == "bgr"
        self.register_buffer("scale", torch.tensor(scale), persistent=False)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flip:
            x = x.flip(1)
        return (x * self.scale - self.mean) / self.std


def sidecar_path(weights: str | Path) -> Path:
    return Path(str(weights) + ".json")


def read_norm_sidecar(weights: str | Path) -> str:
    """The input convention recorded beside ``weights``; a clear error if it is missing."""
    if not Path(weights).is_file():
        raise UserError(f"weights file not found: {weights} (a path to a local file; nothing is "
                        f"downloaded at run time)")
    side = sidecar_path(weights)
    if not side.is_file():
        raise UserError(
            f"{weights} has no input-normalisation record. Create {side} containing "
            f'{{"input_norm": "torchvision"}} for torchvision\'s weights (vgg16-397923af.pth, '
            f'resnet101-63fe2227.pth), or {{"input_norm": "caffe"}} for Caffe-converted weights '
            f'(BGR, 0-255, mean pixel; e.g. the DeepLab ResNet-101 COCO init with keys under Scale.).'
        )
    try:
        conv = json.loads(side.read_text())["input_norm"]
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{side} must be JSON like {{\"input_norm\": \"torchvision\"}}: {e}") from e
    if conv not in NORMS:
        raise UserError(f"{side}: input_norm '{conv}' is not one of {', '.join(NORMS)}")
    return conv


def write_norm_sidecar(weights: str | Path, convention: str) -> Path:
    if convention not in NORMS:
        raise UserError(f"unknown input normalisation '{convention}'")
    side = sidecar_path(weights)
    side.write_text(json.dumps({"input_norm": convention}) + "\n")
    return side
