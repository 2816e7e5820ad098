"""DeepLab-v2: an output-stride-8 backbone, a head, bilinear upsampling (Chen et al. 2018).

Paper -> code (docs/METHOD.md, "Networks"): the segmentation network F (student F_S and
teacher F_T share it) -> :class:`DeepLabV2`; ASPP -> :class:`ASPP`, exposed as
``DeepLabV2.classifier``; DeepLab-v2 VGG16's fc6/fc7 -> :class:`FC67`, exposed as
``DeepLabV2.fc``.

* **Backbone**: :func:`sci2i.models.backbones.build_backbone` (VGG16 with dilated conv5 as in
  the paper, or EfficientNet-Lite0 for CPU presets, at output stride 8 or 16); it takes RGB in
  [0, 1] and applies the input normalisation of its weights.
* **Head** (``model.head``, :data:`sci2i.config.schema.SEG_HEADS`):

  - ``"fc_aspp"`` (the paper presets): fc6 = 3×3 conv C_in→1024, dilation 4, ReLU; fc7 = 3×3
    conv 1024→1024, dilation 4, ReLU; then the ASPP on 1024 channels. This is the VGG16
    DeepLab-v2 of AdaptSegNet's ``DeeplabVGG`` (Tsai et al. 2018), which BDL and the paper's
    I2I+SSL peers of Table 1 use, so that our VGG16 figures compare with theirs: 29,573,004
    parameters with VGG16 and 19 classes. fc6/fc7 start at random (PyTorch's ``nn.Conv2d``
    default, as AdaptSegNet leaves them), not from ImageNet's fully connected weights: a 3×3
    kernel at dilation 4 has no counterpart in VGG16's 7×7 fc6 and 1×1 fc7 (DeepLab's
    conversion subsamples fc6 for its own kernel and rate), and the peers do not convert.
  - ``"aspp"``: the ASPP straight on the backbone features, for any C_in (VGG16's 512:
    15,064,972 parameters; EfficientNet-Lite0 in the toy-city presets; a ResNet's 2048).
* **ASPP**: four parallel 3×3 convolutions with dilations (6, 12, 18, 24), each mapping its
  input features straight to class logits; their outputs are **summed** — all four. (A widely
  copied public implementation ``return``s inside the loop after the second branch, so only
  two branches contribute; we do not.) Initialised as in DeepLab: weights N(0, 0.01²), bias 0.
* **Upsampling**: bilinear to the input size (``align_corners=False``).

The ASPP is the network's last *linear* classification layer (it is linear in its input,
:meth:`DeepLabV2.features`): the linear probe of Table 5 re-initialises it
(:meth:`DeepLabV2.reset_classifier`) and trains it alone (:meth:`DeepLabV2.freeze_backbone`
freezes the backbone and fc6/fc7).

Learning rates: :meth:`DeepLabV2.param_groups` gives the backbone ``lr`` and the randomly
initialised head (fc6/fc7 and ASPP) ``head_lr_mult · lr`` (DeepLab's classic ×10; the paper
presets use 1, the paper's one lr). Each group carries its ``lr_mult`` so that a schedule can
set ``group["lr"] = lr(step) · group["lr_mult"]``.

BatchNorm (ResNet-101: always frozen, statistics *and* affine, as DeepLab-v2 trains it —
:mod:`sci2i.models.resnet`). EfficientNet (VGG16 has none): with ``freeze_bn=True`` (default) every
BatchNorm of the backbone stays in eval mode, using the ImageNet running statistics, while its
affine scale and shift still train. This is the usual DeepLab fine-tuning choice at batch size
1-2, where batch statistics are noise, and it makes one concatenated forward of
``[x_s, G(x_s), P(x_t)]`` exactly equal to three separate forwards (no statistics mixed across
domains). ``freeze_bn=False`` uses batch statistics of the whole concatenated batch.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sci2i.config.schema import SEG_HEADS
from sci2i.errors import UserError
from sci2i.labels import CLASS_NAMES
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


#: fc6/fc7 of DeepLab-v2's VGG16 as AdaptSegNet builds it: width and dilation of both.
FC_CHANNELS = 1024
FC_DILATION = 4


class FC67(nn.Module):
    """fc6/fc7 as dilated convolutions: ``relu(fc7(relu(fc6(x))))``, (N, C_in, h, w) -> (N, 1024, h, w).

    fc6: 3×3, C_in → 1024, dilation 4; fc7: 3×3, 1024 → 1024, dilation 4; padding = dilation,
    so the resolution is kept. No dropout (AdaptSegNet has none; DeepLab's Caffe model has 0.5
    after each). Random init: PyTorch's ``nn.Conv2d`` default (the module docstring says why).
    """

    def __init__(self, in_channels: int, channels: int = FC_CHANNELS, dilation: int = FC_DILATION) -> None:
        super().__init__()
        self.fc6 = nn.Conv2d(in_channels, channels, 3, padding=dilation, dilation=dilation)
        self.fc7 = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc7(F.relu(self.fc6(x))))


def build_head_features(head: str, in_channels: int) -> tuple[nn.Module, int]:
    """The layers between backbone and ASPP for ``model.head``, and their output channels."""
    if head == "fc_aspp":
        fc = FC67(in_channels)
        return fc, fc.out_channels
    if head == "aspp":
        return nn.Identity(), in_channels
    raise UserError(f"unknown model.head '{head}'; choose one of {', '.join(SEG_HEADS)}")


class DeepLabV2(nn.Module):
    """``logits = upsample(ASPP(fc(backbone(x))))``; x: (N, 3, H, W) RGB in [0, 1] -> (N, C, H, W).

    ``fc`` is :class:`FC67` for ``head="fc_aspp"`` and the identity for ``head="aspp"``.
    """

    def __init__(
        self,
        backbone_name: str = "vgg16",
        weights: str = "",
        num_classes: int = 19,
        aspp_rates: Sequence[int] = (6, 12, 18, 24),
        freeze_bn: bool = True,
        output_stride: int = 8,
        head: str = "aspp",
        backbone_variant: str = "",
        class_names: Optional[Sequence[str]] = None,
    ) -> None:
        super().__init__()
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} outputs")
        self.backbone_name = backbone_name
        self.head_name = head
        self.num_classes = num_classes
        #: output channel k is class ``class_names[k]`` (recorded in the checkpoint's metadata)
        self.class_names: tuple[str, ...] = tuple(class_names) if class_names is not None else (
            CLASS_NAMES if num_classes == len(CLASS_NAMES) else tuple(f"class{i}" for i in range(num_classes)))
        self.freeze_bn = freeze_bn
        self.backbone = build_backbone(backbone_name, weights, output_stride, backbone_variant)
        self.fc, head_channels = build_head_features(head, self.backbone.out_channels)
        self.classifier = ASPP(head_channels, num_classes, aspp_rates)
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
        logits = self.classifier(self.features(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The ASPP's input: fc7's output (``fc_aspp``) or the backbone's features (``aspp``)."""
        return self.fc(self.backbone(x))

    def train(self, mode: bool = True) -> "DeepLabV2":
        super().train(mode)
        if mode and self.freeze_bn:
            for m in self.backbone.modules():
                if isinstance(m, _BN_TYPES):
                    m.eval()
        return self

    def param_groups(self, lr: float, head_lr_mult: float = 10.0) -> list[dict]:
        """Optimiser groups: backbone at ``lr``, head (fc6/fc7 and ASPP) at ``head_lr_mult · lr``."""
        head = [*self.fc.parameters(), *self.classifier.parameters()]
        groups = [
            {"name": "backbone", "params": [p for p in self.backbone.parameters() if p.requires_grad],
             "lr": lr, "lr_mult": 1.0},
            {"name": "head", "params": [p for p in head if p.requires_grad],
             "lr": lr * head_lr_mult, "lr_mult": head_lr_mult},
        ]
        return [g for g in groups if g["params"]]

    def reset_classifier(self) -> None:
        """Re-initialise the last (linear) classification layer, for the linear probe."""
        self.classifier.reset_parameters()

    def freeze_backbone(self) -> None:
        """Only the classifier trains from now on (linear probe); backbone and fc6/fc7 get no gradient."""
        self.backbone.requires_grad_(False)
        self.fc.requires_grad_(False)
        self.freeze_bn = True
        self.train(self.training)


def build_deeplab(model_cfg, class_names: Sequence[str] = CLASS_NAMES) -> DeepLabV2:
    """DeepLab-v2 from a :class:`sci2i.config.schema.SegModelConfig` with one output per class
    of ``class_names`` (a run's: :func:`sci2i.data.custom.run_class_names`)."""
    return DeepLabV2(
        model_cfg.backbone, model_cfg.weights, num_classes=len(class_names),
        aspp_rates=tuple(model_cfg.aspp_rates), freeze_bn=model_cfg.freeze_bn,
        output_stride=model_cfg.output_stride, head=model_cfg.head, class_names=class_names,
    )
