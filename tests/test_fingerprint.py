"""Phase fingerprints: built from the settings that can change a phase's outputs, and only those."""

from __future__ import annotations

import dataclasses

import pytest

from sci2i.config.schema import NOT_A_RESULT, Config, DataConfig, I2IConfig, SegTrainConfig
from sci2i.pipeline.fingerprint import fingerprint

#: speed and logging settings: none can change what a phase computes
SPEED_AND_LOGGING = [
    (DataConfig, "num_workers", 7),
    (DataConfig, "cache_dir", "/fast/cache"),
    (DataConfig, "max_bad_files", 3),
    (SegTrainConfig, "log_every", 7),
    (I2IConfig, "log_every", 7),
    (I2IConfig, "sample_every", 7),
    (I2IConfig, "kid_images", 7),
]
#: method settings: each changes its phase
METHOD = [
    (DataConfig, "long_side", 512),
    (DataConfig, "crop_size", 256),
    (DataConfig, "max_images", 5),
    (SegTrainConfig, "lr", 1e-4),
    (SegTrainConfig, "lambda_con", 0.5),
    (SegTrainConfig, "second_source", "plain_aug"),
    (I2IConfig, "lambda_cgan", 0.5),
    (I2IConfig, "steps", 10),
]


@pytest.mark.parametrize("section, key, value", SPEED_AND_LOGGING)
def test_speed_and_logging_settings_keep_the_fingerprint(section, key, value):
    default = section()
    assert getattr(default, key) != value
    assert fingerprint(dataclasses.replace(default, **{key: value})) == fingerprint(default)


@pytest.mark.parametrize("section, key, value", METHOD)
def test_method_settings_change_the_fingerprint(section, key, value):
    default = section()
    assert fingerprint(dataclasses.replace(default, **{key: value})) != fingerprint(default)


def test_the_schema_marks_exactly_the_speed_and_logging_settings():
    marked = {(type(section).__name__, f.name)
              for section in (getattr(Config(), s.name) for s in dataclasses.fields(Config))
              if dataclasses.is_dataclass(section)
              for f in dataclasses.fields(section) if f.metadata == NOT_A_RESULT}
    assert marked == {(cls.__name__, key) for cls, key, _ in SPEED_AND_LOGGING}


def test_the_number_of_processes_enters_every_phase_fingerprint():
    """torchrun's processes each take ``batch_size`` images: 2 ranks train with twice the global
    batch, so they must not find (or resume) a single process's phases."""
    from sci2i.config import load_config
    from sci2i.pipeline.runner import data_fingerprint

    cfg = load_config("toycity")
    one, two, eight = (data_fingerprint(cfg, w) for w in (1, 2, 8))
    assert len({one, two, eight}) == 3
    assert one == fingerprint(cfg.data, cfg.run.seed)  # a single process: as before
