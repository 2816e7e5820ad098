"""The figures of ``report.md``: per-class IoU bars, training curves, and predictions of each
model next to the ground truth on target val images (:mod:`sci2i.pipeline.report` writes them)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import torch

from sci2i.config import Config
from sci2i.data.build import build_target_dataset
from sci2i.data.transforms import resize_image, scaled_size
from sci2i.infer.predict import ClassPalette, class_logits, load_predictor, upsample_argmax
from sci2i.labels import CLASS_NAMES, colorize
from sci2i.utils.rundir import read_metrics
from sci2i.utils.runtime import resolve_device


def _matplotlib():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def per_class_bars(evals: dict[str, dict], out_png: Path) -> Path:
    """Grouped bars of per-class IoU, one colour per model."""
    plt = _matplotlib()
    import numpy as np

    fig, ax = plt.subplots(figsize=(12, 3.6))
    names = list(evals)
    width = 0.8 / max(1, len(names))
    x = np.arange(len(CLASS_NAMES))
    for i, n in enumerate(names):
        vals = [evals[n]["per_class"].get(c, float("nan")) for c in CLASS_NAMES]
        ax.bar(x + i * width - 0.4 + width / 2, [0 if math.isnan(v) else v for v in vals], width, label=n)
    ax.set_xticks(x, CLASS_NAMES, rotation=45, ha="right")
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def training_curves(phase_dirs: dict[str, Path], out_png: Path) -> Optional[Path]:
    """Total losses (left axis) and validation mIoU in % (right axis) of every phase against
    its step: two units, two axes."""
    plt = _matplotlib()
    series = {n: read_metrics(d) for n, d in phase_dirs.items() if d and Path(d).is_dir()}
    series = {n: m for n, m in series.items() if m}
    if not series:
        return None
    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.2), squeeze=False)
    for ax, (name, rows) in zip(axes[0], series.items()):
        keys = sorted({k for r in rows for k in r if k not in ("phase", "step", "time")
                       and (k.lower().endswith("total") or "miou" in k.lower())})
        miou_ax = None
        handles = []
        for k in keys[:6]:
            pts = [(r["step"], r[k]) for r in rows if k in r and isinstance(r[k], (int, float))]
            if not pts:
                continue
            target = ax
            if "miou" in k.lower():
                miou_ax = miou_ax or ax.twinx()
                target = miou_ax
            style = dict(marker="." if len(pts) < 20 else None, linestyle="--" if target is miou_ax else "-")
            handles += target.plot(*zip(*pts), label=k, color=f"C{len(handles)}", **style)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        if miou_ax is not None:
            miou_ax.set_ylabel("mIoU (%)")
        ax.legend(handles=handles, fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def prediction_figure(cfg: Config, models: dict[str, str], out_png: Path, n: int = 4):
    """Rows = the first ``n`` target val images; columns = image, ground truth, each model's
    prediction (at the evaluation scale, upsampled to the label's resolution as in evaluation).
    Returns the PNG and the same grid as a 3×H×W float tensor for TensorBoard."""
    device = resolve_device(cfg.perf.device)
    dataset = build_target_dataset(cfg.data, cfg.data.target_val_split, with_labels=True, train=False)
    rows, size = [], None
    loaded = {name: load_predictor(w, device)[0] for name, w in models.items()}
    for i in range(min(n, len(dataset))):
        image, label = dataset.read(i)
        h, w = scaled_size(*image.shape[:2], cfg.data.eval_long_side)
        x = torch.from_numpy(resize_image(image, h, w)).permute(2, 0, 1)[None].float().div(255).to(device)
        cells = [image, colorize(label)]
        for model in loaded.values():
            lut = torch.as_tensor(ClassPalette.for_model(model.num_classes, model.class_names).train_ids, device=device)
            pred = lut[upsample_argmax(class_logits(model, x)[0], label.shape)]
            cells.append(colorize(pred.to("cpu", torch.uint8).numpy()))
        size = size or label.shape  # every cell gets the size of the first image's label
        rows.append(np.concatenate([cv2.resize(c, size[::-1], interpolation=cv2.INTER_NEAREST)
                                    if c.shape[:2] != size else c for c in cells], axis=1))
    if not rows:
        raise ValueError("no target val images")
    grid = np.concatenate(rows, axis=0)
    plt = _matplotlib()
    titles = ["image", "ground truth", *models]
    cell_h, cell_w = size
    fig, axes = plt.subplots(len(rows), len(titles), squeeze=False,
                             figsize=(2.6 * len(titles), 2.6 * len(rows) * cell_h / cell_w + 0.4))
    for r in range(len(rows)):
        for c, title in enumerate(titles):
            ax = axes[r][c]
            ax.imshow(grid[r * cell_h:(r + 1) * cell_h, c * cell_w:(c + 1) * cell_w], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png, torch.from_numpy(grid).permute(2, 0, 1).float().div(255)
