"""The full-size readers (pseudo labels, translation, the I2I figure) read what training reads.

Each goes through the dataset reader interface (sci2i.data.datasets), so a concatenated target
set is readable, and a file the training reader skips (a GTA5 pair of different sizes, a missing
or empty label, an image that cannot be decoded) is skipped, and named, here too.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from fixtures import corrupt, write_cityscapes, write_gta5
from sci2i.config import load_config
from sci2i.config.schema import DataConfig, GeneratorConfig
from sci2i.data.build import build_target_dataset
from sci2i.data.datasets import GTA5Dataset, pseudo_label_path
from sci2i.models.deeplab import DeepLabV2
from sci2i.models.generator import Generator
from sci2i.infer.segmenter import write_pseudo_labels
from sci2i.train.i2i import train_i2i
from sci2i.infer.translate import translate_dataset

TINY_G = GeneratorConfig(channels=[8, 8, 16, 16], latent_dim=8, style_dim=8, mapping_layers=2)


@pytest.fixture()
def defective_gta5(tmp_path):
    """Five GTA5 pairs: two good, one of different sizes, one truncated image, one empty label."""
    gta = write_gta5(tmp_path / "gta5", n=5, size=(64, 32))
    Image.open(gta.label_paths[1]).crop((0, 0, 60, 32)).save(gta.label_paths[1])
    corrupt(gta.image_paths[2], "truncate")
    corrupt(gta.label_paths[3], "empty")
    return gta


def test_pseudo_labels_cover_the_concatenated_target_set(tmp_path):
    cs = write_cityscapes(tmp_path / "cs", splits=("train",), n_per_split=3, with_sequence=True,
                          frames_per_snippet=2)
    extra = tmp_path / "extra"
    Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(extra.mkdir() or extra / "a.png")
    data = DataConfig(target_root=str(tmp_path / "cs"), target_extra_dirs=[str(cs["sequence"].root), str(extra)])
    dataset = build_target_dataset(data, "train", with_labels=False, train=False)
    model = DeepLabV2("efficientnet_lite0", "", aspp_rates=(1, 2, 3, 4)).eval()
    n = write_pseudo_labels(model, dataset, tmp_path / "pl", "cpu", long_side=32, progress=False)
    assert n == len(dataset) == 6 + 1  # the sequence frames (train images among them) and the extra folder
    for name in dataset.names:
        with Image.open(pseudo_label_path(tmp_path / "pl", name)) as im:
            assert im.size == (64, 32)  # at the image's full resolution


def test_pseudo_labels_skip_an_unreadable_target_image(tmp_path, caplog):
    cs = write_cityscapes(tmp_path / "cs", splits=("train",), n_per_split=3)
    corrupt(cs["train"].image_paths[1], "truncate")
    dataset = build_target_dataset(DataConfig(target_root=str(tmp_path / "cs")), "train", with_labels=False,
                                   train=False)
    model = DeepLabV2("efficientnet_lite0", "", aspp_rates=(1, 2, 3, 4)).eval()
    with caplog.at_level(logging.WARNING, logger="sci2i"):
        n = write_pseudo_labels(model, dataset, tmp_path / "pl", "cpu", long_side=32, progress=False)
    assert n == 2 and not pseudo_label_path(tmp_path / "pl", cs["train"].names[1]).exists()
    assert sum(cs["train"].names[1] in r.getMessage() for r in caplog.records) == 1
    # the I2I target set then leaves it out (it has no pseudo label)
    labelled = build_target_dataset(DataConfig(target_root=str(tmp_path / "cs")), "train", with_labels=True,
                                    train=True, label_dir=tmp_path / "pl")
    assert labelled.names == [cs["train"].names[0], cs["train"].names[2]]


def test_translation_reads_through_the_source_reader(defective_gta5, tmp_path, caplog):
    G = Generator(TINY_G)
    with caplog.at_level(logging.WARNING, logger="sci2i"):
        out = translate_dataset(G, defective_gta5.root, tmp_path / "out", fmt="gta5", long_side=32, progress=False)
    assert out["images"] == out["labels"] == 2 and out["skipped"] == 1
    written = sorted(p.name for p in (tmp_path / "out" / "images").iterdir())
    assert written == ["00001.png", "00005.png"]  # the pair of other sizes is not translated
    assert sorted(p.name for p in (tmp_path / "out" / "labels").iterdir()) == written
    assert sum("00003.png" in r.getMessage() for r in caplog.records) == 1  # the truncated image, named
    # the translated set reads back as a GTA5 dataset, every label at its image's size
    assert GTA5Dataset(tmp_path / "out").names == ["images/00001.png", "images/00005.png"]


def test_i2i_figure_skips_an_unreadable_source_image(tmp_path):
    gta = write_gta5(tmp_path / "gta5", n=3, size=(64, 32))
    corrupt(gta.image_paths[0], "truncate")  # the first image: the figure's first pick
    write_cityscapes(tmp_path / "cs", splits=("train",), n_per_split=2)
    cfg = load_config(None, [
        f"data.source_root={tmp_path / 'gta5'}", f"data.target_root={tmp_path / 'cs'}",
        "data.long_side=64", "data.crop_size=32", "data.eval_long_side=64", "data.num_workers=0",
        "generator.channels=[8,8,16,16]", "generator.latent_dim=8", "generator.style_dim=8",
        "generator.mapping_layers=2", "discriminator.trunk=efficientnet_lite0", "discriminator.trunk_weights=''",
        "discriminator.channels=16", "perf.device=cpu", "i2i.pseudo_labels=online", "i2i.steps=1",
        "i2i.batch_size=1",
    ])
    out = train_i2i(cfg, tmp_path / "run", resume=False)
    assert out["step"] == 1 and not out["stopped"]
    with Image.open(out["figure"]) as fig:
        assert fig.size[0] > 0
