"""Datasets and loaders from a :class:`sci2i.config.schema.DataConfig` (docs/DATA.md; docs/METHOD.md "Data").

* :func:`build_source_dataset`: labelled synthetic source ``x_s, y_s`` (GTA5 or SYNTHIA).
* :func:`build_target_dataset`: Cityscapes ``x_t`` (train, unlabelled for UDA; val with gtFine
  for evaluation), plus ``data.target_extra_dirs`` (e.g. ``leftImg8bit_sequence/train``, the
  paper's unlabelled I2I target set) when unlabelled train images are asked for.
* :func:`build_translated_dataset`: ``G(x_s)`` with ``y_s``, written by ``sci2i translate``.
* :class:`SeededSampler`: the sample order and augmentation seeds of every training stream
  (:mod:`sci2i.data.stream`), sharded per rank.

Training datasets (``train=True``) use the training transform, read through the resize cache
of :mod:`sci2i.data.cache` when ``data.cache_dir`` is set, and come wrapped in
:class:`SkipBadSamples` with ``data.max_bad_files``; evaluation datasets use the evaluation
transform and are not wrapped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from sci2i.config.schema import DataConfig
from sci2i.data.datasets import (
    CITYSCAPES_LAYOUT,
    GTA5_LAYOUT,
    SYNTHIA_LAYOUT,
    CityscapesDataset,
    ConcatSegDataset,
    GTA5Dataset,
    ImageFolderDataset,
    SegmentationDataset,
    SynthiaDataset,
    image_stem,
)
from sci2i.data.cache import with_resize_cache
from sci2i.data.custom import SOURCE_SPLIT, dataset_from_file, is_dataset_file
from sci2i.data.robust import SkipBadSamples
from sci2i.data.transforms import EvalTransform, TrainTransform
from sci2i.errors import DataError
from sci2i.utils.log_once import log_once

log = logging.getLogger("sci2i")


def train_transform(data_cfg: DataConfig) -> TrainTransform:
    """Paper training transform: longer side ``long_side``, ``crop_size``² crop, flip."""
    return TrainTransform(data_cfg.long_side, data_cfg.crop_size, data_cfg.flip)


def eval_transform(data_cfg: DataConfig) -> EvalTransform:
    """Evaluation transform: input at ``eval_long_side``, label at full resolution."""
    return EvalTransform(data_cfg.eval_long_side)


def _transform(data_cfg: DataConfig, train: bool):
    return train_transform(data_cfg) if train else eval_transform(data_cfg)


def _wrap(dataset: Dataset, data_cfg: DataConfig, train: bool) -> Dataset:
    if not train:
        return dataset
    if data_cfg.cache_dir:  # one-time cache of images resized to long_side (sci2i.data.cache)
        dataset = with_resize_cache(dataset, data_cfg.cache_dir, data_cfg.long_side)
    return SkipBadSamples(dataset, data_cfg.max_bad_files)


def _root(value: str, key: str, env: str, layout: str) -> Path:
    if not value:
        raise DataError(f"'{key}' is not set: pass {key}=/path/to/data or set {env}. Expected layout: {layout}")
    return Path(value)


def _source_class(data_cfg: DataConfig):
    if data_cfg.source_format == "gta5":
        return GTA5Dataset, GTA5_LAYOUT
    if data_cfg.source_format == "synthia":
        return SynthiaDataset, SYNTHIA_LAYOUT
    raise DataError(f"data.source_format must be 'gta5' or 'synthia', got {data_cfg.source_format!r}")


def build_source_dataset(data_cfg: DataConfig, train: bool = True) -> Dataset:
    """The labelled source dataset at ``data.source_root`` in ``data.source_format`` layout."""
    if is_dataset_file(data_cfg.source_root):  # your own dataset, described by a YAML file
        return _wrap(dataset_from_file(data_cfg.source_root, SOURCE_SPLIT, _transform(data_cfg, train),
                                       max_images=data_cfg.max_images), data_cfg, train)
    cls, layout = _source_class(data_cfg)
    root = _root(data_cfg.source_root, "data.source_root", "SCI2I_SOURCE_ROOT", layout)
    ds = cls(root, transform=_transform(data_cfg, train), max_images=data_cfg.max_images)
    return _wrap(ds, data_cfg, train)


def build_target_dataset(
    data_cfg: DataConfig,
    split: str,
    with_labels: bool,
    train: bool,
    label_dir: str | Path | None = None,
) -> Dataset:
    """Cityscapes ``split`` at ``data.target_root``.

    ``label_dir`` reads trainId pseudo labels instead of gtFine. The train split
    (``data.target_train_split``) read without gtFine (unlabelled, or with pseudo labels) is the
    unlabelled target set of the I2I phase: it also holds every folder of
    ``data.target_extra_dirs`` (the paper's ``leftImg8bit_sequence/train``), each frame once
    (:func:`unique_frames`); the pseudo-label writer and the I2I trainer both read it here.
    """
    root = _root(data_cfg.target_root, "data.target_root", "SCI2I_TARGET_ROOT", CITYSCAPES_LAYOUT)
    transform = _transform(data_cfg, train)
    pseudo = with_labels and label_dir is not None
    ds: Dataset = (dataset_from_file if is_dataset_file(root) else CityscapesDataset)(
        root, split, transform=transform, with_labels=with_labels, label_dir=label_dir,
        max_images=data_cfg.max_images,
    )
    if (pseudo or not with_labels) and split == data_cfg.target_train_split and data_cfg.target_extra_dirs:
        extra = [
            ImageFolderDataset(d, transform=transform, max_images=data_cfg.max_images,
                               label_dir=label_dir if pseudo else None)
            for d in data_cfg.target_extra_dirs
        ]
        ds = unique_frames([ds, *extra])
    return _wrap(ds, data_cfg, train)


def unique_frames(parts: list[SegmentationDataset]) -> Dataset:
    """The parts concatenated with every frame once: a frame also in a later part (the
    Cityscapes train images are frame 19 of their ``leftImg8bit_sequence`` snippets) is kept
    there only. Frames are matched by their Cityscapes frame id, the file stem without
    ``_leftImg8bit`` (``aachen_000000_000019``)."""
    later: set[str] = set()
    kept: list[SegmentationDataset] = []
    for part in reversed(parts):
        keep = [s for s in part.samples if image_stem(s[2]) not in later]
        later.update(image_stem(s[2]) for s in part.samples)
        if len(keep) < len(part.samples):
            log_once(log, logging.INFO, "%s: %d of %d images are frames of a later target folder and are "
                     "read there only", part.root, len(part.samples) - len(keep), len(part.samples))
        if keep:
            part.samples = keep
            kept.append(part)
    kept.reverse()
    return kept[0] if len(kept) == 1 else ConcatSegDataset(kept)


def source_reader(root: str | Path, fmt: str, max_images: int = 0) -> SegmentationDataset:
    """The reader of a source-layout folder (``fmt``: gta5, synthia or folder) without a transform:
    what `sci2i translate` and the pipeline's translation phase translate."""
    if fmt == "gta5":
        return GTA5Dataset(root, max_images=max_images)
    if fmt == "synthia":
        return SynthiaDataset(root, max_images=max_images)
    if fmt == "folder":
        return ImageFolderDataset(root, max_images=max_images)
    raise DataError(f"format must be one of gta5, synthia, folder; got {fmt!r}")


def build_translated_dataset(root: str | Path, data_cfg: DataConfig, train: bool = True) -> Dataset:
    """Translated source images ``G(x_s)`` with the source labels ``y_s`` (phase c, Eq. 11).

    ``root`` has the layout of ``data.source_format`` (``images/`` or ``RGB/``). Labels are read
    from ``root`` when it has its own ``labels/`` (``GT/LABELS/``) folder, else from
    ``data.source_root``, matched by file name.
    """
    if is_dataset_file(data_cfg.source_root):  # images translated into a folder, labels as before
        return _wrap(dataset_from_file(data_cfg.source_root, SOURCE_SPLIT, _transform(data_cfg, train),
                                       max_images=data_cfg.max_images, translated=root), data_cfg, train)
    cls, layout = _source_class(data_cfg)
    root = Path(root)
    own_labels = root / ("labels" if data_cfg.source_format == "gta5" else "GT/LABELS")
    label_root = None
    if not own_labels.is_dir():
        label_root = _root(data_cfg.source_root, "data.source_root", "SCI2I_SOURCE_ROOT", layout)
    ds = cls(root, transform=_transform(data_cfg, train), max_images=data_cfg.max_images, label_root=label_root)
    return _wrap(ds, data_cfg, train)


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class SeededSampler(Sampler):
    """Shuffled indices paired with a per-sample seed for the random transform.

    Yields ``(index, seed)``; the order is reshuffled by :meth:`set_epoch` and, when
    torch.distributed is initialised, sharded per rank by :class:`DistributedSampler`. Seeds
    depend only on ``(seed, epoch, rank, position)``, so augmentation does not depend on the
    number of DataLoader workers.
    """

    def __init__(self, dataset: Dataset, seed: int, drop_last: bool = True) -> None:
        self.seed = seed
        self.epoch = 0
        self.rank, self.world = _world()
        self.n = len(dataset)
        self.distributed = self.world > 1
        self.dist_sampler = (
            DistributedSampler(dataset, num_replicas=self.world, rank=self.rank, shuffle=True,
                               seed=seed, drop_last=drop_last)
            if self.distributed else None
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.dist_sampler is not None:
            self.dist_sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dist_sampler) if self.dist_sampler is not None else self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.dist_sampler is not None:
            indices = list(self.dist_sampler)
        else:
            g = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]))
            indices = torch.randperm(self.n, generator=g).tolist()
        rng = np.random.default_rng([self.seed, self.epoch, self.rank])
        seeds = rng.integers(0, 2**63 - 1, size=len(indices))
        return iter(zip(indices, (int(s) for s in seeds)))


