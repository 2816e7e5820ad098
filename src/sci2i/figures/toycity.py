"""Figure of example source / target pairs with their colourised labels (docs/toycity.png)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from sci2i.labels import CLASS_COLORS, CLASS_NAMES, colorize, label_ids_to_train_ids
from sci2i.toycity.writer import source_paths, target_paths


def _load(image_path: Path, label_path: Path) -> tuple[np.ndarray, np.ndarray]:
    rgb = np.asarray(Image.open(image_path).convert("RGB"))
    label_ids = np.asarray(Image.open(label_path))  # palette indices / greyscale = labelIds
    return rgb, colorize(label_ids_to_train_ids(label_ids))


def make_figure(root: str | os.PathLike, out_png: str | os.PathLike, n: int = 4) -> Path:
    """Write a grid of ``n`` rows: source image, source label, target image, target label.

    ``root`` is a toy-city folder written by ``generate``; target examples come from ``val``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    root = Path(root)
    rows = [(_load(*source_paths(root / "source", i)), _load(*target_paths(root / "target", "val", i))) for i in range(n)]
    h, w = rows[0][0][0].shape[:2]
    fig, axes = plt.subplots(n, 4, figsize=(4 * 3.2, n * 3.2 * h / w + 1.2), squeeze=False)
    titles = ("source image (GTA5 layout)", "source label", "target image (Cityscapes layout)", "target label")
    for r, ((s_img, s_lab), (t_img, t_lab)) in enumerate(rows):
        for c, img in enumerate((s_img, s_lab, t_img, t_lab)):
            ax = axes[r, c]
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=9)
    handles = [Patch(color=np.array(c) / 255, label=name) for name, c in zip(CLASS_NAMES, CLASS_COLORS)]
    handles.append(Patch(color="black", label="ignored (255)"))
    fig.legend(handles=handles, loc="lower center", ncol=10, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
