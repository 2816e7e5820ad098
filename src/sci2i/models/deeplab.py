"""DeepLab-v2: an output-stride-8 backbone, ASPP, bilinear upsampling (SPEC §1, Chen et al. 2018).

Paper -> code: the segmentation network F (student F_S and teacher F_T share it) ->
:class:`DeepLabV2`; ASPP -> :class:`ASPP`, exposed as ``DeepLabV2.classifier``.

* **Backbone**: :func:`sci2i.models.backbones.build_backbone` (VGG16 with dilated conv5 as in
  the paper, or EfficientNet-Lite0 for CPU presets, at output stride 8 or 16); it takes RGB in
  [0, 1] and applies the input normalisation of its weights.
* **ASPP**: four parallel 3×3 convolutions with dilations (6, 12, 18, 24), each mapping the
  features straight to class logits; their outputs are **summed** — all four. (A widely copied
  public implementation ``return``s inside the loop after the second branch, so only two
  branches contribute; we do not.) Initialised as in DeepLab: weights N(0, 0.01²), bias 0.
* **Upsampling**: bilinear to the input size (``align_corners=False``).

The ASPP is the network's last *linear* classification layer (it is linear in the backbone
features): the linear probe of Table 5 re-initialises it (:meth:`DeepLabV2.reset_classifier`)
and trains it alone (:meth:`DeepLabV2.freeze_backbone`).

Learning rates: :meth:`DeepLabV2.param_groups` gives the backbone ``lr`` and the randomly
initialised head ``head_lr_mult · lr`` (DeepLab's classic ×10). Each group carries its
``lr_mult`` so that a schedule can set ``group["lr"] = lr(step) · group["lr_mult"]``.

BatchNorm (ResNet-101: always frozen, statistics *and* affine, as DeepLab-v2 trains it —
:mod:`sci2i.models.resnet`). EfficientNet (VGG16 has none): with ``freeze_bn=True`` (default) every
BatchNorm of the backbone stays in eval mode, using the ImageNet running statistics, while its
affine scale and shift still train. This is the usual DeepLab fine-tuning choice at batch size
1-2, where batch statistics are noise, and it makes one concatenated forward of
``[x_s, G(x_s), P(x_t)]`` exactly equal to three separate forwards (no statistics mixed across
domains). ``freeze_bn=False`` uses batch statistics of the whole concatenated batch.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sci2i.models.backbones import build_backbone
from sci2i.models.resnet import load_pretrained_classifier

_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling of DeepLab-v2: Σ_r conv3x3_{dilation r}(features)."""

    def __init__(self, in_channels: int, num_classes: int, rates: Sequence[int] = (6, 12, 18, 24)) -> None:
        super().__init__()
        self.rates = tuple(int(r) for r in rates)
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=r, dilation=r, bias=True) for r in self.rates
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in self.branches:
            nn.init.normal_(conv.weight, 0.0, 0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](features)
        for branch in self.branches[1:]:
            out = out + branch(features)  # all branches, not just the first two
        return out


class DeepLabV2(nn.Module):
    """``logits = upsample(ASPP(backbone(x)))``; x: (N, 3, H, W) RGB in [0, 1] -> (N, C, H, W)."""

    def __init__(
        self,
        backbone_name: str = "vgg16",
        weights: str = "",
        num_classes: int = 19,
        aspp_rates: Sequence[int] = (6, 12, 18, 24),
        freeze_bn: bool = True,
        output_stride: int = 8,
        backbone_variant: str = "",
    ) -> None:
        super().__init__()
        self.backbone_name = backbone_name
        self.num_classes = num_classes
        self.freeze_bn = freeze_bn
        self.backbone = build_backbone(backbone_name, weights, output_stride, backbone_variant)
        self.classifier = ASPP(self.backbone.out_channels, num_classes, aspp_rates)
        if self.backbone.pretrained_classifier:  # ResNet-101's DeepLab layer5, if its shapes fit
            load_pretrained_classifier(self.classifier, self.backbone.pretrained_classifier, weights)
            self.backbone.pretrained_classifier = {}
        self.train()

    @property
    def input_norm(self) -> str:
        """The input convention of the backbone's weights (recorded with exported weights)."""
        return self.backbone.norm.convention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images (N, 3, H, W), got {tuple(x.shape)}")
        logits = self.classifier(self.backbone(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def train(self, mode: bool = True) -> "DeepLabV2":
        super().train(mode)
        if mode and self.freeze_bn:
            for m in self.backbone.modules():
                if isinstance(m, _BN_TYPES):
                    m.eval()
        return self

    def param_groups(self, lr: float, head_lr_mult: float = 10.0) -> list[dict]:
        """Optimiser groups: backbone at ``lr``, classifier (ASPP) at ``head_lr_mult · lr``."""
        groups = [
            {"name": "backbone", "params": [p for p in self.backbone.parameters() if p.requires_grad],
             "lr": lr, "lr_mult": 1.0},
            {"name": "classifier", "params": [p for p in self.classifier.parameters() if p.requires_grad],
             "lr": lr * head_lr_mult, "lr_mult": head_lr_mult},
        ]
        return [g for g in groups if g["params"]]

    def reset_classifier(self) -> None:
        """Re-initialise the last (linear) classification layer, for the linear probe."""
        self.classifier.reset_parameters()

    def freeze_backbone(self) -> None:
        """Only the classifier trains from now on (linear probe); the backbone gets no gradient."""
        self.backbone.requires_grad_(False)
        self.freeze_bn = True
        self.train(self.training)


def build_deeplab(model_cfg, num_classes: int = 19) -> DeepLabV2:
    """DeepLab-v2 from a :class:`sci2i.config.schema.SegModelConfig`."""
    return DeepLabV2(
        model_cfg.backbone, model_cfg.weights, num_classes=num_classes,
        aspp_rates=tuple(model_cfg.aspp_rates), freeze_bn=model_cfg.freeze_bn,
        output_stride=model_cfg.output_stride,
    )
