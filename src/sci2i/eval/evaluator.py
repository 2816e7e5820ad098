"""Scoring a segmentation model, or a folder of predictions, on a labelled target split.

:func:`evaluate_segmenter` is the evaluation loop every phase and ``sci2i evaluate
--checkpoint`` use: the model sees the image rescaled to ``data.eval_long_side``
(:class:`sci2i.data.transforms.EvalTransform`), its logits are upsampled bilinearly to the
label's full resolution (Cityscapes: 2048×1024) and the argmax is scored there
(docs/METHOD.md, "Data").

:func:`score_prediction_folder` scores exported ``*_labelIds.png`` (or trainId PNGs) against
gtFine without a model, with the same confusion matrix.

Both return a results dict: the :meth:`ConfusionMatrix.summary` keys (``per_class``,
``mIoU19``, ``mIoU16``, ``mIoU13``, ``pixel_accuracy``, ``num_pixels``) plus ``num_images``,
``class_set`` and ``table`` (the markdown table of :func:`format_iou_table`).
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from sci2i.data.datasets import CityscapesDataset, image_stem
from sci2i.data.workers import worker_count, worker_init
from sci2i.data.io import list_images, read_label_ids
from sci2i.errors import DataError
from sci2i.eval.export import LABEL_IDS_DIR, save_prediction
from sci2i.eval.metrics import ConfusionMatrix, class_set_ids, format_iou_table
from sci2i.labels import ALL_CLASSES, CLASS_NAMES, NUM_CLASSES, SYNTHIA16_TRAIN_IDS, label_ids_to_train_ids

log = logging.getLogger("sci2i")

PredictFn = Callable[[torch.Tensor], torch.Tensor]


def _progress(iterable: Iterable, enabled: bool, total: int, desc: str) -> Iterable:
    if not enabled or not sys.stderr.isatty():  # a bar is for a terminal, not for a log file
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)


def _results(cm: ConfusionMatrix, num_images: int, class_set: str) -> dict:
    summary = cm.summary()
    return {
        **summary,
        "num_images": num_images,
        "class_set": class_set,
        "table": format_iou_table(summary, class_set),
    }


def logits_to_train_ids(logits: torch.Tensor, size: tuple[int, int],
                        num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Upsample N×C×h×w logits bilinearly to ``size`` (H, W) and take the argmax as trainIds.

    C = ``num_classes`` gives train ids directly; with Cityscapes' 19 classes, C = 16 (a
    SYNTHIA model) maps channel k to the k-th of the 16 SYNTHIA trainIds (0-8, 10-13, 15, 17, 18).
    """
    if logits.ndim != 4:
        raise ValueError(f"logits must be N×C×h×w, got shape {tuple(logits.shape)}")
    if tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)
    pred = logits.argmax(dim=1)
    if num_classes == NUM_CLASSES and logits.shape[1] == len(SYNTHIA16_TRAIN_IDS):
        pred = torch.as_tensor(SYNTHIA16_TRAIN_IDS, device=pred.device)[pred]
    elif logits.shape[1] != num_classes:
        also = " (or 16)" if num_classes == NUM_CLASSES else ""
        raise ValueError(f"logits must have {num_classes}{also} channels, one per class, got {logits.shape[1]}")
    return pred


@torch.no_grad()
def evaluate_segmenter(
    predict_fn: PredictFn,
    dataset: Dataset,
    device: torch.device | str,
    export_dir: str | Path | None = None,
    progress: bool = True,
    class_set: str = "cityscapes19",
    num_workers: int = 0,
    class_names: Optional[Sequence[str]] = None,
) -> dict:
    """Score ``predict_fn`` on a labelled dataset (e.g. Cityscapes val with EvalTransform).

    ``predict_fn(images)`` takes a float tensor N×3×h×w, RGB in [0, 1], on ``device`` and returns
    logits N×C×h'×w' (any h', w': they are upsampled to the label size), C = the number of
    ``class_names`` (default: the dataset's ``class_names``, else Cityscapes' 19). Images are fed
    one at a time because labels may differ in size. With ``export_dir`` every prediction is
    written by :func:`sci2i.eval.export.save_prediction`. Returns the results dict of this module.
    """
    names = tuple(class_names or getattr(dataset, "class_names", None) or CLASS_NAMES)
    class_set_ids(class_set, len(names))  # validate early
    if class_set != ALL_CLASSES and names != CLASS_NAMES:
        raise ValueError(f"class_set {class_set!r} is a subset of Cityscapes' classes; a dataset with classes "
                         f"of its own ({', '.join(names)}) is scored with class_set={ALL_CLASSES!r}")
    device = torch.device(device)
    cm = ConfusionMatrix(len(names), device=device, class_names=names)

    workers = worker_count(num_workers)
    loader = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=workers,
                        worker_init_fn=worker_init if workers > 0 else None)
    n = 0
    for item in _progress(loader, progress, len(dataset), "evaluate"):
        if "label" not in item:
            raise DataError(f"evaluation needs labels, but {item['name'][0]} has none")
        images = item["image"].to(device, non_blocking=True)
        labels = item["label"].to(device, non_blocking=True)
        logits = predict_fn(images)
        pred = logits_to_train_ids(logits, tuple(labels.shape[-2:]), len(names))
        cm.update(pred, labels)
        if export_dir is not None:
            save_prediction(pred[0].to("cpu", torch.uint8).numpy(), export_dir, item["name"][0])
        n += 1
    return _results(cm, n, class_set)


def _index_predictions(pred_dir: Path) -> dict[str, list[Path]]:
    """Map every '_'-prefix of a prediction file's stem to the file (colour PNGs excluded)."""
    index: dict[str, list[Path]] = {}
    for p in list_images(pred_dir):
        if p.suffix.lower() != ".png" or p.stem.endswith("_color"):
            continue
        parts = p.stem.split("_")
        for k in range(1, len(parts) + 1):
            index.setdefault("_".join(parts[:k]), []).append(p)
    return index


def score_prediction_folder(
    pred_dir: str | Path,
    target_root: str | Path,
    split: str = "val",
    train_ids: bool = False,
    class_set: str = "cityscapes19",
    max_images: int = 0,
    progress: bool = False,
) -> dict:
    """Score a folder of prediction PNGs against Cityscapes gtFine of ``split``.

    Predictions are found recursively below ``pred_dir`` (or its ``labelIds/`` subfolder, as
    written by :func:`save_prediction`) by the image stem: the prediction of
    ``frankfurt_000000_000294_leftImg8bit.png`` is the one PNG whose name starts with
    ``frankfurt_000000_000294_`` (``*_color.png`` files are skipped), as the official evaluator
    matches them. Values are Cityscapes labelIds, or trainIds with ``train_ids=True``; ids
    outside the 19 classes count as misses (false negatives).
    """
    class_set_ids(class_set)
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise DataError(f"prediction folder not found: {pred_dir}")
    if (pred_dir / LABEL_IDS_DIR).is_dir():
        pred_dir = pred_dir / LABEL_IDS_DIR
    dataset = CityscapesDataset(target_root, split, transform=None, with_labels=True, max_images=max_images)
    index = _index_predictions(pred_dir)
    cm = ConfusionMatrix(NUM_CLASSES)
    missing: list[str] = []
    for i in _progress(range(len(dataset)), progress, len(dataset), "score"):
        image_path, label_path, name = dataset.samples[i]
        stem = image_stem(name)
        found = index.get(stem, [])
        if len(found) != 1:
            if found:
                raise DataError(f"several predictions for {name} below {pred_dir}: {', '.join(map(str, found))}")
            missing.append(stem)
            continue
        target = dataset.label_reader(label_path)
        raw = read_label_ids(found[0])
        pred = raw if train_ids else label_ids_to_train_ids(raw)
        if pred.shape != target.shape:
            raise DataError(
                f"prediction {found[0]} is {pred.shape[1]}×{pred.shape[0]} but its label {label_path} "
                f"is {target.shape[1]}×{target.shape[0]}; predictions are scored at full label resolution"
            )
        cm.update(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(target.astype(np.int64)))
    if missing:
        shown = ", ".join(missing[:5]) + (f", ... ({len(missing) - 5} more)" if len(missing) > 5 else "")
        raise DataError(f"no prediction below {pred_dir} for {len(missing)} of {len(dataset)} images: {shown}")
    return _results(cm, len(dataset), class_set)


def results_to_json(results: dict) -> dict:
    """The results dict with NaN replaced by None (valid JSON) and the table kept as text."""

    def clean(v):
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        return v

    return clean(results)
