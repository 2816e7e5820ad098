"""DeepLab-v2 contracts: ASPP sums all four branches, the fc6/fc7 head of VGG16 DeepLab-v2,
output size, BN freezing, param groups."""

import pytest
import torch

from sci2i.models.deeplab import ASPP, DeepLabV2


@pytest.fixture(scope="module")
def lite() -> DeepLabV2:
    torch.manual_seed(0)
    return DeepLabV2("efficientnet_lite0", "", num_classes=19, aspp_rates=(1, 2, 3, 4))


def test_aspp_sums_all_four_branches():
    torch.manual_seed(0)
    aspp = ASPP(8, 5, rates=(1, 2, 3, 4))
    for conv in aspp.branches:
        torch.nn.init.normal_(conv.weight)
        torch.nn.init.normal_(conv.bias)
    x = torch.randn(2, 8, 12, 12)
    expected = sum(conv(x) for conv in aspp.branches)
    torch.testing.assert_close(aspp(x), expected)
    # Each branch alone (the other three zeroed) contributes; the last two in particular.
    for keep in range(4):
        alone = ASPP(8, 5, rates=(1, 2, 3, 4))
        alone.load_state_dict(aspp.state_dict())
        with torch.no_grad():
            for i, conv in enumerate(alone.branches):
                if i != keep:
                    conv.weight.zero_()
                    conv.bias.zero_()
        torch.testing.assert_close(alone(x), aspp.branches[keep](x))
        assert alone(x).abs().sum() > 0


def test_aspp_dilations_and_paper_rates():
    aspp = ASPP(4, 3)
    assert [c.dilation[0] for c in aspp.branches] == [6, 12, 18, 24]
    assert [c.padding[0] for c in aspp.branches] == [6, 12, 18, 24]
    assert all(c.kernel_size == (3, 3) for c in aspp.branches)


def test_output_is_upsampled_to_input_size(lite):
    lite.eval()
    out = lite(torch.rand(1, 3, 50, 70))
    assert out.shape == (1, 19, 50, 70)


def test_every_trainable_parameter_gets_a_gradient(lite):
    lite.train()
    lite.zero_grad()
    lite(torch.rand(2, 3, 32, 32)).logsumexp(1).mean().backward()
    missing = [n for n, p in lite.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert not missing, missing


def test_frozen_bn_makes_concatenated_forward_equal_separate_forwards(lite):
    lite.train()
    bns = [m for m in lite.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    a, b = torch.rand(1, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        joint = lite(torch.cat([a, b]))
        torch.testing.assert_close(joint, torch.cat([lite(a), lite(b)]), atol=1e-5, rtol=1e-5)


def test_bn_trains_when_not_frozen():
    m = DeepLabV2("efficientnet_lite0", "", freeze_bn=False).train()
    assert all(bn.training for bn in m.backbone.modules() if isinstance(bn, torch.nn.BatchNorm2d))


def test_param_groups_head_lr_multiplier(lite):
    groups = lite.param_groups(1e-4, head_lr_mult=10.0)
    by_name = {g["name"]: g for g in groups}
    assert by_name["backbone"]["lr"] == pytest.approx(1e-4)
    assert by_name["head"]["lr"] == pytest.approx(1e-3)
    n_params = sum(len(g["params"]) for g in groups)
    assert n_params == len([p for p in lite.parameters() if p.requires_grad])


def test_linear_probe_resets_and_trains_only_the_classifier():
    torch.manual_seed(1)
    m = DeepLabV2("efficientnet_lite0", "", aspp_rates=(1, 2, 3, 4))
    before = [c.weight.clone() for c in m.classifier.branches]
    m.reset_classifier()
    assert any(not torch.equal(b, c.weight) for b, c in zip(before, m.classifier.branches))
    m.freeze_backbone()
    m.train()
    m(torch.rand(1, 3, 32, 32)).logsumexp(1).mean().backward()
    assert all(p.grad is None for p in m.backbone.parameters())
    assert all(p.grad is not None for p in m.classifier.parameters())
    assert [g["name"] for g in m.param_groups(1e-3)] == ["head"]


def test_vgg16_deeplab_output_stride_8():
    m = DeepLabV2("vgg16", "", num_classes=16).eval()
    assert m.backbone.stride == 8 and m.backbone.out_channels == 512
    feats = m.backbone(torch.rand(1, 3, 48, 64))
    assert feats.shape[-2:] == (6, 8)
    assert m(torch.rand(1, 3, 48, 64)).shape == (1, 16, 48, 64)


def test_efficientnet_output_stride_16_round_trips_through_saved_weights(tmp_path):
    from sci2i.infer.segmenter import load_segmenter, save_segmenter

    torch.manual_seed(2)
    m = DeepLabV2("efficientnet_lite0", "", num_classes=19, aspp_rates=(1, 2, 3, 4),
                  output_stride=16).eval()
    assert m.backbone.stride == 16
    assert m.backbone(torch.rand(1, 3, 64, 96)).shape[-2:] == (4, 6)
    x = torch.rand(1, 3, 64, 96)
    path = save_segmenter(m, tmp_path / "teacher.safetensors")
    loaded = load_segmenter(path)
    assert loaded.backbone.stride == 16
    with torch.no_grad():
        assert torch.equal(loaded(x), m(x))


def test_vgg16_refuses_output_stride_16():
    from sci2i.errors import UserError

    with pytest.raises(UserError, match="model.output_stride=16"):
        DeepLabV2("vgg16", "", output_stride=16)


# ----------------------------------------------------------------------------- fc6/fc7 head
# AdaptSegNet's DeeplabVGG (model/deeplab_vgg.py, Tsai et al. 2018; used by BDL and the
# paper's VGG16 peers): VGG16 without pool4/pool5, conv5 dilated by 2, fc6 = 3x3 conv 512->1024
# dilation 4, fc7 = 3x3 conv 1024->1024 dilation 4 (each with ReLU), ASPP on 1024 channels.
VGG16_CONV_PARAMS = 14_714_688  # the 13 convolutions of torchvision's vgg16 (features.*)
FC6_PARAMS = 512 * 1024 * 9 + 1024
FC7_PARAMS = 1024 * 1024 * 9 + 1024


def _aspp_params(in_ch: int, classes: int) -> int:
    return 4 * (in_ch * classes * 9 + classes)


@pytest.fixture(scope="module")
def vgg_fc() -> DeepLabV2:
    torch.manual_seed(0)
    return DeepLabV2("vgg16", "", num_classes=19, head="fc_aspp").eval()


def test_vgg16_fc_aspp_layer_list_and_dilations(vgg_fc):
    from torch import nn

    feats = vgg_fc.backbone.features
    convs = [(i, m) for i, m in enumerate(feats) if isinstance(m, nn.Conv2d)]
    assert [i for i, _ in convs] == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]  # torchvision's indices
    assert [m.dilation[0] for _, m in convs] == [1] * 10 + [2, 2, 2]  # conv5 dilated by 2
    assert [m.padding[0] for _, m in convs] == [1] * 10 + [2, 2, 2]
    pools = [i for i, m in enumerate(feats) if isinstance(m, nn.MaxPool2d)]
    assert pools == [4, 9, 16]  # pool1-3 only: pool4 (index 23) is removed
    assert isinstance(feats[23], nn.Identity) and len(feats) == 30  # ... and pool5 (index 30)
    fc6, fc7 = vgg_fc.fc.fc6, vgg_fc.fc.fc7
    assert (fc6.in_channels, fc6.out_channels, fc6.kernel_size, fc6.dilation, fc6.padding) == (512, 1024, (3, 3), (4, 4), (4, 4))
    assert (fc7.in_channels, fc7.out_channels, fc7.kernel_size, fc7.dilation, fc7.padding) == (1024, 1024, (3, 3), (4, 4), (4, 4))
    aspp = vgg_fc.classifier
    assert [c.in_channels for c in aspp.branches] == [1024] * 4
    assert [c.dilation[0] for c in aspp.branches] == [6, 12, 18, 24]
    x = torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        assert vgg_fc.backbone(x).shape == (1, 512, 6, 8)
        assert vgg_fc.features(x).shape == (1, 1024, 6, 8)
        assert (vgg_fc.features(x) >= 0).all()  # fc7's ReLU
        assert vgg_fc(x).shape == (1, 19, 48, 64)


def test_vgg16_parameter_counts_of_both_heads(vgg_fc):
    n_fc = sum(p.numel() for p in vgg_fc.parameters())
    assert n_fc == VGG16_CONV_PARAMS + FC6_PARAMS + FC7_PARAMS + _aspp_params(1024, 19) == 29_573_004
    lean = DeepLabV2("vgg16", "", num_classes=19, head="aspp")
    assert sum(p.numel() for p in lean.parameters()) == VGG16_CONV_PARAMS + _aspp_params(512, 19) == 15_064_972
    assert sum(p.numel() for p in lean.backbone.parameters()) == VGG16_CONV_PARAMS


def test_fc_head_builds_on_any_backbone_width_and_is_probed_frozen():
    torch.manual_seed(3)
    m = DeepLabV2("efficientnet_lite0", "", num_classes=5, aspp_rates=(1, 2, 3, 4), head="fc_aspp")
    assert m.fc.fc6.in_channels == m.backbone.out_channels
    groups = {g["name"]: g for g in m.param_groups(1e-5, head_lr_mult=1.0)}
    fc_ids = {id(p) for p in m.fc.parameters()}
    assert fc_ids <= {id(p) for p in groups["head"]["params"]}  # new layers train with the head
    assert groups["head"]["lr"] == groups["backbone"]["lr"] == pytest.approx(1e-5)
    m.reset_classifier()
    m.freeze_backbone()
    m.train()
    m(torch.rand(1, 3, 32, 32)).logsumexp(1).mean().backward()
    assert all(p.grad is None for p in [*m.backbone.parameters(), *m.fc.parameters()])
    assert all(p.grad is not None for p in m.classifier.parameters())


def test_unknown_head_is_a_user_error():
    from sci2i.errors import UserError

    with pytest.raises(UserError, match="model.head"):
        DeepLabV2("efficientnet_lite0", "", head="fc8")


def test_fc_aspp_round_trips_through_saved_weights(tmp_path):
    from sci2i.infer.segmenter import load_segmenter, save_segmenter

    torch.manual_seed(4)
    m = DeepLabV2("efficientnet_lite0", "", num_classes=19, aspp_rates=(1, 2, 3, 4),
                  output_stride=16, head="fc_aspp").eval()
    loaded = load_segmenter(save_segmenter(m, tmp_path / "teacher.safetensors"))
    assert loaded.head_name == "fc_aspp"
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(loaded(x), m(x))


def test_paper_presets_build_the_fc_head_at_one_learning_rate():
    from sci2i.config import load_config

    for preset in ("gta5-cityscapes", "synthia-cityscapes"):
        cfg = load_config(preset, ["model.weights=", "discriminator.trunk_weights="])
        assert cfg.model.head == "fc_aspp" and cfg.model.head_lr_mult == 1.0
        assert cfg.seg.ema_warmup is False and cfg.data.flip is False
    toy = load_config("toycity")
    assert toy.model.head == "aspp"


def test_linear_probe_of_a_fc_aspp_segmenter_keeps_fc6_fc7(tmp_path):
    from fixtures import write_cityscapes

    from sci2i.config import load_config
    from sci2i.eval.probe import linear_probe
    from sci2i.infer.segmenter import load_segmenter, save_segmenter

    write_cityscapes(tmp_path / "cs", n_per_split=2, size=(64, 32), seed=5)
    torch.manual_seed(5)
    model = DeepLabV2("efficientnet_lite0", "", num_classes=19, aspp_rates=(1, 2, 3, 4),
                      output_stride=16, head="fc_aspp").eval()
    weights = save_segmenter(model, tmp_path / "teacher.safetensors")
    cfg = load_config(None, [f"data.target_root={tmp_path / 'cs'}", "data.long_side=64", "data.crop_size=32",
                             "data.eval_long_side=64", "data.num_workers=0", "probe.steps=2",
                             "probe.batch_size=1", "perf.device=cpu"])
    linear_probe(weights, cfg, tmp_path / "probe", progress=False)
    after = load_segmenter(tmp_path / "probe" / "probe_classifier.safetensors")
    for name, p in model.fc.state_dict().items():
        assert torch.equal(p, after.fc.state_dict()[name]), name
    assert any(not torch.equal(a, b) for a, b in zip(model.classifier.parameters(), after.classifier.parameters()))
