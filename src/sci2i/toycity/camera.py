"""Pinhole camera over a flat street, and projections of the shapes the scene grammar uses.

World frame (metres): X to the right, Y up (ground at Y = 0), Z forward (depth). The camera
sits at (0, ``height``, 0) looking along +Z with a level optical axis, so the horizon is a
horizontal image row and a ground point at depth Z projects to row
``horizon + focal * height / Z``: lower cameras compress the road, higher ones stretch it.
All functions are vectorised over leading array dimensions and return float pixel coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEAR = 0.6  # near clipping depth (m): geometry closer than this is cut off
FAR = 2000.0  # depth used for "at the horizon"


@dataclass(frozen=True)
class Camera:
    """Image size (px), focal length (px), horizon row (px) and camera height (m)."""

    width: int
    height: int
    focal: float
    horizon: float
    cam_height: float

    @property
    def cx(self) -> float:
        return self.width / 2.0

    def project(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """World points -> pixel coordinates ``[..., 2]`` (depth clipped at ``NEAR``)."""
        z = np.maximum(np.asarray(z, dtype=np.float64), NEAR)
        u = self.cx + self.focal * np.asarray(x, dtype=np.float64) / z
        v = self.horizon + self.focal * (self.cam_height - np.asarray(y, dtype=np.float64)) / z
        return np.stack(np.broadcast_arrays(u, v), axis=-1)

    def scale(self, z: float | np.ndarray) -> np.ndarray:
        """Pixels per metre for something at depth ``z``."""
        return self.focal / np.maximum(z, NEAR)

    def ground_depth_at_row(self, row: np.ndarray) -> np.ndarray:
        """Depth of the ground seen at image row ``row`` (``FAR`` at and above the horizon)."""
        dv = np.asarray(row, dtype=np.float64) - self.horizon
        return np.where(dv > 1e-6, self.focal * self.cam_height / np.maximum(dv, 1e-6), FAR)

    def near_ground_depth(self) -> float:
        """Depth of the ground seen at the bottom image row."""
        return float(self.ground_depth_at_row(np.array(self.height)))

    # --- quads on planes --------------------------------------------------------------------
    def ground_quads(self, rects: np.ndarray) -> np.ndarray:
        """Ground rectangles ``[N, 4] = (x0, x1, z0, z1)`` -> pixel quads ``[N, 4, 2]``."""
        x0, x1, z0, z1 = np.moveaxis(np.atleast_2d(rects), -1, 0)
        xs = np.stack([x0, x1, x1, x0], -1)
        zs = np.stack([z0, z0, z1, z1], -1)
        return self.project(xs, np.zeros_like(xs), zs)

    def front_quads(self, z: float, rects: np.ndarray) -> np.ndarray:
        """Rectangles ``(x0, x1, y0, y1)`` on the plane at depth ``z`` -> quads ``[N, 4, 2]``."""
        x0, x1, y0, y1 = np.moveaxis(np.atleast_2d(rects), -1, 0)
        xs = np.stack([x0, x1, x1, x0], -1)
        ys = np.stack([y0, y0, y1, y1], -1)
        return self.project(xs, ys, np.full_like(xs, z))

    def side_quads(self, x: float, rects: np.ndarray) -> np.ndarray:
        """Rectangles ``(z0, z1, y0, y1)`` on the plane X = ``x`` -> quads ``[N, 4, 2]``."""
        z0, z1, y0, y1 = np.moveaxis(np.atleast_2d(rects), -1, 0)
        zs = np.stack([z0, z1, z1, z0], -1)
        ys = np.stack([y0, y0, y1, y1], -1)
        return self.project(np.full_like(zs, x), ys, zs)

    def box_faces(
        self, x0: float, x1: float, y0: float, y1: float, z0: float, z1: float
    ) -> dict[str, np.ndarray]:
        """Visible faces of an axis-aligned box as pixel quads ``[4, 2]``.

        Keys: ``"side"`` (the face towards the camera's X, if any), ``"top"`` (if the camera is
        above the box) and ``"front"`` (the face at ``z0``). Visible faces of a convex box never
        overlap, so they can be drawn in any order; ``front`` is returned last for clarity.
        """
        z0 = max(z0, NEAR)
        z1 = max(z1, z0 + 1e-3)
        faces: dict[str, np.ndarray] = {}
        if x0 > 0:
            faces["side"] = self.side_quads(x0, np.array([z0, z1, y0, y1]))[0]
        elif x1 < 0:
            faces["side"] = self.side_quads(x1, np.array([z0, z1, y0, y1]))[0]
        if y1 < self.cam_height:
            xs = np.array([x0, x1, x1, x0])
            zs = np.array([z0, z0, z1, z1])
            faces["top"] = self.project(xs, np.full(4, y1), zs)
        faces["front"] = self.front_quads(z0, np.array([x0, x1, y0, y1]))[0]
        return faces
