"""Label mappings id by id (docs/DATA.md): GTA5/Cityscapes labelId -> trainId, SYNTHIA -> trainId,
trainId -> labelId export. Expected values are written out here, not derived from the code."""

import numpy as np
import pytest

from sci2i import labels as L

# Cityscapes labelId -> trainId for all 34 ids (cityscapesscripts' table, written out).
CITYSCAPES_EXPECTED = {
    0: 255, 1: 255, 2: 255, 3: 255, 4: 255, 5: 255, 6: 255, 7: 0, 8: 1, 9: 255, 10: 255,
    11: 2, 12: 3, 13: 4, 14: 255, 15: 255, 16: 255, 17: 5, 18: 255, 19: 6, 20: 7, 21: 8,
    22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 29: 255, 30: 255, 31: 16,
    32: 17, 33: 18,
}
# SYNTHIA-RAND-CITYSCAPES raw id -> trainId (docs/DATA.md).
SYNTHIA_EXPECTED = {
    3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 10, 10: 11, 17: 12, 8: 13,
    19: 15, 12: 17, 11: 18,
}
PAPER_CLASS_ORDER = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)


@pytest.mark.parametrize("label_id,train_id", sorted(CITYSCAPES_EXPECTED.items()))
def test_cityscapes_label_id_to_train_id(label_id, train_id):
    assert L.label_ids_to_train_ids(np.array([[label_id]], dtype=np.uint8))[0, 0] == train_id
    assert L.label_ids_to_train_ids(np.array([label_id], dtype=np.int64))[0] == train_id


def test_cityscapes_mapping_vectorised_and_all_34_ids_covered():
    ids = np.arange(34, dtype=np.uint8).reshape(2, 17)
    out = L.label_ids_to_train_ids(ids)
    assert out.dtype == np.uint8 and out.shape == (2, 17)
    assert out.ravel().tolist() == [CITYSCAPES_EXPECTED[i] for i in range(34)]
    assert sorted(v for v in CITYSCAPES_EXPECTED.values() if v != 255) == list(range(19))


@pytest.mark.parametrize("unknown", [34, 40, 100, 200, 254, 255])
def test_unknown_label_ids_are_ignored(unknown):
    assert L.label_ids_to_train_ids(np.array([unknown], dtype=np.uint8))[0] == 255


@pytest.mark.parametrize("unknown", [-1, 256, 1000, 70000])
def test_out_of_range_label_ids_in_wide_dtypes_are_ignored(unknown):
    assert L.label_ids_to_train_ids(np.array([unknown], dtype=np.int64))[0] == 255


@pytest.mark.parametrize("raw,train_id", sorted(SYNTHIA_EXPECTED.items()))
def test_synthia_id_to_train_id(raw, train_id):
    assert L.synthia_ids_to_train_ids(np.array([raw], dtype=np.uint16))[0] == train_id
    assert L.synthia_ids_to_train_ids(np.array([raw], dtype=np.int64))[0] == train_id


@pytest.mark.parametrize("unknown", [0, 13, 14, 16, 18, 20, 22, 23, 255, 1000, 65535, -1, 70000])
def test_synthia_unknown_ids_are_ignored(unknown):
    assert L.synthia_ids_to_train_ids(np.array([unknown], dtype=np.int64))[0] == 255


def test_synthia_never_produces_terrain_truck_train():
    out = L.synthia_ids_to_train_ids(np.arange(65536, dtype=np.int64))
    present = set(np.unique(out).tolist()) - {255}
    assert present == set(L.SYNTHIA16_TRAIN_IDS)
    assert not present & {9, 14, 16}


@pytest.mark.parametrize("train_id", range(19))
def test_train_id_to_label_id_export(train_id):
    expected = {v: k for k, v in CITYSCAPES_EXPECTED.items() if v != 255}[train_id]
    assert L.train_ids_to_label_ids(np.array([train_id], dtype=np.uint8))[0] == expected
    # and back again
    assert L.label_ids_to_train_ids(L.train_ids_to_label_ids(np.array([train_id])))[0] == train_id


@pytest.mark.parametrize("value", [255, 19, 100, 254, -1, 300])
def test_non_class_train_ids_export_as_unlabeled(value):
    assert L.train_ids_to_label_ids(np.array([value], dtype=np.int64))[0] == 0


def test_class_names_follow_the_paper_order():
    assert L.CLASS_NAMES == PAPER_CLASS_ORDER


def test_miou16_and_miou13_class_sets():
    assert L.SYNTHIA16_TRAIN_IDS == (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)
    assert L.SYNTHIA13_TRAIN_IDS == (0, 1, 2, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)
    assert L.eval_class_ids(16) == L.SYNTHIA16_TRAIN_IDS and len(L.eval_class_ids(19)) == 19


def test_colorize_uses_the_cityscapes_palette():
    rgb = L.colorize(np.array([[0, 10, 13, 255]], dtype=np.uint8))
    assert rgb.tolist() == [[[128, 64, 128], [70, 130, 180], [0, 0, 142], [0, 0, 0]]]
