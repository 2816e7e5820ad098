"""Optional one-time cache of training images resized to the training scale (``data.cache_dir``).

At paper scale, most of a training sample's CPU time is spent decoding a 2048×1024 (GTA5:
1914×1052) PNG and area-resizing it to ``data.long_side`` (1024); the random crop and flip
are nearly free. With ``data.cache_dir`` set, the first time a training sample is read its
image (and label) *after* that resize is stored as a raw ``.npy`` array; every later epoch,
run, rank and phase loads the array instead (a memory copy instead of a PNG decode).

Exactness: the stored arrays are exactly what :class:`~sci2i.data.transforms.TrainTransform`
would have produced by its own resize (same function, same interpolation); given an image
whose longer side already equals ``long_side`` the transform's resize is the identity, so the
crop, flip and everything after are unchanged. Cached and uncached training therefore see
bit-identical samples (tested).

Keys: an entry is named by a hash of (absolute path, modification time in ns, file size,
``long_side``, what is stored: the image, or the label map together with the label reader
that produced it), so an edited or replaced file, another training scale or another label
reading are new entries; stale entries are never read (delete the folder to reclaim space).
Entries are written to a temporary name and renamed, so DataLoader workers and ranks that
fill the cache at the same time never see half-written files. An unreadable entry is treated
as a miss and rewritten.

Disk: 3 bytes per pixel for an image, 1 for a label: at ``long_side`` 1024 about 1.6 MiB per
GTA5 image + 0.5 MiB per label, 1.5 MiB per Cityscapes image (the 89,250 sequence frames of
the paper's I2I target set alone: about 130 GiB). Only training datasets are cached;
evaluation reads the original files at ``data.eval_long_side``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np
from torch.utils.data import DataLoader, Dataset

from sci2i.data.datasets import ConcatSegDataset, SegmentationDataset, transformed_item
from sci2i.data.transforms import resize_image, resize_label, scaled_size
from sci2i.data.wrapper import DatasetWrapper
from sci2i.data.workers import worker_count, worker_init
from sci2i.errors import DataError

_FORMAT = "v1"  # bump when the stored representation changes


class ResizedCache:
    """``.npy`` entries below ``cache_dir`` for one ``long_side`` (see module docstring)."""

    def __init__(self, cache_dir: str | Path, long_side: int) -> None:
        if long_side <= 0:
            raise ValueError(f"long_side must be > 0, got {long_side}")
        self.dir = Path(cache_dir)
        self.long_side = long_side

    def __repr__(self) -> str:
        return f"ResizedCache({str(self.dir)!r}, long_side={self.long_side})"

    def entry(self, path: str | Path, kind: str) -> Path:
        """Where the resized content of ``path`` (``kind``: "image" or "label:<reader>") lives."""
        path = Path(path).resolve()
        st = path.stat()
        key = f"{_FORMAT}|{path}|{st.st_mtime_ns}|{st.st_size}|{self.long_side}|{kind}"
        digest = hashlib.sha1(key.encode()).hexdigest()
        return self.dir / digest[:2] / f"{digest}.npy"

    @staticmethod
    def load(entry: Path) -> Optional[np.ndarray]:
        try:
            return np.load(entry, allow_pickle=False)
        except (OSError, ValueError):  # missing, truncated by a crash, or not an array
            return None

    @staticmethod
    def store(entry: Path, array: np.ndarray) -> None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".tmp-", suffix=".npy")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, np.ascontiguousarray(array), allow_pickle=False)
            os.replace(tmp, entry)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _reader_name(reader: Any) -> str:
    return getattr(reader, "__qualname__", None) or type(reader).__name__


class CachedResizeDataset(DatasetWrapper):
    """A :class:`SegmentationDataset` whose images/labels come resized from a :class:`ResizedCache`.

    Yields the same items as the wrapped dataset (same ``get(index, rng)`` protocol, same
    keys); attributes not defined here (``names``, ``root``, ``samples``, ...) are the wrapped
    dataset's.
    """

    def __init__(self, dataset: SegmentationDataset, cache: ResizedCache) -> None:
        super().__init__(dataset)
        self.cache = cache

    def __repr__(self) -> str:
        return f"CachedResizeDataset({self.dataset!r}, {self.cache!r})"

    def read(self, index: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Image and trainIds at the training scale (from the cache, filling it on a miss)."""
        ds = self.dataset
        image_path, label_path, _ = ds.samples[index]
        want_label = ds.label_reader is not None and label_path is not None
        try:
            image_entry = self.cache.entry(image_path, "image")
            label_entry = (self.cache.entry(label_path, f"label:{_reader_name(ds.label_reader)}")
                           if want_label else None)
        except OSError as e:
            raise DataError(f"cannot read {image_path if not want_label else (image_path, label_path)}: {e}") from e
        image = self.cache.load(image_entry)
        label = self.cache.load(label_entry) if label_entry is not None else None
        if image is not None and (label is not None or not want_label) and (
                label is None or label.shape == image.shape[:2]):
            return image, label
        image, label = ds.read(index)  # decodes and checks the pair (DataError names the file)
        h, w = scaled_size(image.shape[0], image.shape[1], self.cache.long_side)
        image = resize_image(image, h, w)
        self.cache.store(image_entry, image)
        if label is not None and label_entry is not None:
            label = resize_label(label, h, w)
            self.cache.store(label_entry, label)
        return image, label

    def get(self, index: int, rng: Optional[np.random.Generator] = None) -> dict:
        image, label = self.read(index)
        return transformed_item(image, label, self.dataset.transform, self.dataset.samples[index][2], rng)

    def __getitem__(self, index: int) -> dict:
        return self.get(index)


def with_resize_cache(dataset: Dataset, cache_dir: str | Path, long_side: int) -> Dataset:
    """``dataset`` reading through a resize cache (each part of a :class:`ConcatSegDataset`)."""
    cache = ResizedCache(cache_dir, long_side)
    if isinstance(dataset, ConcatSegDataset):
        return ConcatSegDataset([with_resize_cache(d, cache_dir, long_side) for d in dataset.datasets])
    if isinstance(dataset, CachedResizeDataset):
        return dataset
    if not isinstance(dataset, SegmentationDataset):
        raise TypeError(f"data.cache_dir needs a SegmentationDataset, got {type(dataset).__name__}")
    return CachedResizeDataset(dataset, cache)


def fill_cache(dataset: Dataset, num_workers: int = 0) -> int:
    """Read every sample once so that the cache is complete; returns the number of samples.

    Optional: the cache also fills itself during the first epoch. Bad files raise DataError.
    """
    parts = dataset.datasets if isinstance(dataset, ConcatSegDataset) else [dataset]
    n = 0
    for part in parts:
        if not isinstance(part, CachedResizeDataset):
            continue
        workers = worker_count(num_workers)
        loader = DataLoader(_Filler(part), batch_size=None, num_workers=workers, collate_fn=_identity,
                            worker_init_fn=worker_init if workers > 0 else None)
        for _ in loader:
            n += 1
    return n


def _identity(x):
    return x


class _Filler(Dataset):
    def __init__(self, dataset: CachedResizeDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> int:
        self.dataset.read(index)
        return index
