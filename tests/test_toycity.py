"""toy-city: determinism, class coverage, image/label alignment, on-disk layouts, skip logic."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sci2i.errors import UserError
from sci2i.labels import NUM_CLASSES, label_ids_to_train_ids
from sci2i.toycity import MANIFEST, generate, is_complete, read_manifest, render_image
from sci2i.toycity.textures import TEXTURES, photo
from sci2i.toycity.writer import gta5_palette

TINY = dict(width=96, height=48, n_source=5, n_target_train=3, n_target_val=2)


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toycity") / "tc"
    generate(root, seed=3, workers=1, progress=False, **TINY)
    return root


def test_same_seed_same_bytes_regardless_of_workers(tiny: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate(again, seed=3, workers=2, progress=False, **TINY)
    assert _hashes(tiny) == _hashes(again)
    other = tmp_path / "other"
    generate(other, seed=4, workers=1, progress=False, **TINY)
    assert _hashes(other)["source/images/00001.png"] != _hashes(tiny)["source/images/00001.png"]


def test_every_class_in_a_modest_source_generation() -> None:
    seen = np.zeros(256, dtype=bool)
    for i in range(16):
        _, label_ids = render_image("source", 0, i, 128, 64)
        seen[np.unique(label_ids_to_train_ids(label_ids))] = True
    missing = [c for c in range(NUM_CLASSES) if not seen[c]]
    assert not missing, f"trainIds never drawn in 16 source images: {missing}"


def test_source_image_is_a_function_of_the_label_layout() -> None:
    """Flat rendering: label edges are colour edges, and each colour belongs to one class."""
    for i in range(4):
        rgb, label_ids = render_image("source", 1, i, 128, 64)
        colour = rgb.astype(np.int64) @ np.array([1, 256, 65536])
        label_edge = label_ids[:, 1:] != label_ids[:, :-1]
        colour_edge = colour[:, 1:] != colour[:, :-1]
        assert (colour_edge[label_edge]).mean() > 0.99
        # Majority class per exact colour explains (nearly) every pixel.
        pairs = np.unique(np.stack([colour.ravel(), label_ids.ravel()]), axis=1, return_counts=True)
        (col, lab), counts = pairs
        best = {}
        for c, n in zip(col, counts):
            best[c] = max(best.get(c, 0), n)
        assert sum(best.values()) / label_ids.size > 0.99


def test_target_is_textured_where_source_is_flat() -> None:
    """Share of same-class neighbouring pixels with exactly the same colour."""

    def flatness(split: str) -> float:
        values = []
        for i in range(3):
            rgb, label_ids = render_image(split, 2, i, 128, 64)
            same_label = label_ids[:, 1:] == label_ids[:, :-1]
            same_colour = (rgb[:, 1:] == rgb[:, :-1]).all(-1)
            values.append(same_colour[same_label].mean())
        return float(np.mean(values))

    source, target = flatness("source"), flatness("train")
    assert source > 0.85, source  # only edges between parts of one class (windows, markings)
    assert target < 0.2, target


def test_layouts(tiny: Path) -> None:
    src = tiny / "source"
    images = sorted((src / "images").iterdir())
    assert [p.name for p in images] == [f"{i:05d}.png" for i in range(1, TINY["n_source"] + 1)]
    for img_path in images:
        label = Image.open(src / "labels" / img_path.name)
        assert label.mode == "P" and label.getpalette()[:768] == gta5_palette()[: len(label.getpalette()[:768])]
        rgb = Image.open(img_path)
        assert rgb.mode == "RGB" and rgb.size == label.size == (TINY["width"], TINY["height"])
        assert set(np.unique(label_ids_to_train_ids(np.asarray(label)))) <= set(range(NUM_CLASSES)) | {255}
    trg = tiny / "target"
    pattern = re.compile(r"^(\w+)_(\d{6})_(\d{6})_leftImg8bit\.png$")
    for split, n in (("train", TINY["n_target_train"]), ("val", TINY["n_target_val"])):
        images = sorted((trg / "leftImg8bit" / split).rglob("*.png"))
        assert len(images) == n
        for img_path in images:
            m = pattern.match(img_path.name)
            assert m and m.group(1) == img_path.parent.name
            label_path = trg / "gtFine" / split / m.group(1) / img_path.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png")
            label = Image.open(label_path)
            assert label.mode == "L" and label.size == Image.open(img_path).size
            assert np.isin(np.asarray(label), [1, 7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]).all()
    manifest = read_manifest(tiny)
    assert manifest["seed"] == 3 and manifest["sizes"] == TINY


def test_readable_by_the_dataset_classes(tiny: Path) -> None:
    datasets = pytest.importorskip("sci2i.data.datasets")
    gta = datasets.GTA5Dataset(tiny / "source")
    assert len(gta) == TINY["n_source"]
    item = gta[0]
    assert tuple(item["image"].shape) == (3, TINY["height"], TINY["width"])
    assert set(item["label"].unique().tolist()) <= set(range(NUM_CLASSES)) | {255}
    for split, n in (("train", TINY["n_target_train"]), ("val", TINY["n_target_val"])):
        cs = datasets.CityscapesDataset(tiny / "target", split, with_labels=True)
        assert len(cs) == n
        assert tuple(cs[0]["label"].shape) == (TINY["height"], TINY["width"])
    assert len(datasets.CityscapesDataset(tiny / "target", "train", with_labels=False)) == TINY["n_target_train"]


def test_complete_skip_and_refusals(tiny: Path, tmp_path: Path) -> None:
    assert is_complete(tiny) and is_complete(tiny, seed=3, **TINY)
    assert not is_complete(tiny, seed=4) and not is_complete(tiny, n_source=6)
    before = (tiny / MANIFEST).stat().st_mtime_ns
    generate(tiny, seed=3, progress=False, **TINY)  # complete: nothing rewritten
    assert (tiny / MANIFEST).stat().st_mtime_ns == before

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        generate(foreign, progress=False, **TINY)
    generate(foreign, overwrite=True, workers=1, progress=False, **{**TINY, "n_source": 1})
    assert (foreign / "notes.txt").read_text() == "mine" and is_complete(foreign)

    # An interrupted run (marker left behind) is cleaned up and redone without --overwrite.
    (foreign / ".toycity-incomplete").write_text("")
    (foreign / "notes.txt").unlink()
    assert not is_complete(foreign)
    generate(foreign, workers=1, progress=False, **{**TINY, "n_source": 1})
    assert is_complete(foreign)


def test_texture_photos_ship_with_installed_packages() -> None:
    for name in sorted({spec.photo for specs in TEXTURES.values() for spec in specs}):
        img = photo(name)
        assert img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 100, name
