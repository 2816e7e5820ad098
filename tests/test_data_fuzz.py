"""Fuzz: truncated, bit-flipped and random bytes as images and labels to every reader.

The documented contract: a reader either returns well-formed data or raises DataError (which
names the file); no other exception type escapes.
"""

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures import write_cityscapes, write_gta5, write_image_folder, write_synthia
from sci2i.data import CityscapesDataset, GTA5Dataset, ImageFolderDataset, SynthiaDataset
from sci2i.data.io import read_label_ids, read_rgb, read_synthia_ids, read_train_ids
from sci2i.data.transforms import TrainTransform
from sci2i.errors import DataError

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def roots():
    base = Path(tempfile.mkdtemp(prefix="sci2i_fuzz_"))
    written = {
        "gta5": write_gta5(base / "gta5", n=1, size=(16, 8)),
        "synthia": write_synthia(base / "synthia", n=1, size=(16, 8)),
        "cityscapes": write_cityscapes(base / "cs", splits=("val",), n_per_split=1, size=(16, 8))["val"],
        "folder": write_image_folder(base / "folder", ["a.png"], size=(16, 8)),
    }
    originals = {k: ([p.read_bytes() for p in w.image_paths], [p.read_bytes() for p in w.label_paths])
                 for k, w in written.items()}
    yield base, written, originals
    shutil.rmtree(base, ignore_errors=True)


def damaged(original: bytes):
    """Strategy: a truncated copy, a copy with flipped bytes, or random bytes."""
    n = len(original)
    truncated = st.integers(0, n - 1).map(lambda k: original[:k])
    flipped = st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 255)), min_size=1, max_size=8).map(
        lambda flips: _flip(original, flips)
    )
    return st.one_of(truncated, flipped, st.binary(max_size=2048))


def _flip(data: bytes, flips) -> bytes:
    b = bytearray(data)
    for i, x in flips:
        b[i] ^= x
    return bytes(b)


def _expect_data_or_dataerror(fn):
    try:
        out = fn()
    except DataError:
        return None
    return out


READERS = {"rgb": read_rgb, "label_ids": read_label_ids, "train_ids": read_train_ids, "synthia": read_synthia_ids}


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("source", ["gta5_image", "gta5_label", "synthia_label"])
def test_io_readers_only_raise_dataerror(roots, tmp_path, reader, source):
    _, _, originals = roots
    kind, which = source.split("_")
    original = originals[kind][0 if which == "image" else 1][0]
    path = tmp_path / "x.png"

    @SETTINGS
    @given(data=damaged(original))
    def run(data):
        path.write_bytes(data)
        out = _expect_data_or_dataerror(lambda: READERS[reader](path))
        if out is not None:
            assert isinstance(out, np.ndarray) and out.size > 0

    run()


DATASETS = {
    "gta5": lambda root: GTA5Dataset(root, transform=TrainTransform(16, 8, flip=True)),
    "synthia": lambda root: SynthiaDataset(root, transform=TrainTransform(16, 8, flip=True)),
    "cityscapes": lambda root: CityscapesDataset(root, "val"),
    "folder": lambda root: ImageFolderDataset(root),
}


@pytest.mark.parametrize(
    "kind,which",
    [(k, "image") for k in sorted(DATASETS)] + [(k, "label") for k in ("cityscapes", "gta5", "synthia")],
)
def test_datasets_only_raise_dataerror(roots, kind, which):
    _, written, originals = roots
    w = written[kind]
    paths = w.image_paths if which == "image" else w.label_paths
    path, original = paths[0], originals[kind][0 if which == "image" else 1][0]

    @SETTINGS
    @given(data=damaged(original))
    def run(data):
        path.write_bytes(data)
        try:
            item = _expect_data_or_dataerror(lambda: DATASETS[kind](w.root)[0])
        finally:
            path.write_bytes(original)
        if item is not None:
            assert item["image"].ndim == 3 and item["image"].shape[0] == 3
            if "label" in item:
                assert item["label"].shape == item["image"].shape[1:]
                assert set(item["label"].unique().tolist()) <= set(range(19)) | {255}

    run()
