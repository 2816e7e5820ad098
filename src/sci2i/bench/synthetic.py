"""Synthetic on-disk data for the data-pipeline benchmark (GTA5 and Cityscapes layouts).

Images are smooth random colour fields with mild noise, so their PNGs compress and decode
roughly like photographs (pure noise would be much slower, flat colour much faster); labels
are blocky Cityscapes labelId maps. Written once per (folder, size, count) and reused.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
_STAMP = "sci2i-bench-data.json"


def _image(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    coarse = rng.uniform(0, 255, size=(max(2, height // 16), max(2, width // 16), 3)).astype(np.float32)
    img = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0, 4, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _label(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    blocks = rng.choice(_LABEL_IDS, size=(max(1, height // 32), max(1, width // 32))).astype(np.uint8)
    return cv2.resize(blocks, (width, height), interpolation=cv2.INTER_NEAREST)


def write_bench_data(root: str | Path, n: int, width: int, height: int, seed: int = 0) -> dict[str, Path]:
    """``{"source": GTA5-layout root, "target": Cityscapes-layout root}`` below ``root``."""
    root = Path(root)
    stamp = {"n": n, "width": width, "height": height, "seed": seed, "version": 1}
    out = {"source": root / "source", "target": root / "target"}
    if (root / _STAMP).is_file() and json.loads((root / _STAMP).read_text()) == stamp:
        return out
    rng = np.random.default_rng(seed)
    for k in range(n):
        stem = f"{k + 1:05d}"
        for sub, arr in (("images", _image(rng, width, height)), ("labels", _label(rng, width, height))):
            path = out["source"] / sub / f"{stem}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(path)
    for split, count in (("train", n), ("val", 1)):
        for k in range(count):
            city = "benchcity"
            stem = f"{city}_{k:06d}_000019"
            img_path = out["target"] / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
            lab_path = out["target"] / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
            for path, arr in ((img_path, _image(rng, width, height)), (lab_path, _label(rng, width, height))):
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(path)
    (root / _STAMP).write_text(json.dumps(stamp))
    return out
