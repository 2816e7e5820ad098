"""Evaluation: confusion matrix and mIoU19/16/13, prediction export, evaluation loops, KID, and
the linear probe of the domain gap (:mod:`~sci2i.eval.probe`, which trains only a classifier)."""

from sci2i.eval.metrics import ConfusionMatrix, format_iou_rows, format_iou_table

__all__ = ["ConfusionMatrix", "format_iou_rows", "format_iou_table"]
