"""DeepLab-v2 ResNet-101 (``model.backbone=resnet101``, sci2i.models.resnet).

Layer-by-layer shapes, strides and dilations (output stride 8) of both variants; strict loads
of torchvision's and the Caffe-converted DeepLab layout from state dicts written here with the
files' own key names, and refusals that name the keys; frozen BatchNorm through a training
step; the *-r101 presets; a segmenter that round-trips with its variant; the linear probe's
classifier; one mean-teacher step through the paper preset's path on tiny fixture data.
Inputs are small (33-65 px): ResNet-101 at that size runs in a fraction of a second on a CPU.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from fixtures import write_cityscapes, write_gta5
from torch import nn

from sci2i.config import ConfigError, load_config
from sci2i.losses.segmentation import cross_entropy
from sci2i.models.deeplab import DeepLabV2
from sci2i.models.resnet import BLOCKS, ResNet101, weights_layout
from sci2i.infer.segmenter import load_segmenter, save_segmenter
from sci2i.utils.checkpoint import CheckpointError

EXPECTED_DILATION = {1: 1, 2: 1, 3: 2, 4: 4}
EXPECTED_WIDTH = {1: 256, 2: 512, 3: 1024, 4: 2048}


def _write(tmp_path: Path, name: str, state: dict, norm: str) -> str:
    path = tmp_path / name
    torch.save(state, path)
    (tmp_path / (name + ".json")).write_text(json.dumps({"input_norm": norm}))
    return str(path)


def _randomised(model: nn.Module, seed: int) -> nn.Module:
    """Every float tensor drawn afresh (so loads are visible) at scales that keep 101 layers finite:
    convolutions N(0, 0.01²) as DeepLab's init, BatchNorm scale and variance in [0.5, 1.5],
    shift and mean N(0, 0.1²)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith(("running_var",)) or (t.dim() == 1 and name.endswith("weight")):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.dim() == 1:
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            else:
                t.copy_(0.01 * torch.randn(t.shape, generator=g))
    return model


@pytest.fixture(scope="module")
def source() -> ResNet101:
    return _randomised(ResNet101("pytorch"), 1)


def _torchvision_file(source: ResNet101, with_counters: bool = True) -> dict:
    """torchvision's resnet101 state dict: our names, plus its 1000-way ``fc``."""
    state = {k: v.clone() for k, v in source.state_dict().items()
             if with_counters or not k.endswith("num_batches_tracked")}
    state["fc.weight"] = torch.randn(1000, 2048)
    state["fc.bias"] = torch.randn(1000)
    return state


def _caffe_file(source: ResNet101, classes: int = 21) -> dict:
    """DeepLab_resnet_pretrained_init: ``Scale.<name>`` without counters, ASPP as ``Scale.layer5``."""
    state = {"Scale." + k: v.clone() for k, v in source.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    for i in range(4):
        state[f"Scale.layer5.conv2d_list.{i}.weight"] = torch.randn(classes, 2048, 3, 3)
        state[f"Scale.layer5.conv2d_list.{i}.bias"] = torch.randn(classes)
    return state


# ----------------------------------------------------------------------------- architecture
@pytest.mark.parametrize("variant", ["pytorch", "caffe"])
def test_layers_shapes_strides_and_dilations(variant):
    net = ResNet101(variant).eval()
    assert [len(getattr(net, f"layer{i}")) for i in range(1, 5)] == list(BLOCKS) == [3, 4, 23, 3]
    for i in range(1, 5):
        layer = getattr(net, f"layer{i}")
        for j, block in enumerate(layer):
            d = EXPECTED_DILATION[i]
            assert block.conv2.dilation == (d, d) and block.conv2.padding == (d, d), (i, j)
            assert block.conv3.out_channels == EXPECTED_WIDTH[i]
            stride = 2 if (i == 2 and j == 0) else 1
            # caffe: the stride sits in the first 1x1 convolution; pytorch: in the 3x3
            where = block.conv1 if variant == "caffe" else block.conv2
            other = block.conv2 if variant == "caffe" else block.conv1
            assert where.stride == (stride, stride) and other.stride == (1, 1), (i, j)
            assert (block.downsample is not None) == (j == 0)
        assert layer[0].downsample[0].stride == ((2, 2) if i == 2 else (1, 1))
    assert net.maxpool.ceil_mode is (variant == "caffe")

    shapes = {}
    hooks = [getattr(net, n).register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, tuple(o.shape)))
             for n in ("conv1", "maxpool", "layer1", "layer2", "layer3", "layer4")]
    with torch.no_grad():
        out = net(torch.rand(1, 3, 65, 65))
    for h in hooks:
        h.remove()
    assert shapes == {"conv1": (1, 64, 33, 33), "maxpool": (1, 64, 17, 17), "layer1": (1, 256, 17, 17),
                      "layer2": (1, 512, 9, 9), "layer3": (1, 1024, 9, 9), "layer4": (1, 2048, 9, 9)}
    assert out.shape == (1, 2048, 9, 9) and net.stride == 8 and net.out_channels == 2048


def test_output_stride_8_at_crop_size_and_rounding_of_each_variant():
    # 96 px stands in for the 384 crop (both divisible by 32): torchvision rounds pool1 down
    # (96 -> 48 -> 24 -> 12 = 96 / 8), Caffe up (48 -> 25 -> 13), as the DeepLab prototxt does.
    with torch.no_grad():
        assert ResNet101("pytorch").eval()(torch.rand(1, 3, 96, 96)).shape[-2:] == (12, 12)
        assert ResNet101("caffe").eval()(torch.rand(1, 3, 96, 96)).shape[-2:] == (13, 13)
    model = DeepLabV2("resnet101", "", num_classes=19).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 3, 65, 49))
    assert logits.shape == (2, 19, 65, 49)  # bilinear back to the input size
    assert model.classifier.rates == (6, 12, 18, 24) and model.classifier.branches[0].in_channels == 2048


def test_parameter_count_and_torchvision_key_names():
    net = ResNet101()
    state = net.state_dict()
    # torchvision's resnet101 has 626 tensors: these 624 plus fc.weight and fc.bias
    assert len(state) == 624
    for key in ("conv1.weight", "bn1.running_mean", "layer1.0.downsample.0.weight",
                "layer1.0.downsample.1.num_batches_tracked", "layer3.22.bn3.running_var", "layer4.2.conv3.weight"):
        assert key in state, key
    total = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert (total, trainable) == (42_500_160, 42_394_816)  # ResNet-101 without fc: 42.5 M


# ----------------------------------------------------------------------------- weights
def test_torchvision_layout_loads_strictly_as_the_pytorch_variant(tmp_path, source):
    path = _write(tmp_path, "resnet101-63fe2227.pth", _torchvision_file(source), "torchvision")
    model = DeepLabV2("resnet101", path, num_classes=19)
    assert model.backbone.variant == "pytorch" and model.input_norm == "torchvision"
    assert model.backbone.features.layer2[0].conv2.stride == (2, 2)
    loaded = model.backbone.features.state_dict()
    for k, v in source.state_dict().items():
        assert torch.equal(loaded[k], v), k


def test_caffe_layout_loads_strictly_and_skips_layer5_of_another_class_count(tmp_path, source):
    state = _caffe_file(source, classes=21)  # no num_batches_tracked: they are optional
    assert weights_layout(state) == "caffe"
    path = _write(tmp_path, "DeepLab_resnet_pretrained_init-f81d91e8.pth", state, "caffe")
    model = DeepLabV2("resnet101", path, num_classes=19)
    assert model.backbone.variant == "caffe" and model.input_norm == "caffe"
    assert model.backbone.features.layer2[0].conv1.stride == (2, 2)
    loaded = model.backbone.features.state_dict()
    for k, v in source.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(loaded[k], v), k
    with torch.no_grad():  # the same tensors, computed the Caffe way: another function
        x = torch.rand(1, 3, 33, 33)
        assert model.backbone.features(x).shape != source.eval()(x).shape or not torch.allclose(
            model.backbone.features(x), source(x))
    # 21-class layer5 vs 19 classes: the ASPP keeps its N(0, 0.01²) init, bias 0
    assert float(model.classifier.branches[0].weight.detach().std()) < 0.02
    assert all(float(b.bias.detach().abs().max()) == 0 for b in model.classifier.branches)
    # same class count: the file's ASPP is taken
    same = DeepLabV2("resnet101", path, num_classes=21)
    for i, branch in enumerate(same.classifier.branches):
        assert torch.equal(branch.weight, state[f"Scale.layer5.conv2d_list.{i}.weight"])
        assert torch.equal(branch.bias, state[f"Scale.layer5.conv2d_list.{i}.bias"])
    assert not same.backbone.pretrained_classifier  # not kept once used


def test_wrong_weights_are_refused_with_the_keys_named(tmp_path, source):
    bad = _torchvision_file(source)
    del bad["layer3.5.conv2.weight"]
    bad["layer3.5.conv9.weight"] = torch.zeros(1)
    bad["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    path = _write(tmp_path, "bad.pth", bad, "torchvision")
    with pytest.raises(CheckpointError) as err:
        DeepLabV2("resnet101", path)
    msg = str(err.value)
    assert "layer3.5.conv2.weight" in msg and "layer3.5.conv9.weight" in msg
    assert "conv1.weight: file (64, 3, 3, 3) vs model (64, 3, 7, 7)" in msg

    caffe = _caffe_file(source)
    del caffe["Scale.layer4.2.bn3.running_var"]
    caffe["Scale.layer6.conv2d_list.0.weight"] = torch.zeros(1)  # AdaptSegNet's multi-level head
    path = _write(tmp_path, "bad_caffe.pth", caffe, "caffe")
    with pytest.raises(CheckpointError, match=r"Scale\.layer4\.2\.bn3\.running_var.*Scale\.layer6"):
        DeepLabV2("resnet101", path)

    vgg_keys = {"features.0.weight": torch.zeros(64, 3, 3, 3)}  # someone else's file
    with pytest.raises(CheckpointError, match="features.0.weight"):
        DeepLabV2("resnet101", _write(tmp_path, "vgg.pth", vgg_keys, "torchvision"))


def test_weights_need_their_input_convention_recorded(tmp_path):
    path = tmp_path / "resnet101.pth"
    torch.save(_torchvision_file(ResNet101()), path)
    from sci2i.errors import UserError

    with pytest.raises(UserError, match="input-normalisation"):
        DeepLabV2("resnet101", str(path))


# ----------------------------------------------------------------------------- frozen BatchNorm
def _bn_state(model: nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items() if ".bn" in k or "downsample.1" in k
            or k.startswith("backbone.features.bn1")}


def test_frozen_batchnorm_gets_no_update_in_training():
    model = DeepLabV2("resnet101", "", num_classes=19, freeze_bn=False)  # frozen regardless
    _randomised(model.backbone.features, 3)
    model.train()
    bns = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 104 and not any(m.training for m in bns)
    assert not any(p.requires_grad for m in bns for p in m.parameters())
    groups = model.param_groups(1e-3)
    assert sum(len(g["params"]) for g in groups) == 104 + 8  # the convolutions + the ASPP
    opt = torch.optim.Adam(groups, lr=1e-3)
    before_bn = _bn_state(model)
    before_conv = model.backbone.features.layer3[5].conv2.weight.clone()
    x, y = torch.rand(2, 3, 33, 33), torch.randint(0, 19, (2, 33, 33))
    for _ in range(2):
        opt.zero_grad()
        cross_entropy(model(x), y).backward()
        opt.step()
    assert before_bn and all(torch.equal(v, model.state_dict()[k]) for k, v in before_bn.items())
    assert not torch.equal(before_conv, model.backbone.features.layer3[5].conv2.weight)
    # one concatenated forward equals separate ones (no statistics across images)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), torch.cat([model(x[:1]), model(x[1:])]))


def test_unfrozen_batchnorm_and_fc67_head_are_config_errors_for_resnet101():
    with pytest.raises(ConfigError, match="freeze_bn"):
        load_config(None, ["model.backbone=resnet101", "model.freeze_bn=false"])
    # the VGG16 paper preset with only the backbone swapped would get fc6/fc7 on 2,048 channels
    with pytest.raises(ConfigError, match="model.head=aspp"):
        load_config("gta5-cityscapes", ["model.backbone=resnet101"])


def test_autocast_bf16_forward_and_backward():
    model = DeepLabV2("resnet101", "", num_classes=19).train()
    x, y = torch.rand(1, 3, 33, 33), torch.randint(0, 19, (1, 33, 33))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
    assert logits.dtype == torch.bfloat16
    cross_entropy(logits.float(), y).backward()
    assert model.backbone.features.conv1.weight.grad is not None
    assert model.backbone.features.bn1.weight.grad is None


# ----------------------------------------------------------------------------- presets, files, probe
@pytest.mark.parametrize("name,base", [("gta5-cityscapes-r101", "gta5-cityscapes"),
                                       ("synthia-cityscapes-r101", "synthia-cityscapes")])
def test_presets_change_only_the_segmenter(name, base, monkeypatch):
    monkeypatch.setenv("SCI2I_RESNET101_WEIGHTS", "/weights/DeepLab_resnet_pretrained_init-f81d91e8.pth")
    monkeypatch.setenv("SCI2I_VGG16_WEIGHTS", "/weights/vgg16-397923af.pth")
    r101, paper = load_config(name), load_config(base)
    assert r101.model.backbone == "resnet101" and r101.model.output_stride == 8
    assert r101.model.weights == "/weights/DeepLab_resnet_pretrained_init-f81d91e8.pth"
    assert r101.discriminator == paper.discriminator and r101.discriminator.trunk == "vgg16"
    for section in ("data", "seg", "i2i", "generator", "pipeline", "probe"):
        assert getattr(r101, section) == getattr(paper, section), section
    assert list(r101.model.aspp_rates) == [6, 12, 18, 24]
    assert r101.model.head == "aspp"  # ASPP straight on the 2,048 channels of layer4


def test_presets_are_listed(capsys):
    from sci2i.cli import main as cli_main

    assert cli_main(["run", "--list"]) == 0
    out = capsys.readouterr().out
    assert "gta5-cityscapes-r101" in out and "synthia-cityscapes-r101" in out


def test_bench_profile_paper_r101():
    from sci2i.bench.workloads import get_profile, make_config

    profile = get_profile("paper-r101")
    seg = make_config(profile, "seg", "as-configured", 1, 64, "cpu", "off", False, None, [])
    i2i = make_config(profile, "i2i", "as-configured", 1, 64, "cpu", "off", False, None, [])
    assert seg.model.backbone == "resnet101" and seg.model.weights == ""
    assert i2i.discriminator.trunk == "vgg16"


def test_segmenter_round_trips_with_its_variant(tmp_path):
    model = _randomised(DeepLabV2("resnet101", "", num_classes=19, backbone_variant="caffe"), 4).eval()
    path = save_segmenter(model, tmp_path / "teacher.safetensors")
    back = load_segmenter(path)
    assert back.backbone.variant == "caffe" and back.input_norm == "caffe"
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x))


def test_linear_probe_trains_only_the_aspp():
    model = DeepLabV2("resnet101", "", num_classes=19)
    model.reset_classifier()
    model.freeze_backbone()
    model.train()
    groups = model.param_groups(1e-3)
    assert len(groups) == 1  # the backbone's group is gone
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.classifier.parameters()}
    assert not any(m.training for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d))


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("r101-data")
    write_gta5(root / "gta", n=4, size=(64, 32), seed=1)
    write_cityscapes(root / "cs", n_per_split=2, size=(64, 32), seed=3)
    return root


def _preset_cfg(data: Path, tmp_path: Path, *extra: str):
    """The paper preset at fixture size: only data sizes, step counts and the device change."""
    return load_config("gta5-cityscapes-r101", [
        "model.weights=", "discriminator.trunk_weights=",
        f"data.source_root={data / 'gta'}", f"data.target_root={data / 'cs'}", "data.target_extra_dirs=[]",
        "data.long_side=64", "data.crop_size=32", "data.eval_long_side=64", "data.num_workers=0",
        "seg.batch_size=1", "seg.con_start=0", "seg.eval_every=0", "seg.log_every=1",
        "run.deterministic=true", "perf.device=cpu", f"run.out_dir={tmp_path / 'run'}", *extra,
    ])


def test_one_mean_teacher_step_through_the_paper_preset(data, tmp_path):
    from sci2i.train.mean_teacher import MeanTeacherTrainer, train_segmentation
    from sci2i.utils.rundir import RunDir
    from sci2i.utils.runtime import seed_everything

    cfg = _preset_cfg(data, tmp_path, "seg.steps=1")
    seed_everything(0, True)
    trainer = MeanTeacherTrainer(cfg, RunDir(cfg, tmp_path / "r"), torch.device("cpu"), progress=False)
    trainer.open_streams()
    assert trainer.student.backbone_name == "resnet101"
    before = copy.deepcopy(trainer.student.state_dict())
    parts = trainer.train_step()
    assert torch.isfinite(torch.as_tensor(float(parts["Loss/student/total"]))) and float(parts["Loss/student/con"]) >= 0
    after = trainer.student.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert "backbone.features.layer4.2.conv3.weight" in changed
    assert "classifier.branches.3.weight" in changed
    assert not [k for k in changed if ".bn" in k or "downsample.1" in k or "features.bn1" in k]

    summary = train_segmentation(cfg, tmp_path / "run", progress=False)
    assert summary["eval"]["num_images"] == 2
    teacher = load_segmenter(tmp_path / "run")
    assert teacher.backbone_name == "resnet101" and teacher.backbone.variant == "pytorch"
    # sci2i predict on the run (teacher.safetensors + teacher.yaml): full-size label maps
    from PIL import Image

    from sci2i.cli import main as cli_main

    image = next((data / "cs" / "leftImg8bit" / "val").rglob("*.png"))
    assert cli_main(["predict", "--checkpoint", str(tmp_path / "run"), "--input", str(image),
                     "--output", str(tmp_path / "pred"), "--train-ids", "--device", "cpu",
                     "--no-progress"]) == 0
    written = list((tmp_path / "pred").rglob("*_trainIds.png"))
    assert len(written) == 1 and Image.open(written[0]).size == Image.open(image).size
    # the linear probe (Table 5): only the ASPP is retrained, the trunk with its BatchNorm is kept
    from sci2i.eval.probe import linear_probe

    probe_cfg = _preset_cfg(data, tmp_path, "probe.steps=1", "probe.batch_size=1")
    assert "mIoU19" in linear_probe(tmp_path / "run", probe_cfg, tmp_path / "probe", progress=False)
    probed = load_segmenter(tmp_path / "probe" / "probe_classifier.safetensors").state_dict()
    kept = teacher.state_dict()
    assert all(torch.equal(v, probed[k]) for k, v in kept.items() if k.startswith("backbone."))
    assert not torch.equal(kept["classifier.branches.0.weight"], probed["classifier.branches.0.weight"])


def test_two_ranks_keep_resnet101_in_lock_step_and_batchnorm_frozen(data, tmp_path):
    """torchrun on 2 gloo ranks (the worker of test_distributed.py): DDP with frozen parameters."""
    from test_distributed import SEG_WORKER, _assert_same, _torchrun

    overrides = [
        "model.backbone=resnet101", f"data.source_root={data / 'gta'}", f"data.target_root={data / 'cs'}",
        "data.long_side=64", "data.crop_size=32", "data.eval_long_side=64", "data.num_workers=0",
        "seg.batch_size=1", "seg.lr=1e-3", "seg.con_start=0", "seg.eval_every=0",
        "run.deterministic=true", "perf.device=cpu", f"run.out_dir={tmp_path / 'run'}",
    ]
    r0, r1 = _torchrun(tmp_path, SEG_WORKER, 2, overrides)
    _assert_same(r0["student"], r1["student"], "student")
    _assert_same(r0["teacher"], r1["teacher"], "teacher")
    initial, final = r0["initial"], r0["student"]
    changed = {k for k in initial if not torch.equal(initial[k], final[k])}
    assert "backbone.features.layer3.22.conv2.weight" in changed
    assert not [k for k in changed if ".bn" in k or "downsample.1" in k or "features.bn1" in k]
