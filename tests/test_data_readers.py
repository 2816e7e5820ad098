"""Dataset readers on the real on-disk layouts (docs/DATA.md), written by tests/fixtures.py."""

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from fixtures import corrupt, write_cityscapes, write_gta5, write_image_folder, write_synthia
from sci2i.data import (
    CityscapesDataset,
    GTA5Dataset,
    ImageFolderDataset,
    SynthiaDataset,
    pseudo_label_path,
)
from sci2i.data.io import read_synthia_ids
from sci2i.errors import DataError


def _check_items(ds, written):
    assert ds.names == written.names
    for i in range(len(ds)):
        item = ds[i]
        assert item["name"] == written.names[i]
        assert item["image"].dtype.is_floating_point and item["image"].shape == (3, *written.images[i].shape[:2])
        np.testing.assert_array_equal(
            (item["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), written.images[i]
        )
        if written.train_ids:
            assert str(item["label"].dtype) == "torch.int64"
            np.testing.assert_array_equal(item["label"].numpy(), written.train_ids[i])


def test_gta5_reads_images_and_palette_indices(tmp_path):
    w = write_gta5(tmp_path, n=3)
    ds = GTA5Dataset(tmp_path)
    _check_items(ds, w)
    labels = np.concatenate([ds[i]["label"].numpy().ravel() for i in range(len(ds))])
    assert 255 in labels and labels.max() == 255 and set(labels.tolist()) - {255} <= set(range(19))


def test_gta5_label_is_read_by_palette_index_not_colour(tmp_path):
    w = write_gta5(tmp_path, n=1)
    # Same indices, scrambled palette: the trainIds must not change.
    img = Image.open(w.label_paths[0])
    img.putpalette(np.random.default_rng(1).integers(0, 256, 768).astype(np.uint8).tolist())
    img.save(w.label_paths[0])
    np.testing.assert_array_equal(GTA5Dataset(tmp_path)[0]["label"].numpy(), w.train_ids[0])


def test_gta5_size_mismatch_skipped_with_one_warning(tmp_path, caplog):
    w = write_gta5(tmp_path, n=5, mismatched=(1, 3))
    with caplog.at_level(logging.WARNING, logger="sci2i"):
        ds = GTA5Dataset(tmp_path)
    assert ds.names == w.names == ["images/00001.png", "images/00003.png", "images/00005.png"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    msg = warnings[0].getMessage()
    assert "2 image/label pairs" in msg and "00002.png" in msg and "00004.png" in msg


def test_gta5_max_images(tmp_path):
    write_gta5(tmp_path, n=4)
    assert GTA5Dataset(tmp_path, max_images=2).names == ["images/00001.png", "images/00002.png"]


def test_synthia_reads_16bit_r_channel(tmp_path):
    w = write_synthia(tmp_path, n=3)
    ds = SynthiaDataset(tmp_path)
    _check_items(ds, w)
    # the G channel (instance ids, up to 60000) must not leak into the class ids
    np.testing.assert_array_equal(read_synthia_ids(w.label_paths[0]), w.raw_labels[0])


def test_synthia_4_channel_and_single_channel_labels(tmp_path):
    raw = np.array([[3, 4, 21], [1, 0, 11]], dtype=np.uint16)
    bgra = np.zeros((2, 3, 4), dtype=np.uint16)
    bgra[..., 2] = raw
    bgra[..., 3] = 65535  # alpha: must not be taken as the class id
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    cv2.imwrite(str(tmp_path / "b.png"), raw)
    np.testing.assert_array_equal(read_synthia_ids(tmp_path / "a.png"), raw)
    np.testing.assert_array_equal(read_synthia_ids(tmp_path / "b.png"), raw)


def test_cityscapes_splits_names_and_labels(tmp_path):
    w = write_cityscapes(tmp_path, splits=("train", "val", "test"), n_per_split=3)
    for split in ("train", "val"):
        _check_items(CityscapesDataset(tmp_path, split), w[split])
    assert CityscapesDataset(tmp_path, "val").names[0] == "frankfurt/frankfurt_000000_000019_leftImg8bit.png"
    test = CityscapesDataset(tmp_path, "test", with_labels=False)
    assert "label" not in test[0] and test.names == w["test"].names
    with pytest.raises(DataError, match="gtFine"):
        CityscapesDataset(tmp_path, "test", with_labels=True)


def test_pseudo_label_path_naming():
    name = "aachen/aachen_000000_000019_leftImg8bit.png"
    assert pseudo_label_path("/pl", name) == Path("/pl/aachen/aachen_000000_000019.png")
    assert pseudo_label_path("pl", "images/00001.png") == Path("pl/images/00001.png")


def test_cityscapes_with_pseudo_label_dir(tmp_path, caplog):
    w = write_cityscapes(tmp_path / "cs", splits=("train",), n_per_split=2)
    rng = np.random.default_rng(0)
    expected = []
    for name in w["train"].names:
        pl = rng.integers(0, 19, size=(32, 64)).astype(np.uint8)
        pl[0, :5] = [255, 19, 30, 254, 18]  # non-class values become 255
        path = pseudo_label_path(tmp_path / "pl", name)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pl).save(path)
        pl = pl.copy()
        pl[0, :4] = 255
        expected.append(pl)
    ds = CityscapesDataset(tmp_path / "cs", "train", label_dir=tmp_path / "pl")
    for i, pl in enumerate(expected):
        np.testing.assert_array_equal(ds[i]["label"].numpy(), pl)
    # an image without a pseudo label (the writer skipped it as unreadable) is left out, named
    pseudo_label_path(tmp_path / "pl", w["train"].names[1]).unlink()
    with caplog.at_level(logging.WARNING, logger="sci2i"):
        ds = CityscapesDataset(tmp_path / "cs", "train", label_dir=tmp_path / "pl")
    assert ds.names == [w["train"].names[0]]
    assert "1 images have no pseudo label" in caplog.text and w["train"].names[1] in caplog.text


def test_image_folder_is_recursive_and_sorted(tmp_path):
    w = write_image_folder(tmp_path, ["b/x.png", "a/z/y.png", "c.png", "a/w.jpg"])
    (tmp_path / "notes.txt").write_text("not an image")
    ds = ImageFolderDataset(tmp_path)
    assert ds.names == ["a/w.jpg", "a/z/y.png", "b/x.png", "c.png"]
    item = ds[2]
    assert "label" not in item
    np.testing.assert_array_equal((item["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8),
                                  w.images[w.names.index("b/x.png")])
    assert ImageFolderDataset(tmp_path, max_images=1).names == ["a/w.jpg"]


@pytest.mark.parametrize(
    "make,what,layout",
    [
        (lambda r: GTA5Dataset(r), "GTA5 root", "images/NNNNN.png"),
        (lambda r: SynthiaDataset(r), "SYNTHIA root", "GT/LABELS"),
        (lambda r: CityscapesDataset(r), "Cityscapes root", "leftImg8bit/<split>"),
        (lambda r: ImageFolderDataset(r), "image folder", "recursively"),
    ],
)
def test_missing_root_names_layout_and_path(tmp_path, make, what, layout):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as e:
        make(missing)
    msg = str(e.value)
    assert what in msg and str(missing) in msg and layout in msg


def test_missing_split_and_subfolders(tmp_path):
    write_cityscapes(tmp_path / "cs", splits=("train",), n_per_split=1)
    with pytest.raises(DataError, match=r"split 'val'.*leftImg8bit[/\\]val"):
        CityscapesDataset(tmp_path / "cs", "val")
    (tmp_path / "g" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="GTA5 labels folder"):
        GTA5Dataset(tmp_path / "g")
    (tmp_path / "g" / "labels").mkdir()
    with pytest.raises(DataError, match="no images"):
        GTA5Dataset(tmp_path / "g")


@pytest.mark.parametrize("mode", ["truncate", "random", "empty"])
@pytest.mark.parametrize("which", ["image", "label"])
def test_corrupt_file_is_named(tmp_path, mode, which):
    w = write_synthia(tmp_path, n=2)
    path = (w.image_paths if which == "image" else w.label_paths)[1]
    corrupt(path, mode)
    ds = SynthiaDataset(tmp_path)
    ds[0]  # the intact sample still reads
    with pytest.raises(DataError, match=str(path.name)) as e:
        ds[1]
    assert str(path) in str(e.value)


def test_label_of_wrong_size_at_read_time_names_both_files(tmp_path):
    w = write_cityscapes(tmp_path, splits=("val",), n_per_split=1)
    Image.fromarray(w["val"].raw_labels[0][:, :10]).save(w["val"].label_paths[0])
    with pytest.raises(DataError) as e:
        CityscapesDataset(tmp_path, "val")[0]
    assert str(w["val"].label_paths[0]) in str(e.value) and str(w["val"].image_paths[0]) in str(e.value)


def test_rgb_label_png_is_rejected_for_gta5(tmp_path):
    w = write_gta5(tmp_path, n=1)
    Image.open(w.label_paths[0]).convert("RGB").save(w.label_paths[0])
    with pytest.raises(DataError, match="mode 'RGB'"):
        GTA5Dataset(tmp_path)[0]
