"""Your own dataset, described by a small YAML file instead of a built-in reader.

A *dataset file* says which classes there are, how the ids in the label files map to them and
where the images and labels of each split are::

    name: my-city                       # shown in messages
    root: ../data/my-city               # relative to this file's folder (default: the folder)
    classes:                            # train id k = the k-th entry
      - {name: road, color: [128, 64, 128], ids: [7]}    # label-file ids of this class
      - {name: sidewalk, color: [244, 35, 232], ids: [8]}
      ...
    ignore_id: 255                      # train id of pixels of no class
    ignore_ids: [0, 1, 2, 3]            # label-file ids that mean "no class" (void), not warned about
    image_suffix: .png                  # an image is every file below a split's images/ ending so
    label_suffix: .png                  # its label: the same relative path, this suffix instead
    splits:
      train: {images: images, labels: labels}        # folders relative to root
      val: {images: val/images, labels: val/labels, image_suffix: .jpg}   # per-split overrides

Label files are grey or palette PNGs whose pixel value (palette *index*) is the id, as GTA5
and Cityscapes' ``*_labelIds.png`` are. An id that no class lists becomes ``ignore_id``; unless
``ignore_ids`` names it, such ids are counted and reported in one warning per process (ids,
pixels, the first file). A split
without ``labels`` is unlabelled (a target train split; only validation needs labels).

Item names are paths relative to the split's image folder, so pseudo labels
(:func:`sci2i.data.datasets.pseudo_label_path`) and exports mirror them as for Cityscapes.
:class:`CustomDataset` has the interface of the built-in readers
(:class:`~sci2i.data.datasets.SegmentationDataset`). ``data.source_root`` or
``data.target_root`` naming a dataset file selects it (:func:`sci2i.data.build`).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Optional

import numpy as np
import yaml

from sci2i.data.datasets import (
    SegmentationDataset,
    Transform,
    _shorten,
    pseudo_label_path,
    read_train_id_label,
)
from sci2i.data.io import read_label_ids
from sci2i.errors import DataError
from sci2i.labels import ALL_CLASSES, IGNORE_INDEX

log = logging.getLogger("sci2i")

SPEC_SUFFIXES = (".yaml", ".yml")
_KEYS = {"name", "root", "classes", "ignore_id", "ignore_ids", "image_suffix", "label_suffix", "splits"}
_SPLIT_KEYS = {"images", "labels", "image_suffix", "label_suffix"}


@dataclass(frozen=True)
class ClassSpec:
    name: str
    color: tuple[int, int, int]
    ids: tuple[int, ...]


@dataclass(frozen=True)
class SplitSpec:
    images: Path
    labels: Optional[Path]
    image_suffix: str
    label_suffix: str


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed dataset file; :meth:`load` checks it and names the key at fault."""

    path: Path
    name: str
    root: Path
    classes: tuple[ClassSpec, ...]
    ignore_id: int
    splits: dict[str, SplitSpec] = field(default_factory=dict)
    ignore_ids: tuple[int, ...] = ()

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def lut(self) -> np.ndarray:
        """256-entry lookup table: label-file id -> train id (unlisted ids -> ``ignore_id``)."""
        lut = np.full(256, self.ignore_id, dtype=np.uint8)
        for train_id, c in enumerate(self.classes):
            lut[list(c.ids)] = train_id
        return lut

    @classmethod
    def load(cls, path: str | Path) -> "DatasetSpec":
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except FileNotFoundError as e:
            raise DataError(f"dataset file not found: {path}") from e
        except yaml.YAMLError as e:
            raise DataError(f"dataset file {path} is not valid YAML: {e}") from e

        def bad(msg: str) -> DataError:
            return DataError(f"dataset file {path}: {msg}")

        if not isinstance(raw, dict):
            raise bad("expected a mapping with the keys " + ", ".join(sorted(_KEYS)))
        unknown = set(raw) - _KEYS
        if unknown:
            raise bad(f"unknown keys {sorted(unknown)}; the keys are {sorted(_KEYS)}")
        if not raw.get("classes"):
            raise bad("'classes' is missing: list the classes as {name, color: [r, g, b], ids: [...]}")
        classes, owner = [], {}
        for k, c in enumerate(raw["classes"]):
            if not isinstance(c, dict) or set(c) - {"name", "color", "ids"} or "name" not in c or "ids" not in c:
                raise bad(f"classes[{k}] must be {{name: ..., color: [r, g, b], ids: [label ids]}}, got {c!r}")
            ids = tuple(int(i) for i in (c["ids"] if isinstance(c["ids"], list) else [c["ids"]]))
            for i in ids:
                if not 0 <= i <= 255:
                    raise bad(f"classes[{k}] ({c['name']}): label id {i} is outside 0..255")
                if i in owner:
                    raise bad(f"label id {i} is listed by both {owner[i]!r} and {c['name']!r}")
                owner[i] = c["name"]
            color = tuple(int(v) for v in c.get("color", (0, 0, 0)))
            if len(color) != 3 or not all(0 <= v <= 255 for v in color):
                raise bad(f"classes[{k}] ({c['name']}): color must be [r, g, b] in 0..255, got {c.get('color')!r}")
            classes.append(ClassSpec(str(c["name"]), color, ids))  # type: ignore[arg-type]
        names = [c.name for c in classes]
        if len(set(names)) != len(names):
            raise bad(f"class names repeat: {[n for n, v in Counter(names).items() if v > 1]}")
        ignore_id = int(raw.get("ignore_id", IGNORE_INDEX))
        if not len(classes) <= ignore_id <= 255:
            raise bad(f"ignore_id must be in {len(classes)}..255 (not a class's train id), got {ignore_id}")
        void = tuple(int(i) for i in raw.get("ignore_ids", []) or [])
        if set(void) & set(owner):
            raise bad(f"ignore_ids {sorted(set(void) & set(owner))} are also ids of classes")
        root = Path(raw.get("root", "."))
        root = root if root.is_absolute() else (path.parent / root)
        if not raw.get("splits"):
            raise bad("'splits' is missing: e.g. splits: {train: {images: images, labels: labels}}")
        splits = {}
        for split, s in raw["splits"].items():
            if not isinstance(s, dict) or "images" not in s or set(s) - _SPLIT_KEYS:
                raise bad(f"splits.{split} must be {{images: DIR, labels: DIR (optional), image_suffix, "
                          f"label_suffix}}, got {s!r}")
            splits[str(split)] = SplitSpec(
                root / s["images"], root / s["labels"] if s.get("labels") else None,
                str(s.get("image_suffix", raw.get("image_suffix", ".png"))),
                str(s.get("label_suffix", raw.get("label_suffix", ".png"))),
            )
        return cls(path, str(raw.get("name", path.stem)), root, tuple(classes), ignore_id, splits, void)


def is_dataset_file(root: str | Path) -> bool:
    """Whether a ``data.*_root`` value names a dataset file rather than a dataset folder."""
    p = Path(str(root))
    return p.suffix.lower() in SPEC_SUFFIXES and p.is_file()


class _IdMapper:
    """Label-file ids -> train ids with the spec's table; unlisted ids are counted and reported
    once per process (a run reads the same labels in several phases and workers)."""

    _reported: set[Path] = set()

    def __init__(self, spec: DatasetSpec) -> None:
        self.spec_path = spec.path
        self.name = spec.name
        self.ignore_id = spec.ignore_id
        self.lut = spec.lut()
        self.known = np.zeros(256, dtype=bool)
        for c in spec.classes:
            self.known[list(c.ids)] = True
        self.known[list(spec.ignore_ids)] = True
        self.unknown: Counter = Counter()  # id -> pixels, in this process

    def __call__(self, path: Path) -> np.ndarray:
        ids = read_label_ids(path)
        counts = np.bincount(ids.ravel(), minlength=256)
        unlisted = np.flatnonzero((counts > 0) & ~self.known)
        if unlisted.size:
            self.unknown.update({int(i): int(counts[i]) for i in unlisted})
            if self.spec_path not in self._reported:
                self._reported.add(self.spec_path)
                log.warning("%s (%s): label ids %s are in no class of the dataset file and are ignored "
                            "(%s px in %s; said once per process, counted in CustomDataset.unknown_ids)",
                            self.name, self.spec_path, [int(i) for i in unlisted],
                            ", ".join(f"id {int(i)}: {int(counts[i])}" for i in unlisted), path)
        return self.lut[ids]


class CustomDataset(SegmentationDataset):
    """One split of a dataset file: images below ``splits.<split>.images`` with their labels.

    ``with_labels=False`` yields images only; ``label_dir`` reads trainId pseudo labels laid out
    by :func:`~sci2i.data.datasets.pseudo_label_path` instead of the split's labels.
    """

    def __init__(
        self,
        spec: DatasetSpec | str | Path,
        split: str = "train",
        transform: Optional[Transform] = None,
        with_labels: bool = True,
        label_dir: str | Path | None = None,
        max_images: int = 0,
    ) -> None:
        self.spec = spec if isinstance(spec, DatasetSpec) else DatasetSpec.load(spec)
        if split not in self.spec.splits:
            raise DataError(f"dataset file {self.spec.path} has no split {split!r} (it has "
                            f"{', '.join(self.spec.splits)}); add splits.{split}: {{images: ..., labels: ...}}")
        s = self.spec.splits[split]
        self.split = split
        self.layout = (f"{self.spec.path}: {s.images}/**/*{s.image_suffix}"
                       + (f" with {s.labels}/**/*{s.label_suffix}" if s.labels else ""))
        if not s.images.is_dir():
            raise DataError(f"{self.spec.name} split '{split}': image folder not found: {s.images} "
                            f"(splits.{split}.images in {self.spec.path}, relative to root {self.spec.root})")
        images = sorted(p for p in s.images.rglob(f"*{s.image_suffix}") if p.is_file())
        if max_images > 0:
            images = images[:max_images]
        names = [p.relative_to(s.images).as_posix() for p in images]
        self.mapper: Optional[_IdMapper] = None
        reader = None
        labels: list[Optional[Path]] = [None] * len(images)
        if with_labels and label_dir is not None:
            labels = [pseudo_label_path(label_dir, n) for n in names]
            reader = partial(read_train_id_label, num_classes=self.spec.num_classes)
        elif with_labels:
            if s.labels is None:
                raise DataError(f"{self.spec.name} split '{split}' has no labels (splits.{split}.labels in "
                                f"{self.spec.path}), but labels are needed here")
            labels = [s.labels / (n[: -len(s.image_suffix)] + s.label_suffix) for n in names]
            self.mapper = _IdMapper(self.spec)
            reader = self.mapper
        missing = [str(p) for p in labels if p is not None and not p.is_file()]
        if missing:
            raise DataError(f"{len(missing)} label files are missing for {self.spec.name} '{split}': {_shorten(missing)}")
        super().__init__(s.images, list(zip(images, labels, names)), reader, transform, 0)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.spec.class_names

    @property
    def unknown_ids(self) -> dict[int, int]:
        """Pixels per label id outside the class mapping met so far in this process."""
        return dict(self.mapper.unknown) if self.mapper is not None else {}


def check_class_names(dataset: tuple[str, ...], dataset_source: str, model: tuple[str, ...], model_source: str) -> None:
    """A dataset whose class list is not the model's (or checkpoint's) is an error naming both."""
    if tuple(dataset) != tuple(model):
        raise DataError(
            f"the classes of {dataset_source} ({len(dataset)}: {', '.join(dataset)}) are not those of "
            f"{model_source} ({len(model)}: {', '.join(model)}); list the same classes in the same order"
        )


def _png_suffix(suffix: str) -> str:
    """The suffix of a translated image: translations are written as PNG (``.jpg`` -> ``.png``)."""
    stem, dot, _ = suffix.rpartition(".")
    return f"{stem}.png" if dot else suffix


def translated_spec(spec: DatasetSpec, images: str | Path, split: str = "train") -> DatasetSpec:
    """``spec`` with the images of ``split`` replaced by their translations in ``images``
    (same relative names, PNG) and the labels left where they are: G(x_s) with y_s."""
    if split not in spec.splits:
        raise DataError(f"dataset file {spec.path} has no split {split!r}")
    s = spec.splits[split]
    moved = SplitSpec(Path(images), s.labels, _png_suffix(s.image_suffix), s.label_suffix)
    return DatasetSpec(spec.path, f"{spec.name} (translated)", spec.root, spec.classes, spec.ignore_id,
                       {**spec.splits, split: moved}, spec.ignore_ids)


#: The split of a source dataset file that training reads (the source has one labelled set).
SOURCE_SPLIT = "train"


def dataset_from_file(path: str | Path, split: str, transform: Optional[Transform] = None,
                      with_labels: bool = True, label_dir: str | Path | None = None,
                      max_images: int = 0, translated: str | Path | None = None) -> CustomDataset:
    """The reader :mod:`sci2i.data.build` uses when ``data.source_root`` / ``data.target_root``
    names a dataset file (``translated``: the folder of its translated source images).

    Any classes: the models are built for the run's (:func:`run_class_names`), which also
    checks that the source and target list the same.
    """
    spec = DatasetSpec.load(path)
    if translated is not None:
        spec = translated_spec(spec, translated, split)
    return CustomDataset(spec, split, transform, with_labels=with_labels, label_dir=label_dir,
                         max_images=max_images)


def _classes_of(root: str, key: str) -> tuple[tuple[str, ...], str]:
    """The class list of one ``data.*_root`` and how to name it in a message."""
    from sci2i.labels import CLASS_NAMES

    if is_dataset_file(root):
        return DatasetSpec.load(root).class_names, f"the dataset file {root} (data.{key})"
    return CLASS_NAMES, f"the built-in reader of data.{key} (Cityscapes' 19 classes)"


def run_class_names(data) -> tuple[str, ...]:
    """The classes a run trains and scores, in train-id order, from its data config
    (:class:`~sci2i.config.schema.DataConfig`): a dataset file's class list, else Cityscapes'
    19 (GTA5 / SYNTHIA → Cityscapes). Source and target must list the same classes; a
    difference is an error naming both lists. ``len(...)`` is the run's class count: the
    segmenter's outputs, the discriminator's AC head and the confusion matrix."""
    (src, src_name), (trg, trg_name) = (_classes_of(data.source_root, "source_root"),
                                        _classes_of(data.target_root, "target_root"))
    check_class_names(src, src_name, trg, trg_name)
    return src


def run_class_set(data) -> str:
    """The classes a run is scored on: ``data.class_set`` (``cityscapes19``, or ``synthia16``
    and its 13-class subset) for Cityscapes' classes; :data:`ALL_CLASSES` for a dataset with
    classes of its own, whose every class counts."""
    from sci2i.labels import CLASS_NAMES

    if run_class_names(data) == CLASS_NAMES:
        return data.class_set
    if data.class_set != "cityscapes19":
        raise DataError(f"data.class_set={data.class_set} is a subset of Cityscapes' classes, but the run's "
                        f"dataset files list classes of their own (all of them are scored); leave "
                        f"data.class_set at its default")
    return ALL_CLASSES


def source_images(path: str | Path) -> Path:
    """The image folder of a source dataset file's training split (what phase (b) translates)."""
    spec = DatasetSpec.load(path)
    if SOURCE_SPLIT not in spec.splits:
        raise DataError(f"dataset file {spec.path} has no split '{SOURCE_SPLIT}', the source's training set")
    return spec.splits[SOURCE_SPLIT].images
