"""Source domain look: a game engine's flat, crisp rendering.

Each part is one flat colour (its instance paint times a face shade), with hard edges and no
noise, so the image is exactly a function of the part map: every label region is a union of
a few uniformly coloured parts.
"""

from __future__ import annotations

import numpy as np

from sci2i.toycity.materials import MATERIAL_LABEL_ID
from sci2i.toycity.shapes import Part, part_arrays


def part_colors(parts: list[Part]) -> np.ndarray:
    """Flat RGB colour of every part, ``[P, 3] uint8``."""
    _, paint, shade = part_arrays(parts)
    return np.clip(np.round(paint * shade[:, None]), 0, 255).astype(np.uint8)


def render_source(part_map: np.ndarray, parts: list[Part]) -> np.ndarray:
    """Part map -> RGB image ``[H, W, 3] uint8``."""
    return part_colors(parts)[part_map]


def render_labels(part_map: np.ndarray, parts: list[Part]) -> np.ndarray:
    """Part map -> Cityscapes labelId map ``[H, W] uint8``."""
    material, _, _ = part_arrays(parts)
    return MATERIAL_LABEL_ID[material][part_map]
