"""Target domain look: the same kind of scene, "photographed".

Steps, in the order a camera would apply them:

1. *Surfaces*: each part is cut out of its material's photographic canvas
   (``textures.material_canvas``) and tinted by the part's paint (``paint / base colour``).
2. *Light*: face shading (stronger than the source's), cast shadows on the ground, a
   low-frequency illumination gradient, a bright sky towards the horizon and haze.
3. *Camera*: colour grading (white balance, gamma, saturation), vignetting, lens blur,
   sensor noise and a JPEG round trip.

All randomness comes from the image's own generator, so a seed fixes the bytes.
"""

from __future__ import annotations

import cv2
import numpy as np

from sci2i.toycity.camera import Camera
from sci2i.toycity.materials import MATERIAL_ID, SOURCE_COLORS
from sci2i.toycity.shapes import Part, Scene, part_arrays
from sci2i.toycity.textures import GROUND_MATERIALS, material_canvas


def _surfaces(rng: np.random.Generator, part_map: np.ndarray, parts: list[Part], cam: Camera) -> np.ndarray:
    material, paint, shade = part_arrays(parts)
    used = np.unique(material[np.unique(part_map)])
    canvases = np.stack([material_canvas(rng, int(m), cam) for m in used]).astype(np.float32)
    slot = np.zeros(material.max() + 1, dtype=np.int64)
    slot[used] = np.arange(len(used))
    gain = paint / np.maximum(SOURCE_COLORS[material], 1.0)  # per-instance paint relative to base
    gain *= (shade ** 1.6)[:, None]  # photos have harder light than the game's flat shading
    rows, cols = np.indices(part_map.shape)
    img = canvases[slot[material[part_map]], rows, cols]
    return img * gain[part_map]


def _light(rng: np.random.Generator, img: np.ndarray, part_map: np.ndarray, parts: list[Part], scene: Scene) -> np.ndarray:
    h, w = part_map.shape
    cam: Camera = scene.camera  # type: ignore[assignment]
    material = part_arrays(parts)[0][part_map]
    # Cast shadows, soft-edged, only on ground surfaces.
    if scene.shadows:
        mask = np.zeros((h, w), np.float32)
        cv2.fillPoly(mask, [np.round(q * 16).astype(np.int32) for q in scene.shadows], 1.0, cv2.LINE_8, 4)
        mask = cv2.GaussianBlur(mask, (0, 0), 0.8)
        darkness = rng.uniform(0.35, 0.55)
        mask *= np.isin(material, GROUND_MATERIALS)
        img = img * (1.0 - darkness * mask)[..., None]
    # Illumination: a broad gradient towards the sun and a little overall exposure change.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    xn, yn = xx / w - 0.5, yy / h - 0.5
    field = rng.uniform(0.95, 1.15) * (1.0 + rng.uniform(0.1, 0.3) * scene.sun_side * xn + rng.uniform(-0.15, 0.1) * yn)
    img = img * field[..., None]
    # Sky brightens towards the horizon; haze pulls distant things to the sky's colour.
    sky = material == MATERIAL_ID["sky"]
    t = np.clip(1.0 - (cam.horizon - yy) / max(cam.horizon, 1.0), 0, 1)
    img[sky] = img[sky] * (0.97 + 0.18 * t[sky])[..., None]
    haze_colour = np.array([200, 206, 214], np.float32) * rng.uniform(0.9, 1.05)
    haze = rng.uniform(0.1, 0.3) * np.exp(-np.abs(yy - cam.horizon) / (0.08 * h)) * ~sky
    return img * (1 - haze[..., None]) + haze_colour * haze[..., None]


def _camera(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    # Colour grading: white balance, saturation, tone curve.
    img = img * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    grey = img.mean(-1, keepdims=True)
    img = grey + rng.uniform(0.65, 1.05) * (img - grey)
    img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** rng.uniform(0.8, 1.05)
    # Vignetting.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    img = img * (1.0 - rng.uniform(0.05, 0.2) * r2 / 2)[..., None]
    # Lens blur (scaled with the image: ~0.6 px at 256 px width).
    sigma = rng.uniform(0.45, 0.85) * w / 256
    img = cv2.GaussianBlur(img, (0, 0), sigma)
    # Sensor noise: signal-dependent (shot) plus read noise, slightly correlated across channels.
    std = np.sqrt(rng.uniform(0.5, 1.5) * np.maximum(img, 0) / 32 + rng.uniform(1.5, 4.0) ** 2)
    noise = rng.standard_normal((h, w, 1)).astype(np.float32) * 0.6 + rng.standard_normal((h, w, 3)).astype(np.float32) * 0.4
    img = np.clip(img + std * noise, 0, 255).astype(np.uint8)
    # JPEG round trip (OpenCV works in BGR; the codec is deterministic).
    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(50, 86))])
    assert ok
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


def render_target(rng: np.random.Generator, scene: Scene, part_map: np.ndarray, parts: list[Part]) -> np.ndarray:
    """Part map -> photographic-looking RGB image ``[H, W, 3] uint8``."""
    img = _surfaces(rng, part_map, parts, scene.camera)  # type: ignore[arg-type]
    img = _light(rng, img, part_map, parts, scene)
    return _camera(rng, img)
