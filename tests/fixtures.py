"""Writers of tiny datasets in the real on-disk formats (docs/DATA.md), for tests.

Import them in a test module as ``from fixtures import write_gta5, ...`` (pytest puts
``tests/`` on ``sys.path``; do not add ``tests/__init__.py``). Each writer returns a
:class:`Written` record with the ground truth it wrote, so tests can compare what a reader
returns with what is on disk.

* :func:`write_gta5`: ``images/NNNNN.png`` + ``labels/NNNNN.png`` 8-bit *palette* PNGs whose
  palette index is the Cityscapes labelId (colours = the Cityscapes palette, as in GTA5).
* :func:`write_synthia`: ``RGB/NNNNNNN.png`` + ``GT/LABELS/NNNNNNN.png`` 16-bit 3-channel
  PNGs with the SYNTHIA class id in the R channel (instance id in G).
* :func:`write_cityscapes`: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` and
  ``gtFine/<split>/<city>/*_gtFine_labelIds.png`` (+ ``*_gtFine_instanceIds.png``), and
  optionally ``leftImg8bit_sequence/train``.
* :func:`corrupt`: truncate a file or replace it with random bytes.

Label maps are blocky (random rectangles) and images are the class colour plus noise, so the
data is quick to write (64×32 by default) yet not trivially uniform.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from cityscapesscripts.helpers.labels import id2label
from PIL import Image

from sci2i.labels import SYNTHIA_ID_TO_TRAIN_ID, label_ids_to_train_ids, synthia_ids_to_train_ids

#: Every Cityscapes labelId 0..33 (incl. void ids that map to 255).
CITYSCAPES_LABEL_IDS = tuple(range(34))
#: SYNTHIA raw ids used by the writer: all mapped ones plus a few unmapped (0, 13, 22).
SYNTHIA_RAW_IDS = tuple(sorted(SYNTHIA_ID_TO_TRAIN_ID)) + (0, 13, 22)
#: Cities used per split (real Cityscapes names).
CITIES = {"train": ("aachen", "bochum"), "val": ("frankfurt", "lindau"), "test": ("berlin",)}


@dataclass
class Written:
    """What a writer put on disk, in the order a sorted reader lists it."""

    root: Path
    names: list[str] = field(default_factory=list)  # dataset item names (see sci2i.data.datasets)
    images: list[np.ndarray] = field(default_factory=list)  # H×W×3 uint8 RGB
    raw_labels: list[np.ndarray] = field(default_factory=list)  # ids as stored in the file
    train_ids: list[np.ndarray] = field(default_factory=list)  # H×W uint8 expected trainIds
    image_paths: list[Path] = field(default_factory=list)
    label_paths: list[Path] = field(default_factory=list)


def cityscapes_palette() -> list[int]:
    """768-entry PIL palette indexed by Cityscapes labelId (GTA5 label PNGs use it)."""
    pal = [0] * 768
    for i in CITYSCAPES_LABEL_IDS:
        pal[3 * i : 3 * i + 3] = id2label[i].color
    return pal


def blocky_labels(rng: np.random.Generator, size: tuple[int, int], ids: Sequence[int], blocks: int = 12) -> np.ndarray:
    """H×W int64 map of random rectangles drawn from ``ids`` (``size`` is (W, H))."""
    w, h = size
    lab = np.full((h, w), ids[int(rng.integers(len(ids)))], dtype=np.int64)
    for _ in range(blocks):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(1, max(2, w // 2))), y0 + int(rng.integers(1, max(2, h // 2)))
        lab[y0:y1, x0:x1] = ids[int(rng.integers(len(ids)))]
    return lab


def image_for(label_colors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Class colour plus noise, as uint8 RGB."""
    noise = rng.integers(-20, 21, size=label_colors.shape)
    return np.clip(label_colors.astype(np.int64) + noise, 0, 255).astype(np.uint8)


def _colors_of_label_ids(label_ids: np.ndarray) -> np.ndarray:
    lut = np.zeros((256, 3), dtype=np.uint8)
    for i in CITYSCAPES_LABEL_IDS:
        lut[i] = id2label[i].color
    return lut[np.clip(label_ids, 0, 255)]


def _save_rgb(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def write_gta5(
    root: str | Path,
    n: int = 4,
    size: tuple[int, int] = (64, 32),
    seed: int = 0,
    mismatched: Sequence[int] = (),
    extra_ids: Sequence[int] = (40, 200),
) -> Written:
    """GTA5 layout: ``images/00001.png`` .. and palette ``labels/00001.png`` (index = labelId).

    ``size`` is (W, H). Pairs listed in ``mismatched`` (0-based) get a label 2 px narrower than
    the image (the GTA5 defect readers must skip); they are not in the returned ``names``.
    ``extra_ids`` are palette indices outside Cityscapes' 0..33 that must become 255.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    out = Written(root)
    ids = CITYSCAPES_LABEL_IDS + tuple(extra_ids)
    for k in range(n):
        stem = f"{k + 1:05d}"
        lab = blocky_labels(rng, size, ids).astype(np.uint8)
        img = image_for(_colors_of_label_ids(lab), rng)
        if k in mismatched:
            lab = lab[:, :-2]
        img_path, lab_path = root / "images" / f"{stem}.png", root / "labels" / f"{stem}.png"
        _save_rgb(img_path, img)
        lab_img = Image.fromarray(lab, mode="P")
        lab_img.putpalette(cityscapes_palette())
        lab_path.parent.mkdir(parents=True, exist_ok=True)
        lab_img.save(lab_path)
        if k in mismatched:
            continue
        out.names.append(f"images/{stem}.png")
        out.images.append(img)
        out.raw_labels.append(lab)
        out.train_ids.append(label_ids_to_train_ids(lab))
        out.image_paths.append(img_path)
        out.label_paths.append(lab_path)
    return out


def write_synthia(root: str | Path, n: int = 4, size: tuple[int, int] = (64, 32), seed: int = 0) -> Written:
    """SYNTHIA-RAND-CITYSCAPES layout: ``RGB/0000000.png`` and 16-bit ``GT/LABELS/0000000.png``.

    Labels are 3-channel uint16 with the class id in R and an instance id in G (as in SYNTHIA);
    OpenCV writes BGR, so R is stored as channel 2 of the array passed to ``cv2.imwrite``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    out = Written(root)
    for k in range(n):
        stem = f"{k:07d}"
        raw = blocky_labels(rng, size, SYNTHIA_RAW_IDS)
        trainids = synthia_ids_to_train_ids(raw)
        colors = np.zeros(raw.shape + (3,), dtype=np.uint8)
        colors[...] = (rng.integers(0, 255, size=(256, 3)).astype(np.uint8))[trainids]
        img = image_for(colors, rng)
        bgr16 = np.zeros(raw.shape + (3,), dtype=np.uint16)
        bgr16[..., 2] = raw  # R: class id
        bgr16[..., 1] = rng.integers(0, 60000, size=raw.shape)  # G: instance id (ignored)
        img_path, lab_path = root / "RGB" / f"{stem}.png", root / "GT" / "LABELS" / f"{stem}.png"
        _save_rgb(img_path, img)
        lab_path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(lab_path), bgr16)
        out.names.append(f"RGB/{stem}.png")
        out.images.append(img)
        out.raw_labels.append(raw)
        out.train_ids.append(trainids)
        out.image_paths.append(img_path)
        out.label_paths.append(lab_path)
    return out


def write_cityscapes(
    root: str | Path,
    splits: Sequence[str] = ("train", "val"),
    n_per_split: int = 2,
    size: tuple[int, int] = (64, 32),
    seed: int = 0,
    with_sequence: bool = False,
    frames_per_snippet: int = 3,
) -> dict[str, Written]:
    """Cityscapes layout for ``splits``; returns ``{split: Written}`` (+ ``"sequence"``).

    Images are ``<city>_<seq:06d>_000019_leftImg8bit.png``, spread over the split's cities in
    :data:`CITIES`; names are relative to ``leftImg8bit/<split>``. gtFine labelIds (and
    instanceIds, needed by the official evaluator's defaults) are written for every split but
    ``test``. ``with_sequence`` adds ``leftImg8bit_sequence/train/<city>/`` with
    ``frames_per_snippet`` frames per train image (names relative to that folder).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    result: dict[str, Written] = {}
    for split in splits:
        out = Written(root)
        cities = CITIES.get(split, (f"{split}city",))
        entries = []
        for k in range(n_per_split):
            city = cities[k % len(cities)]
            entries.append((city, f"{city}_{k:06d}_000019"))
        for city, stem in sorted(entries, key=lambda e: f"{e[0]}/{e[1]}"):
            lab = blocky_labels(rng, size, CITYSCAPES_LABEL_IDS).astype(np.uint8)
            img = image_for(_colors_of_label_ids(lab), rng)
            img_path = root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
            _save_rgb(img_path, img)
            out.names.append(f"{city}/{stem}_leftImg8bit.png")
            out.images.append(img)
            out.image_paths.append(img_path)
            if split != "test":
                lab_path = root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
                lab_path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(lab).save(lab_path)
                inst = lab.astype(np.uint16) * 1000  # one instance per class: id*1000 (16-bit PNG)
                Image.fromarray(inst).save(lab_path.with_name(f"{stem}_gtFine_instanceIds.png"))
                out.raw_labels.append(lab)
                out.train_ids.append(label_ids_to_train_ids(lab))
                out.label_paths.append(lab_path)
        result[split] = out
    if with_sequence:
        seq = Written(root / "leftImg8bit_sequence" / "train")
        cities = CITIES["train"]
        for k in range(n_per_split):
            city = cities[k % len(cities)]
            for f in range(19 - frames_per_snippet // 2, 19 - frames_per_snippet // 2 + frames_per_snippet):
                name = f"{city}/{city}_{k:06d}_{f:06d}_leftImg8bit.png"
                img = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
                _save_rgb(seq.root / name, img)
                seq.names.append(name)
                seq.images.append(img)
                seq.image_paths.append(seq.root / name)
        order = np.argsort(seq.names)
        seq.names = [seq.names[i] for i in order]
        seq.images = [seq.images[i] for i in order]
        seq.image_paths = [seq.image_paths[i] for i in order]
        result["sequence"] = seq
    return result


def write_image_folder(root: str | Path, names: Sequence[str], size: tuple[int, int] = (64, 32), seed: int = 0) -> Written:
    """Random RGB images at the given relative ``names`` (any subfolders)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    out = Written(root)
    for name in sorted(names):
        img = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        _save_rgb(root / name, img)
        out.names.append(name)
        out.images.append(img)
        out.image_paths.append(root / name)
    return out


def corrupt(path: str | Path, mode: str = "truncate", seed: int = 0) -> None:
    """Damage a file: ``truncate`` keeps its first half, ``random`` writes random bytes,
    ``empty`` leaves zero bytes."""
    path = Path(path)
    data = path.read_bytes()
    if mode == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif mode == "random":
        path.write_bytes(np.random.default_rng(seed).integers(0, 256, size=len(data), dtype=np.uint8).tobytes())
    elif mode == "empty":
        path.write_bytes(b"")
    else:
        raise ValueError(f"unknown corruption mode {mode!r}")


#: A tiny run of the whole pipeline (``sci2i run`` on a YAML file holding it): EfficientNet-Lite0
#: without weights, a small generator and discriminator, two steps per training phase.
TINY_RUN = {
    "name": "tiny",
    "data": {"long_side": 64, "crop_size": 32, "eval_long_side": 64, "num_workers": 0},
    "model": {"backbone": "efficientnet_lite0", "weights": ""},
    "discriminator": {"trunk": "efficientnet_lite0", "trunk_weights": "", "channels": 16},
    "generator": {"channels": [8, 8, 16, 16], "latent_dim": 16, "style_dim": 16, "mapping_layers": 2},
    "seg": {"steps": 2, "con_start": 1, "eval_every": 0, "log_every": 1},
    "i2i": {"steps": 2, "log_every": 1, "sample_every": 1},
    "run": {"checkpoint_every": 1, "deterministic": True},
}


def tiny_seg_overrides(data: Path) -> list[str]:
    """``key=value`` overrides of a tiny mean-teacher run on ``data/gta`` (GTA5) and ``data/cs``
    (Cityscapes), 64-pixel images, batch 2, no checkpoint before step 100."""
    return [
        "model.backbone=efficientnet_lite0", "model.aspp_rates=[1,2,3,4]",
        f"data.source_root={data / 'gta'}", f"data.target_root={data / 'cs'}",
        "data.long_side=64", "data.crop_size=32", "data.eval_long_side=64", "data.num_workers=0",
        "seg.batch_size=2", "seg.lr=1e-3", "seg.con_start=1", "seg.log_every=2",
        "seg.eval_every=0", "run.checkpoint_every=100", "run.deterministic=true", "perf.device=cpu",
    ]
