"""Label definitions in one place.

The 19 Cityscapes train classes (names, colours, labelId <-> trainId) come from
``cityscapesscripts.helpers.labels``; GTA5 labels use Cityscapes labelIds (the palette index of
its PNGs), so they share the same lookup. SYNTHIA-RAND-CITYSCAPES raw ids are mapped by the
table below (docs/METHOD.md, "Data"). ``IGNORE_INDEX`` (255) marks pixels that are never
scored or trained on.
"""

from __future__ import annotations

import numpy as np
from cityscapesscripts.helpers import labels as _cs

IGNORE_INDEX = 255
#: Cityscapes' train classes (GTA5 / SYNTHIA → Cityscapes); a run's own count comes from its
#: data (sci2i.data.custom.run_class_names).
NUM_CLASSES = 19
#: Evaluation class sets of Cityscapes: all 19 classes (GTA5 source) or SYNTHIA's 16 (and 13).
CLASS_SETS = ("cityscapes19", "synthia16")
#: The class set of a dataset with classes of its own (a dataset file): all of them, as "mIoU".
#: The 19/16/13-class sets are subsets of Cityscapes only (sci2i.data.custom.run_class_set).
ALL_CLASSES = "all"

_TRAIN_LABELS = sorted(
    (l for l in _cs.labels if 0 <= l.trainId < IGNORE_INDEX), key=lambda l: l.trainId
)
#: Class names in trainId order (the paper's table order).
CLASS_NAMES: tuple[str, ...] = tuple(l.name for l in _TRAIN_LABELS)
#: RGB colour of each trainId (Cityscapes palette).
CLASS_COLORS: tuple[tuple[int, int, int], ...] = tuple(tuple(l.color) for l in _TRAIN_LABELS)
#: Cityscapes labelId of each trainId.
TRAIN_ID_TO_LABEL_ID: tuple[int, ...] = tuple(l.id for l in _TRAIN_LABELS)

assert len(CLASS_NAMES) == NUM_CLASSES, "cityscapesscripts changed its train classes"


def class_index_with_extra_bin(train_ids, num_classes: int):
    """A torch tensor of trainIds with every non-class id (255, negatives) set to ``num_classes``.

    The extra index is a bin that per-class counts (``index_add_``) or lookups (``gather``) drop;
    unlike boolean indexing it keeps the shape, so a GPU needs no host synchronisation.
    """
    ids = train_ids.long()
    return ids.where((ids >= 0) & (ids < num_classes), num_classes)

#: The 16 classes SYNTHIA shares with Cityscapes (mIoU16): no terrain, truck, train.
SYNTHIA16_TRAIN_IDS: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)
#: mIoU13: mIoU16 without wall, fence and pole.
SYNTHIA13_TRAIN_IDS: tuple[int, ...] = tuple(i for i in SYNTHIA16_TRAIN_IDS if i not in (3, 4, 5))

#: SYNTHIA-RAND-CITYSCAPES raw class id -> Cityscapes trainId (docs/DATA.md); all else -> 255.
SYNTHIA_ID_TO_TRAIN_ID: dict[int, int] = {
    3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 10,
    10: 11, 17: 12, 8: 13, 19: 15, 12: 17, 11: 18,
}


def _lut(mapping: dict[int, int], size: int) -> np.ndarray:
    lut = np.full(size, IGNORE_INDEX, dtype=np.uint8)
    for src, dst in mapping.items():
        lut[src] = dst
    return lut


#: Lookup table: Cityscapes / GTA5 labelId (0..255) -> trainId; unknown ids -> 255.
LABEL_ID_TO_TRAIN_ID_LUT = _lut({l.id: l.trainId for l in _TRAIN_LABELS}, 256)
#: Lookup table: SYNTHIA raw id (0..65535, labels are 16-bit) -> trainId; unknown -> 255.
SYNTHIA_ID_TO_TRAIN_ID_LUT = _lut(SYNTHIA_ID_TO_TRAIN_ID, 65536)
#: Lookup table: trainId (0..255) -> Cityscapes labelId; 255 and every other non-class value
#: -> 0 ("unlabeled"), so an export never holds an id the official evaluator does not know.
TRAIN_ID_TO_LABEL_ID_LUT = np.zeros(256, dtype=np.uint8)
TRAIN_ID_TO_LABEL_ID_LUT[:NUM_CLASSES] = TRAIN_ID_TO_LABEL_ID


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map an array of Cityscapes/GTA5 labelIds to trainIds (unknown ids become 255)."""
    if label_ids.dtype != np.uint8:
        label_ids = np.where((label_ids >= 0) & (label_ids < 256), label_ids, 0).astype(np.uint8)
        # id 0 is "unlabeled" -> 255, so out-of-range ids also end up ignored.
    return LABEL_ID_TO_TRAIN_ID_LUT[label_ids]


def synthia_ids_to_train_ids(raw_ids: np.ndarray) -> np.ndarray:
    """Map SYNTHIA raw class ids (any integer dtype) to trainIds (unknown ids become 255)."""
    raw = np.asarray(raw_ids)
    valid = (raw >= 0) & (raw < 65536)
    return np.where(valid, SYNTHIA_ID_TO_TRAIN_ID_LUT[np.where(valid, raw, 0)], IGNORE_INDEX).astype(
        np.uint8
    )


def train_ids_to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    """Map trainIds to Cityscapes labelIds for export (255 and any non-class id -> 0, 'unlabeled')."""
    ids = np.asarray(train_ids)
    if ids.dtype != np.uint8:
        ids = np.where((ids >= 0) & (ids < 256), ids, IGNORE_INDEX).astype(np.uint8)
    return TRAIN_ID_TO_LABEL_ID_LUT[ids]


def palette() -> list[int]:
    """A 768-entry PIL palette indexed by trainId (255 -> black)."""
    pal = [0] * 768
    for i, c in enumerate(CLASS_COLORS):
        pal[3 * i : 3 * i + 3] = c
    return pal


def colorize(train_ids: np.ndarray) -> np.ndarray:
    """trainId map (H, W) -> RGB uint8 image (H, W, 3) in the Cityscapes palette."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:NUM_CLASSES] = np.asarray(CLASS_COLORS, dtype=np.uint8)
    return lut[np.asarray(train_ids, dtype=np.uint8)]


def eval_class_ids(num_classes: int) -> tuple[int, ...]:
    """trainIds scored for a model with ``num_classes`` outputs (19 or 16 for SYNTHIA)."""
    if num_classes == 19:
        return tuple(range(19))
    if num_classes == 16:
        return SYNTHIA16_TRAIN_IDS
    raise ValueError(f"num_classes must be 19 (GTA5) or 16 (SYNTHIA), got {num_classes}")


def class_set_ids(class_set: str, num_classes: int = NUM_CLASSES) -> tuple[int, ...]:
    """Train ids of the columns of a class set: Cityscapes' 19 (GTA5) or the 16 SYNTHIA
    classes; ``"all"``: every one of a dataset's ``num_classes``."""
    if class_set == "cityscapes19":
        return tuple(range(NUM_CLASSES))
    if class_set == "synthia16":
        return SYNTHIA16_TRAIN_IDS
    if class_set == ALL_CLASSES:
        return tuple(range(num_classes))
    raise ValueError(f"class_set must be one of {', '.join(CLASS_SETS + (ALL_CLASSES,))}; got {class_set!r}")
