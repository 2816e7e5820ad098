"""On-disk layouts: the source as GTA5, the target as Cityscapes (docs/DATA.md).

* source: ``images/NNNNN.png`` (RGB) and ``labels/NNNNN.png`` (8-bit palette PNG whose index
  is the Cityscapes labelId and whose palette is the Cityscapes colour of that labelId, as in
  GTA5), numbered from 00001.
* target: ``leftImg8bit/<split>/<city>/<city>_<seq:06d>_000019_leftImg8bit.png`` and
  ``gtFine/<split>/<city>/<same stem>_gtFine_labelIds.png`` (8-bit greyscale labelIds).

PNG encoding by Pillow is deterministic, so equal arrays give equal files.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from cityscapesscripts.helpers import labels as _cs
from PIL import Image

#: Fake city names per split (like Cityscapes' aachen, bochum, ...; val cities differ from train).
CITIES = {"train": ("toyberg", "pixelstadt", "voxelheim"), "val": ("rasterdam", "polygonia")}
FRAME = 19  # Cityscapes' annotated frame number within a snippet


@lru_cache(maxsize=None)
def gta5_palette() -> list[int]:
    """768-entry palette: index = Cityscapes labelId, colour = its Cityscapes colour."""
    pal = [0] * 768
    for label in _cs.labels:
        if 0 <= label.id < 256:
            pal[3 * label.id : 3 * label.id + 3] = list(label.color)
    return pal


def source_paths(root: Path, index: int) -> tuple[Path, Path]:
    """(image, label) paths of source image ``index`` (0-based; files are numbered from 1)."""
    name = f"{index + 1:05d}.png"
    return root / "images" / name, root / "labels" / name


def target_paths(root: Path, split: str, index: int) -> tuple[Path, Path]:
    """(image, label) paths of target image ``index`` of ``split``; cities take turns."""
    cities = CITIES[split]
    city, seq = cities[index % len(cities)], index // len(cities)
    stem = f"{city}_{seq:06d}_{FRAME:06d}"
    return (root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
            root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")


def _save(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")


def write_source_pair(root: Path, index: int, rgb: np.ndarray, label_ids: np.ndarray) -> None:
    image_path, label_path = source_paths(root, index)
    _save(Image.fromarray(rgb, "RGB"), image_path)
    ids = np.ascontiguousarray(label_ids, dtype=np.uint8)
    label = Image.frombytes("P", (ids.shape[1], ids.shape[0]), ids.tobytes())  # indices kept as-is
    label.putpalette(gta5_palette())
    _save(label, label_path)


def write_target_pair(root: Path, split: str, index: int, rgb: np.ndarray, label_ids: np.ndarray) -> None:
    image_path, label_path = target_paths(root, split, index)
    _save(Image.fromarray(rgb, "RGB"), image_path)
    _save(Image.fromarray(label_ids.astype(np.uint8), "L"), label_path)
