"""Export predictions for the official Cityscapes evaluator and for looking at (docs/DATA.md).

For an image ``name`` such as ``frankfurt/frankfurt_000000_000294_leftImg8bit.png``,
:func:`save_prediction` writes::

    <out_dir>/labelIds/frankfurt/frankfurt_000000_000294_labelIds.png   Cityscapes labelIds
    <out_dir>/color/frankfurt/frankfurt_000000_000294_color.png         Cityscapes palette

The two kinds go to separate trees because the official evaluator
(``cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling``) matches every
``<city>_<seq>_<frame>*.png`` below its results folder and refuses two matches: point it (the
``CITYSCAPES_RESULTS`` variable) at ``<out_dir>/labelIds``. The labelIds tree is also the
format of the Cityscapes benchmark server. trainId 255 (ignore) is exported as labelId 0
("unlabeled") and black.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from sci2i.data.datasets import image_stem
from sci2i.labels import colorize, train_ids_to_label_ids

LABEL_IDS_DIR = "labelIds"
COLOR_DIR = "color"


def prediction_paths(out_dir: str | Path, name: str) -> tuple[Path, Path]:
    """(labelIds PNG, colour PNG) paths that :func:`save_prediction` writes for ``name``."""
    rel = Path(name).parent
    stem = image_stem(name)
    out = Path(out_dir)
    return (
        out / LABEL_IDS_DIR / rel / f"{stem}_labelIds.png",
        out / COLOR_DIR / rel / f"{stem}_color.png",
    )


def save_prediction(train_ids: np.ndarray, out_dir: str | Path, name: str) -> tuple[Path, Path]:
    """Write a trainId map (H×W) as ``*_labelIds.png`` and ``*_color.png``; returns the paths."""
    train_ids = np.asarray(train_ids)
    if train_ids.ndim != 2:
        raise ValueError(f"expected an H×W trainId map, got shape {train_ids.shape}")
    ids_path, color_path = prediction_paths(out_dir, name)
    ids_path.parent.mkdir(parents=True, exist_ok=True)
    color_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(train_ids_to_label_ids(train_ids)).save(ids_path)
    Image.fromarray(colorize(train_ids)).save(color_path)
    return ids_path, color_path
