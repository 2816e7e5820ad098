"""Streaming confusion matrix and the paper's scores: per-class IoU, mIoU19, mIoU16, mIoU13.

IoU_c = TP_c / (TP_c + FP_c + FN_c), computed from a confusion matrix accumulated over the
whole split (not averaged per image), as the official Cityscapes evaluator does:

* pixels whose target is 255 (or any id outside 0..C-1) are not counted at all;
* a prediction outside 0..C-1 (e.g. an exported "unlabeled" pixel) is a false negative of the
  target class and a false positive of no class (an extra "other" column);
* classes with an empty union get IoU NaN and are left out of the means.

mIoU19: all 19 Cityscapes classes (GTA5 → Cityscapes, Table 1). mIoU16: the 16 classes SYNTHIA
shares with Cityscapes, trainIds 0-8, 10-13, 15, 17, 18; mIoU13: mIoU16 without wall, fence,
pole (SYNTHIA → Cityscapes, Table 2). These subsets exist for Cityscapes' classes only; a
dataset with classes of its own (a dataset file, :mod:`sci2i.data.custom`) is scored on all of
them: class set ``"all"``, headline ``mIoU``. All scores are percentages.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np
import torch

from sci2i.labels import (
    ALL_CLASSES, CLASS_NAMES, CLASS_SETS, IGNORE_INDEX, NUM_CLASSES, SYNTHIA13_TRAIN_IDS, SYNTHIA16_TRAIN_IDS,
    class_set_ids,
)

#: Column headers in the paper's table order (trainId order), abbreviated as in UDA papers.
SHORT_NAMES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "light", "sign", "veg", "terrain",
    "sky", "person", "rider", "car", "truck", "bus", "train", "mbike", "bike",
)


class ConfusionMatrix:
    """Confusion matrix of trainIds accumulated batch by batch on any device.

    Rows are targets 0..C-1, columns predictions 0..C-1 plus one "other" column for
    predictions outside the classes. ``update`` works on CPU or GPU tensors (or numpy
    arrays); the matrix lives on ``device`` (default: that of the first update).
    """

    def __init__(self, num_classes: int = NUM_CLASSES, device: Optional[torch.device | str] = None,
                 class_names: Optional[Sequence[str]] = None) -> None:
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        self.num_classes = num_classes
        #: row names; Cityscapes' (and so mIoU19/16/13) for 19 classes without names of their own
        self.class_names = tuple(class_names) if class_names is not None else (
            CLASS_NAMES if num_classes == NUM_CLASSES else tuple(f"class{i}" for i in range(num_classes)))
        self.device = torch.device(device) if device is not None else None
        self.mat: Optional[torch.Tensor] = None
        self.reset()

    def reset(self) -> None:
        c = self.num_classes
        self.mat = torch.zeros(c, c + 1, dtype=torch.int64, device=self.device) if self.device else None

    @torch.no_grad()
    def update(self, pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> None:
        """Add a batch: ``pred`` and ``target`` are integer maps of the same shape."""
        pred = torch.as_tensor(pred)
        target = torch.as_tensor(target)
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        if self.mat is None:
            self.device = target.device
            self.mat = torch.zeros(self.num_classes, self.num_classes + 1, dtype=torch.int64, device=self.device)
        c = self.num_classes
        target = target.to(self.device).reshape(-1).long()
        pred = pred.to(self.device).reshape(-1).long()
        valid = (target >= 0) & (target < c)  # 255 and unknown targets are not scored
        target, pred = target[valid], pred[valid]
        pred = torch.where((pred >= 0) & (pred < c), pred, torch.full_like(pred, c))
        self.mat += torch.bincount(target * (c + 1) + pred, minlength=c * (c + 1)).reshape(c, c + 1)

    def _matrix(self) -> torch.Tensor:
        if self.mat is None:
            return torch.zeros(self.num_classes, self.num_classes + 1, dtype=torch.int64)
        return self.mat.detach().cpu()

    def iou(self) -> torch.Tensor:
        """Per-class IoU in [0, 1] (float64, CPU); NaN where a class has an empty union."""
        mat = self._matrix().double()
        tp = mat.diagonal()
        gt = mat.sum(dim=1)  # includes the "other" column: those are false negatives
        pred = mat[:, : self.num_classes].sum(dim=0)
        union = gt + pred - tp
        return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))

    def summary(self) -> dict:
        """``{"per_class": {name: IoU %}, "mIoU19", "mIoU16", "mIoU13", "pixel_accuracy", "num_pixels"}``
        for Cityscapes' classes; ``"mIoU"`` (every class) instead of the three for any others."""
        iou = self.iou()
        per_class = {n: float(v) * 100.0 for n, v in zip(self.class_names, iou.tolist())}
        mat = self._matrix()
        total = int(mat.sum())
        if self.class_names == CLASS_NAMES:
            means = {"mIoU19": _nanmean(iou, range(self.num_classes)),
                     "mIoU16": _nanmean(iou, SYNTHIA16_TRAIN_IDS), "mIoU13": _nanmean(iou, SYNTHIA13_TRAIN_IDS)}
        else:
            means = {"mIoU": _nanmean(iou, range(self.num_classes))}
        return {
            "per_class": per_class,
            **means,
            "pixel_accuracy": float(mat.diagonal().sum()) / total * 100.0 if total else math.nan,
            "num_pixels": total,
        }


def _nanmean(iou: torch.Tensor, ids: Sequence[int]) -> float:
    vals = iou[list(ids)]
    vals = vals[~torch.isnan(vals)]
    return float(vals.mean()) * 100.0 if vals.numel() else math.nan


def headline_metrics(class_set: str) -> tuple[str, ...]:
    """Summary keys reported for a class set: mIoU19, or mIoU16 and mIoU13 (paper Table 2);
    mIoU for a dataset with classes of its own."""
    class_set_ids(class_set)
    return {"cityscapes19": ("mIoU19",), ALL_CLASSES: ("mIoU",)}.get(class_set, ("mIoU16", "mIoU13"))


def _fmt(v: float) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"


def format_iou_rows(summaries: Mapping[str, dict], class_set: str = "cityscapes19") -> str:
    """Markdown table, one row per ``{method name: summary}``, in the paper's column layout.

    ``cityscapes19``: the 19 classes then mIoU19 (Table 1). ``synthia16``: the 16 classes, the
    three excluded from mIoU13 marked ``*``, then mIoU16 and mIoU13 (Table 2). ``all``: the
    classes of the (first) summary, then mIoU.
    """
    metrics = headline_metrics(class_set)
    if class_set == ALL_CLASSES:  # (column header, per_class key)
        names = list(next(iter(summaries.values()))["per_class"]) if summaries else []
        columns = [(n, n) for n in names]
    else:
        starred = set(SYNTHIA16_TRAIN_IDS) - set(SYNTHIA13_TRAIN_IDS) if class_set == "synthia16" else set()
        columns = [(SHORT_NAMES[i] + ("*" if i in starred else ""), CLASS_NAMES[i]) for i in class_set_ids(class_set)]
    header = ["method"] + [h for h, _ in columns] + list(metrics)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([" --- "] + [" ---: "] * (len(header) - 1)) + "|"]
    for name, s in summaries.items():
        per_class = s["per_class"]
        cells = [name] + [_fmt(per_class.get(key, math.nan)) for _, key in columns]
        cells += [_fmt(s.get(m, math.nan)) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_iou_table(summary: dict, class_set: str = "cityscapes19", name: str = "ours") -> str:
    """Markdown table of one summary (see :func:`format_iou_rows`)."""
    return format_iou_rows({name: summary}, class_set)


__all__ = [
    "ConfusionMatrix", "format_iou_table", "format_iou_rows", "class_set_ids", "headline_metrics",
    "SHORT_NAMES", "CLASS_SETS", "IGNORE_INDEX", "ALL_CLASSES",
]
