"""Figures of the I2I phase: source / translated pairs as in the paper's Fig. 2.

:func:`make_pairs_figure` draws one row per image: the synthetic input ``x_s``, its
translation ``G(x_s)`` and, optionally, a real target image for reference. Matplotlib runs
with the non-interactive Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

ImageBatch = Union[torch.Tensor, Sequence[np.ndarray]]


def _to_hwc_list(images: ImageBatch) -> list[np.ndarray]:
    """(N, 3, H, W) float tensor in [0, 1] or H×W×3 arrays (uint8 or float) -> float H×W×3 list."""
    if torch.is_tensor(images):
        return [im.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() for im in images]
    out = []
    for im in images:
        im = np.asarray(im)
        out.append(im.astype(np.float32) / 255.0 if im.dtype == np.uint8 else np.clip(im, 0, 1))
    return out


def make_pairs_figure(
    sources: ImageBatch,
    translated: ImageBatch,
    path: str | Path,
    references: Optional[ImageBatch] = None,
    titles: Sequence[str] = ("synthetic $x_s$", "translated $G(x_s)$", "real $x_t$ (reference)"),
    width_inches: float = 9.0,
) -> Path:
    """Write a PNG grid: rows = images; columns = source, translation (, reference)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [_to_hwc_list(sources), _to_hwc_list(translated)]
    if references is not None:
        cols.append(_to_hwc_list(references))
    rows = min(len(c) for c in cols)
    if rows == 0:
        raise ValueError("make_pairs_figure needs at least one image pair")
    h, w = cols[0][0].shape[:2]
    ncol = len(cols)
    fig_w = width_inches
    fig_h = fig_w * (h / w) * rows / ncol + 0.4
    fig, axes = plt.subplots(rows, ncol, figsize=(fig_w, fig_h), squeeze=False)
    for r in range(rows):
        for c in range(ncol):
            ax = axes[r][c]
            ax.imshow(cols[c][r], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=10)
    fig.tight_layout(pad=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
