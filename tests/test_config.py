"""Configuration: presets, overrides, validation errors that say how to fix them."""

import pytest
import yaml

from sci2i.config import ConfigError, load_config, save_config
from sci2i.config.loader import list_presets


def test_defaults_are_the_paper_hyper_parameters():
    cfg = load_config()
    assert cfg.seg.lr == 1e-5 and cfg.i2i.lr == 1e-5
    assert cfg.seg.grad_clip == 5.0 and cfg.i2i.grad_clip == 5.0
    assert cfg.seg.ema_decay == 0.999 and cfg.i2i.ema_decay == 0.999
    assert cfg.seg.con_start == 10000
    assert cfg.i2i.lambda_pl == 0.3 and cfg.i2i.lambda_cgan == 0.3
    assert cfg.i2i.steps == 1_000_000
    assert cfg.data.long_side == 1024 and cfg.data.crop_size == 384
    assert cfg.model.aspp_rates == [6, 12, 18, 24]
    assert cfg.seg.translated_fraction == 0.5


def test_overrides_are_typed():
    cfg = load_config(None, ["seg.steps=7", "i2i.gan_loss=sgan", "model.aspp_rates=[1,2,3,4]",
                             "data.flip=false", "seg.lr=3e-4"])
    assert cfg.seg.steps == 7 and isinstance(cfg.seg.steps, int)
    assert cfg.i2i.gan_loss == "sgan"
    assert cfg.model.aspp_rates == [1, 2, 3, 4]
    assert cfg.data.flip is False
    assert cfg.seg.lr == pytest.approx(3e-4)


def test_unknown_key_suggests_the_closest_name():
    with pytest.raises(ConfigError, match=r"unknown config key 'seg\.lamda_con'.*'seg\.lambda_con'"):
        load_config(None, ["seg.lamda_con=1"])
    with pytest.raises(ConfigError, match=r"'i2i\.lambda_pl'"):
        load_config(None, ["lambda_pl=1"])


@pytest.mark.parametrize(
    "override,message",
    [
        ("seg.steps=many", "seg.steps"),
        ("i2i.lambda_cgan=-1", "i2i.lambda_cgan"),
        ("data.crop_size=2048", "data.crop_size"),
        ("i2i.crop_size=2048", "i2i.crop_size"),
        ("i2i.gan_loss=wgan", "i2i.gan_loss"),
        ("seg.ema_decay=1.5", "seg.ema_decay"),
        ("generator.channels=[8,16]", "generator.channels"),
        ("notakey", "key=value"),
        ("model.output_stride=32", "model.output_stride"),
        ("model.output_stride=16", "model.output_stride"),  # the default backbone, vgg16, has 8 only
        ("seg.con_threshold=1.5", "seg.con_threshold"),
    ],
)
def test_bad_values_fail_before_any_work(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(None, [override])


def test_yaml_file_with_base_chain_and_unknown_key(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"seg": {"steps": 11}, "name": "b"}))
    child = tmp_path / "child.yaml"
    child.write_text(yaml.safe_dump({"base": str(base), "seg": {"lr": 0.01}}))
    cfg = load_config(str(child), ["name=c"])
    assert (cfg.seg.steps, cfg.seg.lr, cfg.name) == (11, 0.01, "c")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"seg": {"stepz": 1}}))
    with pytest.raises(ConfigError, match=r"seg\.stepz.*bad\.yaml.*seg\.steps"):
        load_config(str(bad))


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match="neither a preset nor a YAML file"):
        load_config("no-such-preset")


def test_every_preset_resolves(monkeypatch):
    for name in list_presets():
        load_config(name)


def test_environment_variables_give_dataset_roots(monkeypatch):
    monkeypatch.setenv("SCI2I_SOURCE_ROOT", "/data/gta5")
    assert load_config().data.source_root == "/data/gta5"


def test_saved_config_reloads_identically(tmp_path):
    cfg = load_config(None, ["seg.steps=3", "i2i.lambda_gseg=0"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(str(tmp_path / "config.yaml"))
    assert again == cfg


def test_yaml_boolean_words_stay_strings_for_string_fields():
    cfg = load_config(None, ["perf.amp=off", "data.flip=off", "perf.compile=yes"])
    assert cfg.perf.amp == "off"
    assert cfg.data.flip is False and cfg.perf.compile is True


def test_overrides_may_follow_options_on_the_command_line():
    from sci2i.cli import build_parser, parse_args

    parser = build_parser()
    args = parse_args(parser, ["probe", "toycity", "--checkpoint", "C", "probe.steps=5", "--out", "o"])
    assert (args.preset, args.overrides, args.checkpoint) == ("toycity", ["probe.steps=5"], "C")
    args = parse_args(parser, ["train-seg", "toycity-seg", "--out", "o", "seg.steps=5"])
    assert args.config == ["toycity-seg", "seg.steps=5"]
    with pytest.raises(SystemExit):
        parse_args(parser, ["train-seg", "toycity-seg", "--out", "o", "notanoverride"])


def test_config_from_yaml_text_round_trips_and_names_its_origin(tmp_path):
    from sci2i.config import config_from_yaml_text, load_config, to_yaml
    from sci2i.infer.segmenter import segmenter_config
    from sci2i.utils.checkpoint import save_state

    cfg = load_config("toycity", ["seg.steps=7", "run.seed=3"])
    assert config_from_yaml_text(to_yaml(cfg), "x") == cfg
    with pytest.raises(ConfigError, match="unknown config key 'seg.stepz' in the stored config"):
        config_from_yaml_text("seg: {stepz: 3}\n", "the stored config")
    # a training checkpoint's config is read from its text, no file written on the way
    save_state({"config": to_yaml(cfg), "step": 1}, tmp_path / "step_00000001.pt")
    assert segmenter_config(tmp_path / "step_00000001.pt") == cfg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000001.pt"]
