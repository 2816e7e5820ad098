"""DeepLab-v2 ResNet-101: the backbone most GTA5/SYNTHIA → Cityscapes results are reported on.

The network AdaptSegNet (Tsai et al. 2018) and ADVENT (Vu et al. 2019) train, written here with
the layer names of their model files (and of torchvision's ResNet), so that both families of
pretrained weights load strictly:

=====================  ==========================================  ==============================
DeepLab / Caffe name   code                                        output (input H×W, variant caffe)
=====================  ==========================================  ==============================
conv1 (7×7, /2)        ``ResNet101.conv1``, ``bn1``, ``relu``      64 ch, ⌈H/2⌉
pool1 (3×3, /2)        ``ResNet101.maxpool``                       64 ch, stride 4
res2a … res2c          ``layer1`` (3 bottlenecks)                  256 ch, stride 4
res3a … res3b3         ``layer2`` (4 bottlenecks, first /2)        512 ch, stride 8
res4a … res4b22        ``layer3`` (23 bottlenecks, dilation 2)     1024 ch, stride 8
res5a … res5c          ``layer4`` (3 bottlenecks, dilation 4)      2048 ch, stride 8
fc1 (ASPP, "layer5")   ``sci2i.models.deeplab.ASPP`` (not here)    |C| ch: Σ of 4 dilated 3×3
=====================  ==========================================  ==============================

Each bottleneck is ``1×1 → 3×3 (dilation d) → 1×1 (×4 channels)``, each convolution followed by a
BatchNorm, ReLU after the first two and after the residual sum; the first block of every layer
has a projection shortcut ``downsample = 1×1 conv (stride s) + BatchNorm``. As in DeepLab-v2 (and
unlike torchvision's ``replace_stride_with_dilation``) *every* block of layer3 uses dilation 2 and
every block of layer4 dilation 4, the first one included, and neither layer strides: output
stride 8 with 2,048 channels.

Two variants, which differ only in where a layer's stride sits and in pool1's rounding; the
weights decide which one is built (:func:`load_resnet101`):

* ``caffe`` — the DeepLab ResNet-101 converted from Caffe, the COCO-pretrained initialisation
  ``DeepLab_resnet_pretrained_init-f81d91e8.pth`` (or ``MS_DeepLab_resnet_pretrained_COCO_init.pth``)
  that AdaptSegNet and ADVENT start from: the stride in the first 1×1 convolution of a block,
  pool1 with ``ceil_mode=True`` (Caffe's rounding; 384 → 97 → 49). Its keys sit under
  ``Scale.`` and it also holds DeepLab's ASPP classifier ``Scale.layer5.conv2d_list.{0..3}``; that
  is loaded into our ASPP when its shapes fit (same class count), else skipped as those
  codebases do. Input: BGR in [0, 255] minus the mean pixel (sidecar ``{"input_norm": "caffe"}``).
* ``pytorch`` — torchvision's ImageNet ``resnet101`` (``resnet101-63fe2227.pth`` or
  ``resnet101-5d3b4d8f.pth``): the stride in the 3×3 convolution, pool1 with floor rounding;
  its ImageNet classifier ``fc.*`` is not used. Input: torchvision's RGB mean/std
  (``{"input_norm": "torchvision"}``). Also the variant of a random initialisation.

**BatchNorm is frozen**, statistics and affine alike, as in both codebases (their batch of one
or two crops cannot estimate statistics): every BatchNorm has ``requires_grad=False`` and stays in
eval mode whatever ``.train()`` is called with, so training never changes ``weight``, ``bias``,
``running_mean`` or ``running_var``. Random initialisation is DeepLab's: every convolution
N(0, 0.01²), BatchNorm scale 1, shift 0 (with unit statistics).

Size: 42.5 M parameters (42.4 M trainable convolution weights + 0.1 M frozen BatchNorm affine);
the forward FLOPs at 384² and the training step are in docs/SEGMENTATION.md.
"""

from __future__ import annotations

import logging
from typing import Mapping, Optional

import torch
from torch import nn

from sci2i.utils.checkpoint import CheckpointError, load_state

log = logging.getLogger("sci2i")

#: Bottlenecks per layer of ResNet-101 (layer1 … layer4).
BLOCKS = (3, 4, 23, 3)
#: (width of the bottleneck, stride, dilation) of layer1 … layer4 in DeepLab-v2 (output stride 8).
LAYERS = ((64, 1, 1), (128, 2, 1), (256, 1, 2), (512, 1, 4))
EXPANSION = 4
VARIANTS = ("pytorch", "caffe")
#: Key prefix of the Caffe-converted DeepLab file (its ``MS_Deeplab.Scale`` sub-module).
CAFFE_PREFIX = "Scale."
#: The ASPP of the Caffe-converted DeepLab file, ``Scale.layer5.conv2d_list.<i>.<weight|bias>``.
CAFFE_CLASSIFIER = CAFFE_PREFIX + "layer5."
#: torchvision's ImageNet classifier, unused by DeepLab.
TORCHVISION_FC = ("fc.weight", "fc.bias")


class Bottleneck(nn.Module):
    """``relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))``.

    ``variant`` places the block's ``stride`` in ``conv1`` (caffe) or ``conv2`` (pytorch); ``conv2``
    is dilated by ``dilation`` with padding ``dilation`` (the spatial size is kept).
    """

    def __init__(self, in_channels: int, width: int, stride: int, dilation: int, variant: str,
                 downsample: Optional[nn.Module]) -> None:
        super().__init__()
        stride1, stride3x3 = (stride, 1) if variant == "caffe" else (1, stride)
        out_channels = width * EXPANSION
        self.conv1 = nn.Conv2d(in_channels, width, 1, stride=stride1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride3x3, padding=dilation, dilation=dilation,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


def _make_layer(in_channels: int, width: int, blocks: int, stride: int, dilation: int,
                variant: str) -> nn.Sequential:
    out_channels = width * EXPANSION
    downsample = None
    if stride != 1 or in_channels != out_channels:
        # The 1×1 projection strides in both variants (torchvision and Caffe agree here).
        downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                   nn.BatchNorm2d(out_channels))
    layers = [Bottleneck(in_channels, width, stride, dilation, variant, downsample)]
    layers += [Bottleneck(out_channels, width, 1, dilation, variant, None) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet101(nn.Module):
    """DeepLab-v2's ResNet-101 trunk (conv1 … layer4): (N, 3, H, W) -> (N, 2048, ~H/8, ~W/8).

    The input is already normalised for the weights (:class:`sci2i.models.input_norm.InputNorm`
    does that in :func:`sci2i.models.backbones.build_backbone`).
    """

    out_channels = 512 * EXPANSION
    stride = 8

    def __init__(self, variant: str = "pytorch") -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown ResNet-101 variant {variant!r}; one of {', '.join(VARIANTS)}")
        self.variant = variant
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=variant == "caffe")
        in_channels = 64
        for i, (blocks, (width, stride, dilation)) in enumerate(zip(BLOCKS, LAYERS), start=1):
            self.add_module(f"layer{i}", _make_layer(in_channels, width, blocks, stride, dilation, variant))
            in_channels = width * EXPANSION
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.01)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
                m.requires_grad_(False)  # frozen affine; statistics frozen by train() below
        self.train()

    def train(self, mode: bool = True) -> "ResNet101":
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()  # frozen statistics, whatever the parent asks for
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


# ----------------------------------------------------------------------------- weights
def weights_layout(state: Mapping[str, torch.Tensor]) -> str:
    """``caffe`` for a Caffe-converted DeepLab file (keys under ``Scale.``), else ``pytorch``."""
    return "caffe" if any(k.startswith(CAFFE_PREFIX) for k in state) else "pytorch"


def caffe_state_dict(model: ResNet101, classifier: Optional[Mapping[str, torch.Tensor]] = None) -> dict:
    """``model``'s weights in the Caffe-converted DeepLab layout (``Scale.*``, ``Scale.layer5.*``).

    ``classifier``: an ASPP state dict (``branches.<i>.*``) stored as ``layer5.conv2d_list.<i>.*``.
    Without ``num_batches_tracked`` (those files predate it). The inverse of :func:`load_resnet101`'s
    renaming; used by the tests and to check a conversion.
    """
    out = {CAFFE_PREFIX + k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    for k, v in (classifier or {}).items():
        out[CAFFE_CLASSIFIER + k.replace("branches.", "conv2d_list.", 1)] = v
    return out


def _split_file_state(state: Mapping[str, torch.Tensor], layout: str) -> tuple[dict, dict, list]:
    """(trunk state in our names, ASPP state in our names, file keys that are neither)."""
    trunk, classifier, foreign = {}, {}, []
    for key, value in state.items():
        if layout == "caffe":
            if key.startswith(CAFFE_CLASSIFIER):
                name = key[len(CAFFE_CLASSIFIER):]
                if name.startswith("conv2d_list."):
                    classifier["branches." + name[len("conv2d_list."):]] = value
                    continue
            elif key.startswith(CAFFE_PREFIX):
                trunk[key[len(CAFFE_PREFIX):]] = value
                continue
            foreign.append(key)
        elif key in TORCHVISION_FC:
            continue  # ImageNet's 1000-way classifier: not part of DeepLab
        else:
            trunk[key] = value
    return trunk, classifier, foreign


def load_resnet101(path: str) -> tuple[ResNet101, dict]:
    """A :class:`ResNet101` with the weights at ``path``, and the file's ASPP (may be empty).

    The layout of the keys picks the variant (``Scale.*`` → caffe, torchvision's names → pytorch).
    The load is strict: every trunk tensor must be in the file with the right shape, and the file
    may hold nothing else than the trunk, its DeepLab classifier (caffe) or torchvision's ``fc``
    (pytorch); otherwise a :class:`~sci2i.utils.checkpoint.CheckpointError` names the missing,
    unexpected and mis-shaped keys in the file's own naming. ``num_batches_tracked`` counters
    (absent in files from before PyTorch 0.4.1) are optional: frozen BatchNorms never use them.
    """
    state = load_state(path)
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"{path} is not a flat ResNet-101 state dict (name -> tensor)")
    layout = weights_layout(state)
    model = ResNet101(layout)
    trunk, classifier, foreign = _split_file_state(state, layout)
    own = model.state_dict()
    prefix = CAFFE_PREFIX if layout == "caffe" else ""
    missing = [prefix + k for k in own if k not in trunk and not k.endswith("num_batches_tracked")]
    unexpected = foreign + [prefix + k for k in trunk if k not in own]
    mismatched = [f"{prefix}{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in trunk.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:
        parts = []
        for what, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                           ("shape mismatches", mismatched)):
            if keys:
                parts.append(f"{what} {keys[:8]}{' …' if len(keys) > 8 else ''} ({len(keys)} in all)")
        raise CheckpointError(
            f"weights in {path} do not fit DeepLab-v2 ResNet-101 (read as the {layout} layout: "
            f"{'keys under Scale.' if layout == 'caffe' else 'torchvision names'}): " + "; ".join(parts))
    for k in own:
        if k.endswith("num_batches_tracked"):
            trunk.setdefault(k, own[k])
    model.load_state_dict(trunk, strict=True)
    log.info("ResNet-101 (%s layout) loaded from %s", layout, path)
    return model, classifier


def load_pretrained_classifier(aspp: nn.Module, state: Mapping[str, torch.Tensor], source: str = "") -> bool:
    """Copy DeepLab's pretrained ASPP (``layer5``) into ``aspp`` if every shape fits; else skip it.

    The COCO initialisation's ``layer5`` predicts 21 classes: with our 19 (or 16) it is skipped and
    the ASPP keeps its N(0, 0.01²) initialisation, as AdaptSegNet and ADVENT do.
    """
    if not state:
        return False
    own = aspp.state_dict()
    if set(state) != set(own) or any(tuple(state[k].shape) != tuple(own[k].shape) for k in own):
        shapes = sorted({tuple(v.shape)[0] for k, v in state.items() if k.endswith("weight")})
        log.info("DeepLab classifier (layer5) of %s skipped: it predicts %s classes, the model %d",
                 source or "the weights", "/".join(map(str, shapes)), own["branches.0.weight"].shape[0])
        return False
    aspp.load_state_dict(dict(state), strict=True)
    log.info("DeepLab classifier (layer5) loaded from %s", source or "the weights")
    return True
