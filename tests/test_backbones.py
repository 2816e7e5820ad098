"""Backbones: torchvision-layout VGG16 loading, strides, frozen trunks, input conventions."""

import json

import pytest
import torch

from sci2i.errors import UserError
from sci2i.models.backbones import build_backbone, build_trunk
from sci2i.models.input_norm import InputNorm
from sci2i.models.vgg16 import VGG16
from sci2i.utils.checkpoint import CheckpointError

TORCHVISION_VGG16_CONVS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]


def _torchvision_layout_state() -> dict:
    """A state dict with exactly the keys and shapes of torchvision's vgg16-397923af.pth."""
    chans = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    state, in_ch = {}, 3
    for idx, out in zip(TORCHVISION_VGG16_CONVS, chans):
        state[f"features.{idx}.weight"] = torch.randn(out, in_ch, 3, 3)
        state[f"features.{idx}.bias"] = torch.randn(out)
        in_ch = out
    for idx, (i, o) in zip([0, 3, 6], [(25088, 4096), (4096, 4096), (4096, 1000)]):
        state[f"classifier.{idx}.weight"] = torch.randn(o, i) * 0.01
        state[f"classifier.{idx}.bias"] = torch.randn(o)
    return state


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "vgg16-397923af.pth"
    state = _torchvision_layout_state()
    torch.save(state, path)
    (path.parent / (path.name + ".json")).write_text(json.dumps({"input_norm": "torchvision"}))
    return path, state


def test_vgg16_keys_match_torchvision_layout():
    keys = set(VGG16().state_dict())
    assert keys == set(_torchvision_layout_state())


def test_vgg16_weights_load_strictly_into_backbone_and_trunk(vgg_file):
    path, state = vgg_file
    backbone = build_backbone("vgg16", str(path))
    assert torch.equal(backbone.features[0].weight, state["features.0.weight"])
    assert torch.equal(backbone.features[28].weight, state["features.28.weight"])
    trunk = build_trunk("vgg16", str(path))
    assert torch.equal(trunk.features[14].weight, state["features.14.weight"])  # block3_conv3
    assert isinstance(trunk.norm, InputNorm) and trunk.norm.convention == "torchvision"


def test_vgg16_shape_mismatch_is_a_clear_error(tmp_path):
    state = _torchvision_layout_state()
    state["features.0.weight"] = torch.randn(32, 3, 3, 3)
    del state["classifier.6.bias"]
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    (tmp_path / "bad.pth.json").write_text('{"input_norm": "caffe"}')
    with pytest.raises(CheckpointError, match=r"features\.0\.weight.*\(32, 3, 3, 3\).*|missing keys"):
        build_backbone("vgg16", str(path))


def test_vgg16_without_norm_sidecar_says_how_to_fix(tmp_path):
    path = tmp_path / "vgg.pth"
    torch.save(_torchvision_layout_state(), path)
    with pytest.raises(UserError, match="input_norm"):
        build_backbone("vgg16", str(path))


@pytest.mark.parametrize("name,stride,channels", [("vgg16", 8, 512), ("efficientnet_lite0", 8, 320)])
def test_backbone_output_stride_8(name, stride, channels):
    net = build_backbone(name)
    out = net(torch.rand(1, 3, 64, 96))
    assert out.shape == (1, channels, 64 // stride, 96 // stride)
    assert net.out_channels == channels and net.stride == stride


@pytest.mark.parametrize("name,channels", [("vgg16", 256), ("efficientnet_lite0", 40)])
def test_trunk_is_frozen_stride_4_and_passes_gradient(name, channels):
    trunk = build_trunk(name)
    trunk.train()  # a parent calling .train() must not unfreeze BatchNorm statistics
    assert not trunk.training
    x = torch.rand(2, 3, 32, 48, requires_grad=True)
    out = trunk(x)
    assert out.shape == (2, channels, 8, 12)
    out.square().mean().backward()
    assert all(p.grad is None for p in trunk.parameters())
    assert not any(p.requires_grad for p in trunk.parameters())
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_packaged_efficientnet_weights_recognise_a_cat():
    """The packaged ImageNet weights, with their recorded input convention, classify a photo."""
    import skimage.data
    import torch.nn.functional as F

    from sci2i.models.efficientnet import PACKAGE_NORM, build_efficientnet_lite0

    net = build_efficientnet_lite0("package").eval()
    img = torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1)[None].float() / 255
    img = F.interpolate(img, size=(224, 224), mode="bilinear", align_corners=False)
    with torch.no_grad():
        top = net(InputNorm(PACKAGE_NORM)(img)).argmax(1).item()
    assert top in (281, 282, 285)  # tabby, tiger cat, Egyptian cat


def test_input_norm_conventions():
    x = torch.full((1, 3, 1, 1), 0.5)
    x[:, 0] = 1.0  # red
    caffe = InputNorm("caffe")(x)
    assert caffe[0, 2, 0, 0].item() == pytest.approx(255.0 - 123.68)  # red lands last (BGR)
    tfl = InputNorm("tf_lite")(x)
    assert tfl[0, 0, 0, 0].item() == pytest.approx((255.0 - 127.0) / 128.0)


def test_torchvision_state_dict_fills_deeplab_backbone_and_fc_head_starts_at_random(vgg_file):
    """fc6/fc7 take nothing from the file (random, as AdaptSegNet): the same seed gives the
    same fc6/fc7 with and without the weights, and every backbone conv is the file's."""
    from sci2i.models.deeplab import DeepLabV2

    path, state = vgg_file
    torch.manual_seed(7)
    loaded = DeepLabV2("vgg16", str(path), head="fc_aspp")
    torch.manual_seed(7)
    scratch = DeepLabV2("vgg16", "", head="fc_aspp")
    for idx in TORCHVISION_VGG16_CONVS:
        assert torch.equal(loaded.backbone.features[idx].weight, state[f"features.{idx}.weight"])
        assert torch.equal(loaded.backbone.features[idx].bias, state[f"features.{idx}.bias"])
    for name in ("fc6", "fc7"):
        assert torch.equal(getattr(loaded.fc, name).weight, getattr(scratch.fc, name).weight)
    # not a conversion of classifier.0 either: DeepLab's would be its rows 0, 4, ... reshaped
    fc6_from_fc = state["classifier.0.weight"].view(4096, 512, 7, 7)[::4, :, ::3, ::3]
    assert not torch.allclose(loaded.fc.fc6.weight, fc6_from_fc)
