"""Scene description (parts made of 2D primitives) and its rasterisation.

A scene is drawn with the painter's algorithm into a *part map*: an ``int32`` image whose
value at each pixel is the index of the part that is visible there. Both renderers and the
label map are functions of that one map, which is what keeps image and label aligned exactly:

* label       = ``MATERIAL_LABEL_ID[material[part_map]]``
* source RGB  = ``colour[part_map]`` (flat, per-part colours)
* target RGB  = texture of ``material[part_map]`` tinted by the part's paint, then camera effects

Drawing order: sky, ground layers (flat on the road plane), *backdrop* structures along the
building line (far to near), street objects on road and sidewalk (far to near), overlays.
Backdrop structures sit behind every street object along any viewing ray, so they are sorted
separately; within a layer, objects are sorted by the depth of their nearest face.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from sci2i.toycity.materials import MATERIAL_ID, SOURCE_COLORS

_SHIFT = 4  # fixed-point bits for sub-pixel accurate polygon edges
_ONE = 1 << _SHIFT

LAYERS = ("sky", "ground", "backdrop", "street", "overlay")


@dataclass
class Part:
    """One material region of one object instance.

    ``paint`` is the instance's RGB colour in source terms (defaults to the material's base
    colour); ``shade`` is a simple face-orientation brightness factor. Primitives are tuples:
    ``("poly", [array[K, 2], ...])``, ``("ellipse", cx, cy, ax, ay, angle_deg)`` (filled),
    ``("ring", cx, cy, ax, ay, angle_deg, thickness)`` and
    ``("lines", [array[K, 2], ...], thickness)``, all in float pixels.
    """

    material: int
    prims: list[tuple] = field(default_factory=list)
    paint: np.ndarray | None = None
    shade: float = 1.0

    @staticmethod
    def of(material: str, paint: np.ndarray | None = None, shade: float = 1.0) -> "Part":
        return Part(MATERIAL_ID[material], [], paint, shade)

    def poly(self, *polys: np.ndarray) -> "Part":
        self.prims.append(("poly", [np.asarray(p, dtype=np.float64) for p in polys]))
        return self

    def polys(self, quads: np.ndarray) -> "Part":
        """Add many polygons given as one array ``[N, K, 2]``."""
        if len(quads):
            self.prims.append(("poly", list(np.asarray(quads, dtype=np.float64))))
        return self

    def ellipse(self, cx: float, cy: float, ax: float, ay: float, angle: float = 0.0) -> "Part":
        self.prims.append(("ellipse", cx, cy, ax, ay, angle))
        return self

    def ring(self, cx: float, cy: float, ax: float, ay: float, thickness: float) -> "Part":
        self.prims.append(("ring", cx, cy, ax, ay, 0.0, thickness))
        return self

    def lines(self, polylines: list[np.ndarray], thickness: float) -> "Part":
        self.prims.append(("lines", [np.asarray(p, dtype=np.float64) for p in polylines], thickness))
        return self

    def base_paint(self) -> np.ndarray:
        return SOURCE_COLORS[self.material] if self.paint is None else self.paint


@dataclass
class SceneObject:
    """An object instance: parts drawn in list order, placed in ``layer`` at ``depth`` (m)."""

    layer: str
    depth: float
    parts: list[Part]
    kind: str = ""
    # (|X| of the side nearest the road's centre line, z0, z1) in metres; orders backdrop and
    # street objects (see ``_painter_order``). None: ordered by ``depth`` alone.
    footprint: tuple[float, float, float] | None = None


@dataclass
class Scene:
    """Everything the renderers need about one image."""

    width: int
    height: int
    objects: list[SceneObject]
    # Target-only photometric hints produced by the grammar.
    shadows: list[np.ndarray] = field(default_factory=list)  # ground polygons [K, 2] (px)
    sun_side: float = 1.0  # +1: sun on the right (faces looking left are lit), -1: left
    camera: object | None = None  # sci2i.toycity.camera.Camera

    def ordered_objects(self) -> list[SceneObject]:
        """Objects in drawing order: layers in ``LAYERS`` order; sky, ground and overlays in
        the grammar's order; backdrop and street objects far to near (``_painter_order``)."""
        out: list[SceneObject] = []
        for layer in LAYERS:
            objs = [o for o in self.objects if o.layer == layer]
            out += _painter_order(objs) if layer in ("backdrop", "street") else objs
        return out


def _painter_order(objs: list[SceneObject]) -> list[SceneObject]:
    """Far-to-near order of objects standing on the ground plane.

    Sorting by depth alone fails for long objects (a building beside the road starts near the
    camera but sits behind a car further ahead). For footprints ``(x, z0, z1)`` two rules are
    exact for our scenes: if the depth intervals are disjoint, the nearer interval is in front
    (depth grows along every ray); if they overlap, the object closer to the road's centre
    line (smaller ``x``) is in front. A topological sort on that relation, ties broken by depth,
    gives the drawing order.
    """
    n = len(objs)
    if n < 2:
        return objs
    fp = np.array([o.footprint or (0.0, o.depth, o.depth) for o in objs], dtype=np.float64)
    x, z0, z1 = fp[:, 0], fp[:, 1], fp[:, 2]
    a_behind_b = (z0[:, None] >= z1[None, :]) & (z0[:, None] > z0[None, :])
    overlap = (z0[:, None] < z1[None, :]) & (z0[None, :] < z1[:, None])
    a_behind_b |= overlap & (x[:, None] > x[None, :] + 1e-6)
    np.fill_diagonal(a_behind_b, False)
    # before[i, j]: i must be drawn before j. Kahn's algorithm, picking the deepest free object.
    blockers = a_behind_b.sum(axis=0)  # how many objects must precede j
    remaining = np.ones(n, dtype=bool)
    order: list[int] = []
    depth_rank = np.lexsort((np.arange(n), -fp[:, 1]))  # deepest first, stable
    for _ in range(n):
        free = [i for i in depth_rank if remaining[i] and blockers[i] == 0]
        i = free[0] if free else next(i for i in depth_rank if remaining[i])  # cycle: depth wins
        order.append(i)
        remaining[i] = False
        blockers -= a_behind_b[i]
        blockers[i] = 1 << 30
    return [objs[i] for i in order]


def _fixed(p: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(p) * _ONE).astype(np.int32)


def _draw(canvas: np.ndarray, prim: tuple, value: int) -> None:
    kind = prim[0]
    if kind == "poly":
        cv2.fillPoly(canvas, [_fixed(p) for p in prim[1]], value, cv2.LINE_8, _SHIFT)
    elif kind in ("ellipse", "ring"):
        _, cx, cy, ax, ay, angle = prim[:6]
        thickness = -1 if kind == "ellipse" else max(1, int(round(prim[6])))
        axes = (max(0, int(round(ax * _ONE))), max(0, int(round(ay * _ONE))))
        center = (int(round(cx * _ONE)), int(round(cy * _ONE)))
        if max(abs(center[0]), abs(center[1])) < 1 << 26:
            cv2.ellipse(canvas, center, axes, angle, 0, 360, value, thickness, cv2.LINE_8, _SHIFT)
    elif kind == "lines":
        thickness = max(1, int(round(prim[2])))
        cv2.polylines(canvas, [_fixed(p) for p in prim[1]], False, value, thickness, cv2.LINE_8, _SHIFT)
    else:  # pragma: no cover - programming error
        raise ValueError(f"unknown primitive {kind!r}")


def rasterize(scene: Scene) -> tuple[np.ndarray, list[Part]]:
    """Paint the scene; returns the part map ``[H, W] int32`` and the parts it indexes."""
    part_map = np.zeros((scene.height, scene.width), dtype=np.int32)
    parts: list[Part] = []
    for obj in scene.ordered_objects():
        for part in obj.parts:
            if not part.prims:
                continue
            index = len(parts)
            parts.append(part)
            for prim in part.prims:
                _draw(part_map, prim, index)
    return part_map, parts


def part_arrays(parts: list[Part]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-part material ids ``[P]``, paints ``[P, 3]`` and shades ``[P]`` as arrays."""
    material = np.array([p.material for p in parts], dtype=np.int64)
    paint = np.stack([p.base_paint() for p in parts]).astype(np.float32)
    shade = np.array([p.shade for p in parts], dtype=np.float32)
    return material, paint, shade
