"""Dataset readers for the real on-disk layouts of GTA5, SYNTHIA and Cityscapes (docs/DATA.md).

Every dataset offers one reader interface, which the training loaders and the full-size readers
(pseudo labels, translation, figures, evaluation) all go through, so every consumer sees the
same samples with the same skip list:

* ``len(ds)``; ``ds.name(i)`` and ``ds.names``; ``ds.files(i)`` -> (image path, label path or
  None); ``ds.has_labels``;
* ``ds.read(i)`` -> the raw image (H×W×3 uint8) and trainIds (H×W uint8 or None), raising
  :class:`DataError` naming the file when it cannot be read;
* ``ds.get(i, rng)`` / ``ds[i]`` -> the transformed item below.

:class:`ConcatSegDataset` and the wrappers (:class:`~sci2i.data.robust.SkipBadSamples`, the
resize cache) offer the same. Items are dicts::

    {"image": float32 tensor 3×H×W, RGB in [0, 1],
     "label": int64 tensor H×W of trainIds, 255 = ignore   (absent for unlabelled data),
     "name":  str, the image path relative to the dataset's image root}

``name`` is what output writers mirror (translated images, pseudo labels, exported
predictions). The image root is the dataset root for GTA5 (``images/00001.png``), SYNTHIA
(``RGB/0000001.png``) and image folders, and ``leftImg8bit/<split>`` for Cityscapes
(``aachen/aachen_000000_000019_leftImg8bit.png``).

Label ids are mapped to trainIds with :mod:`sci2i.labels`; ids outside the mapping become 255.
Missing roots or splits raise :class:`DataError` with the expected layout and the path that was
looked at; unreadable files raise :class:`DataError` naming the file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from sci2i.data.io import image_size, list_images, read_label_ids, read_rgb, read_synthia_ids
from sci2i.errors import DataError
from sci2i.labels import IGNORE_INDEX, NUM_CLASSES, label_ids_to_train_ids, synthia_ids_to_train_ids
from sci2i.utils.log_once import warn_once

log = logging.getLogger("sci2i")

Transform = Callable[..., tuple]

GTA5_LAYOUT = "GTA5: <root>/images/NNNNN.png and <root>/labels/NNNNN.png (8-bit palette PNG, index = Cityscapes labelId)"
SYNTHIA_LAYOUT = (
    "SYNTHIA-RAND-CITYSCAPES: <root>/RGB/NNNNNNN.png and <root>/GT/LABELS/NNNNNNN.png "
    "(16-bit PNG, class id in the R channel)"
)
CITYSCAPES_LAYOUT = (
    "Cityscapes: <root>/leftImg8bit/<split>/<city>/*_leftImg8bit.png and "
    "<root>/gtFine/<split>/<city>/*_gtFine_labelIds.png"
)
FOLDER_LAYOUT = "an image folder: <root>/**/*.png|jpg (searched recursively)"

_CS_IMAGE_SUFFIX = "_leftImg8bit"
_MAX_NAMES_SHOWN = 10


def _require_dir(path: Path, what: str, layout: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{what} not found: looked for the folder {path}. Expected layout: {layout}")
    return path


def _shorten(names: Sequence[str]) -> str:
    shown = ", ".join(str(n) for n in names[:_MAX_NAMES_SHOWN])
    more = len(names) - _MAX_NAMES_SHOWN
    return shown + (f", ... ({more} more)" if more > 0 else "")


def image_stem(name: str | Path) -> str:
    """File stem of an image name without the Cityscapes ``_leftImg8bit`` suffix."""
    stem = Path(name).stem
    return stem[: -len(_CS_IMAGE_SUFFIX)] if stem.endswith(_CS_IMAGE_SUFFIX) else stem


def pseudo_label_path(label_dir: str | Path, name: str) -> Path:
    """Where the trainId PNG (pseudo label) of image ``name`` lives below ``label_dir``.

    The relative folder of ``name`` is mirrored and the file is ``<stem>.png``, where the stem
    drops ``_leftImg8bit``: ``aachen/aachen_000000_000019_leftImg8bit.png`` ->
    ``<label_dir>/aachen/aachen_000000_000019.png``. The pseudo-label writer and
    :class:`CityscapesDataset` (``label_dir=``) both use this one function.
    """
    return Path(label_dir) / Path(name).parent / f"{image_stem(name)}.png"


def sanitize_train_ids(train_ids: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """trainId map with every value outside 0..num_classes-1 (Cityscapes: 0..18) set to 255 (ignore)."""
    out = np.asarray(train_ids).astype(np.uint8, copy=True)
    out[np.asarray(train_ids) >= num_classes] = IGNORE_INDEX
    return out


def read_gta5_label(path: Path) -> np.ndarray:
    """GTA5 / Cityscapes labelId PNG -> trainIds."""
    return label_ids_to_train_ids(read_label_ids(path))


def read_synthia_label(path: Path) -> np.ndarray:
    """SYNTHIA GT/LABELS PNG -> trainIds (the table in docs/DATA.md "SYNTHIA-RAND-CITYSCAPES")."""
    return synthia_ids_to_train_ids(read_synthia_ids(path))


def read_train_id_label(path: Path, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """trainId PNG (pseudo labels) -> trainIds, values outside 0..num_classes-1 -> 255."""
    return sanitize_train_ids(read_label_ids(path), num_classes)


def to_tensors(image: np.ndarray, label: Optional[np.ndarray]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """H×W×3 uint8 -> 3×H×W float in [0, 1]; H×W uint8 -> H×W int64."""
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    lbl = torch.from_numpy(np.ascontiguousarray(label).astype(np.int64)) if label is not None else None
    return img, lbl


class SegmentationDataset(Dataset):
    """List of (image, optional label, name) samples read with a label reader and a transform.

    ``get(index, rng)`` lets a sampler pass the random generator of a sample explicitly
    (see :func:`sci2i.data.stream.infinite_loader`); ``dataset[index]`` uses
    :func:`sci2i.data.transforms.default_rng`.
    """

    def __init__(
        self,
        root: Path,
        samples: list[tuple[Path, Optional[Path], str]],
        label_reader: Optional[Callable[[Path], np.ndarray]],
        transform: Optional[Transform] = None,
        max_images: int = 0,
    ) -> None:
        self.root = Path(root)
        self.samples = samples[:max_images] if max_images > 0 else samples
        self.label_reader = label_reader
        self.transform = transform
        if not self.samples:
            raise DataError(f"no images found below {self.root}; expected layout: {self.layout}")

    layout = FOLDER_LAYOUT

    @property
    def has_labels(self) -> bool:
        return self.label_reader is not None

    @property
    def names(self) -> list[str]:
        return [s[2] for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, n={len(self)}, transform={self.transform!r})"

    def __getitem__(self, index: int) -> dict:
        return self.get(index)

    def name(self, index: int) -> str:
        return self.samples[index][2]

    def files(self, index: int) -> tuple[Path, Optional[Path]]:
        """The image file and the label file (None when unlabelled) of sample ``index``."""
        return self.samples[index][0], self.samples[index][1]

    def read(self, index: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Raw image (H×W×3 uint8) and trainIds (H×W uint8 or None) before the transform."""
        image_path, label_path, _ = self.samples[index]
        image = read_rgb(image_path)
        label = None
        if self.label_reader is not None and label_path is not None:
            label = self.label_reader(label_path)
            if label.shape != image.shape[:2]:
                raise DataError(
                    f"label {label_path} is {label.shape[1]}×{label.shape[0]} but image "
                    f"{image_path} is {image.shape[1]}×{image.shape[0]}"
                )
        return image, label

    def get(self, index: int, rng: Optional[np.random.Generator] = None) -> dict:
        image, label = self.read(index)
        return transformed_item(image, label, self.transform, self.samples[index][2], rng)


def transformed_item(image: np.ndarray, label: Optional[np.ndarray], transform: Optional[Transform],
                     name: str, rng: Optional[np.random.Generator] = None) -> dict:
    """A dataset item (module docstring) from a raw image and label: ``transform``, then tensors."""
    if transform is not None:
        image, label = transform(image, label, rng=rng)
    img_t, lbl_t = to_tensors(image, label)
    item = {"image": img_t, "name": name}
    if lbl_t is not None:
        item["label"] = lbl_t
    return item


def with_pseudo_labels(
    samples: list[tuple[Path, Optional[Path], str]], label_dir: str | Path, what: str
) -> list[tuple[Path, Optional[Path], str]]:
    """Pair each image with its pseudo label below ``label_dir``; leave out those without one.

    An image has no pseudo label when the pseudo-label writer skipped it as unreadable (it is
    named in that phase's log) or when it was added after the labels were written; either way it
    is left out of training with one warning that counts and names them.
    """
    root = _require_dir(Path(label_dir), "pseudo-label folder", "trainId PNGs <label_dir>/<city>/<stem>.png")
    paired, missing = [], []
    for img, _, name in samples:
        lbl = pseudo_label_path(root, name)
        (paired if lbl.is_file() else missing).append((img, lbl, name))
    if missing:
        warn_once(log, "%s: %d images have no pseudo label in %s and are left out: %s",
                  what, len(missing), root, _shorten([n for _, _, n in missing]))
    return paired


def _paired_samples(
    image_dir: Path, label_dir: Path, root: Path
) -> tuple[list[tuple[Path, Optional[Path], str]], list[str]]:
    """Pairs ``image_dir/X`` with ``label_dir/X``; returns samples and images without label."""
    samples, missing = [], []
    for img in list_images(image_dir):
        lbl = label_dir / img.relative_to(image_dir)
        if not lbl.is_file():
            lbl = lbl.with_suffix(".png")
        if lbl.is_file():
            samples.append((img, lbl, img.relative_to(root).as_posix()))
        else:
            missing.append(img.relative_to(root).as_posix())
    return samples, missing


def _source_pairs(root: str | Path, images: str, labels: str, label_root: str | Path | None, what: str,
                  layout: str) -> tuple[Path, list[tuple[Path, Optional[Path], str]], list[str]]:
    """A source root's (image, label, name) pairs and the images without label, from its
    ``images`` and ``labels`` folders; the labels optionally from another root (``label_root``)."""
    root = _require_dir(Path(root), f"{what} root", layout)
    image_dir = _require_dir(root / images, f"{what} {images} folder", layout)
    label_dir = _require_dir(Path(label_root if label_root is not None else root) / labels,
                             f"{what} {labels} folder", layout)
    samples, missing = _paired_samples(image_dir, label_dir, root)
    return root, samples, missing


class GTA5Dataset(SegmentationDataset):
    """GTA5: ``images/NNNNN.png`` with ``labels/NNNNN.png`` palette PNGs (index = labelId).

    Pairs whose image and label sizes differ (a known defect of GTA5), whose headers cannot be
    read or whose label is missing are skipped with one warning that counts and names them.
    """

    layout = GTA5_LAYOUT

    def __init__(
        self,
        root: str | Path,
        transform: Optional[Transform] = None,
        max_images: int = 0,
        label_root: str | Path | None = None,
    ) -> None:
        """``label_root`` (optional) reads ``labels/`` from another GTA5-layout root, e.g. the
        source dataset for a folder of translated images that has no ``labels/``."""
        root, samples, missing = _source_pairs(root, "images", "labels", label_root, "GTA5", GTA5_LAYOUT)
        if max_images > 0:
            samples = samples[:max_images]
        good, bad = [], []
        for img, lbl, name in samples:
            try:
                ok = image_size(img) == image_size(lbl)
            except DataError:
                ok = False
            (good if ok else bad).append((img, lbl, name))
        skipped = [f"{n} (no label)" for n in missing] + [
            f"{n} (size differs from its label or unreadable)" for _, _, n in bad
        ]
        if skipped:
            warn_once(log, "GTA5 %s: skipping %d image/label pairs: %s", root, len(skipped), _shorten(skipped))
        super().__init__(root, good, read_gta5_label, transform, 0)


class SynthiaDataset(SegmentationDataset):
    """SYNTHIA-RAND-CITYSCAPES: ``RGB/NNNNNNN.png`` with 16-bit ``GT/LABELS/NNNNNNN.png``."""

    layout = SYNTHIA_LAYOUT

    def __init__(
        self,
        root: str | Path,
        transform: Optional[Transform] = None,
        max_images: int = 0,
        label_root: str | Path | None = None,
    ) -> None:
        """``label_root`` as in :class:`GTA5Dataset` (reads ``GT/LABELS`` from there)."""
        root, samples, missing = _source_pairs(root, "RGB", "GT/LABELS", label_root, "SYNTHIA", SYNTHIA_LAYOUT)
        if missing:
            warn_once(log, "SYNTHIA %s: skipping %d images without label: %s", root, len(missing), _shorten(missing))
        super().__init__(root, samples, read_synthia_label, transform, max_images)


class CityscapesDataset(SegmentationDataset):
    """Cityscapes ``leftImg8bit/<split>`` images with ``gtFine`` labelIds or pseudo labels.

    ``label_dir`` (optional) replaces gtFine by a folder of trainId PNGs laid out as
    :func:`pseudo_label_path` says. ``with_labels=False`` yields images only.
    """

    layout = CITYSCAPES_LAYOUT

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Optional[Transform] = None,
        with_labels: bool = True,
        label_dir: str | Path | None = None,
        max_images: int = 0,
    ) -> None:
        root = _require_dir(Path(root), "Cityscapes root", CITYSCAPES_LAYOUT)
        image_root = _require_dir(
            root / "leftImg8bit" / split, f"Cityscapes split '{split}'", CITYSCAPES_LAYOUT
        )
        self.split = split
        images = list_images(image_root, suffix=f"{_CS_IMAGE_SUFFIX}.png")
        if max_images > 0:
            images = images[:max_images]
        names = [p.relative_to(image_root).as_posix() for p in images]
        reader: Optional[Callable[[Path], np.ndarray]] = None
        samples: list[tuple[Path, Optional[Path], str]] = [(p, None, n) for p, n in zip(images, names)]
        if with_labels and label_dir is not None:
            samples = with_pseudo_labels(samples, label_dir, f"Cityscapes '{split}'")
            reader = read_train_id_label
        elif with_labels:
            gt_root = _require_dir(root / "gtFine" / split, f"Cityscapes gtFine split '{split}'", CITYSCAPES_LAYOUT)
            samples = [(p, gt_root / Path(n).parent / f"{image_stem(n)}_gtFine_labelIds.png", n)
                       for p, _, n in samples]
            missing = [str(lbl) for _, lbl, _ in samples if not lbl.is_file()]
            if missing:
                raise DataError(f"{len(missing)} label files are missing for Cityscapes '{split}': {_shorten(missing)}")
            reader = read_gta5_label
        super().__init__(image_root, samples, reader, transform, 0)


class ImageFolderDataset(SegmentationDataset):
    """Unlabelled images below ``root`` (recursive, sorted), e.g. ``leftImg8bit_sequence/train``."""

    layout = FOLDER_LAYOUT

    def __init__(self, root: str | Path, transform: Optional[Transform] = None, max_images: int = 0,
                 label_dir: str | Path | None = None) -> None:
        """``label_dir`` (optional) pairs each image with its pseudo label, as for Cityscapes."""
        root = _require_dir(Path(root), "image folder", FOLDER_LAYOUT)
        samples: list[tuple[Path, Optional[Path], str]] = [
            (p, None, p.relative_to(root).as_posix()) for p in list_images(root)]
        if max_images > 0:
            samples = samples[:max_images]
        reader = None
        if label_dir is not None:
            samples = with_pseudo_labels(samples, label_dir, f"image folder {root}")
            reader = read_train_id_label
        super().__init__(root, samples, reader, transform, 0)


class ConcatSegDataset(Dataset):
    """Concatenation of datasets that keeps the ``get(index, rng)`` protocol."""

    def __init__(self, datasets: Sequence[SegmentationDataset]) -> None:
        if not datasets:
            raise ValueError("ConcatSegDataset needs at least one dataset")
        self.datasets = list(datasets)
        self.offsets = np.cumsum([0] + [len(d) for d in self.datasets])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __repr__(self) -> str:
        return f"ConcatSegDataset({self.datasets!r})"

    @property
    def names(self) -> list[str]:
        """Item names of all parts in order (names are relative to each part's own root)."""
        return [n for d in self.datasets for n in d.names]

    @property
    def has_labels(self) -> bool:
        return all(d.has_labels for d in self.datasets)

    def _locate(self, index: int) -> tuple[SegmentationDataset, int]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        k = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return self.datasets[k], index - int(self.offsets[k])

    def name(self, index: int) -> str:
        ds, i = self._locate(index)
        return ds.name(i)

    def files(self, index: int) -> tuple[Path, Optional[Path]]:
        ds, i = self._locate(index)
        return ds.files(i)

    def read(self, index: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
        ds, i = self._locate(index)
        return ds.read(i)

    def get(self, index: int, rng: Optional[np.random.Generator] = None) -> dict:
        ds, i = self._locate(index)
        return ds.get(i, rng)

    def __getitem__(self, index: int) -> dict:
        return self.get(index)
