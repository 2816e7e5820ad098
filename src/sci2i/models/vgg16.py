"""VGG16 written by hand with torchvision's parameter names.

``features.{0,2,5,7,10,12,14,17,19,21,24,26,28}`` are the 13 convolutions,
``classifier.{0,3,6}`` the three linear layers, so torchvision's ``vgg16-397923af.pth`` loads
strictly. Two views are built from the same module (docs/METHOD.md, "Networks"):

* :func:`vgg16_block3` — up to ``block3_conv3`` after its ReLU (``features[:16]``): stride 4,
  256 channels; the discriminator's frozen prior-knowledge trunk.
* :class:`VGG16` with ``dilated=True`` — DeepLab-v2's backbone as the VGG16 domain-adaptation
  baselines build it (AdaptSegNet's ``DeeplabVGG``, used by BDL and the paper's VGG16 peers):
  pool4 and pool5 are removed (``nn.Identity`` at indices 23 and 30, so every parameter keeps
  torchvision's name) and conv5_1-conv5_3 are dilated by 2: output stride 8, 512 channels.
  (DeepLab-v2's Caffe model keeps them as 3×3 stride-1 max-pools instead.)

The fully connected layers ``classifier.*`` are checked with the rest (a strict load: every key
and shape must match), but no network here uses them: DeepLab-v2's fc6/fc7 are new dilated
convolutions (:class:`sci2i.models.deeplab.FC67`, randomly initialised as in AdaptSegNet). So
they live on the meta device: shapes without storage, neither initialised nor filled — 124M of
VGG16's 138M parameters (0.5 GB) that would otherwise be drawn at random and overwritten each
time a network is built.
"""

from __future__ import annotations

from torch import nn

# Number of output channels per conv, "M" = 2x2 max-pool (torchvision's configuration "D").
CFG_D = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
BLOCK3_END = 16  # index after block3_conv3's ReLU in ``features``


def _make_features(dilated: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch, pools = 3, 0
    for v in CFG_D:
        if v == "M":
            pools += 1
            if dilated and pools >= 4:
                # pool4/pool5 removed (AdaptSegNet's DeeplabVGG): output stride 8; the identity
                # keeps the indices, hence torchvision's parameter names, of conv5.
                layers.append(nn.Identity())
            else:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=dilated))
        else:
            dil = 2 if (dilated and pools == 4) else 1  # conv5 block
            layers += [nn.Conv2d(in_ch, int(v), 3, padding=dil, dilation=dil), nn.ReLU(inplace=True)]
            in_ch = int(v)
    return nn.Sequential(*layers)


class VGG16(nn.Module):
    """VGG16 ("D") with torchvision-compatible names; ``dilated`` gives DeepLab's OS-8 variant."""

    def __init__(self, num_classes: int = 1000, dilated: bool = False) -> None:
        super().__init__()
        self.features = _make_features(dilated)
        # shape-only (meta): checked by a strict load, never computed with (module docstring)
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096, device="meta"), nn.ReLU(True), nn.Dropout(),
            nn.Linear(4096, 4096, device="meta"), nn.ReLU(True), nn.Dropout(),
            nn.Linear(4096, num_classes, device="meta"),
        )
        self.dilated = dilated
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)


def vgg16_block3(vgg: VGG16) -> nn.Sequential:
    """``features`` up to block3_conv3 + ReLU: stride 4, 256 channels (shares parameters)."""
    return vgg.features[:BLOCK3_END]


def vgg16_conv5(vgg: VGG16) -> nn.Sequential:
    """All convolutional layers without the last pool (DeepLab-v2 feature extractor)."""
    return vgg.features[:-1]
