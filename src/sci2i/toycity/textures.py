"""Photographic textures for the target domain, cut from photos that ship with sci2i and scikit-image.

scikit-image's ``skimage.data`` (brick, grass, gravel, moon, text, coins, rocket, coffee,
astronaut, camera, chelsea, hubble_deep_field, stereo_motorcycle) and the two sample photos of
``sci2i/toycity/photos/`` (china.jpg, flower.jpg: scikit-learn's sample images, copied byte for
byte with their CC BY 2.0 attribution, so that scikit-learn is not installed for two JPEGs) are
real photographs, so they carry the statistics that separate
a photo from a rendering: texture, sensor noise, lens blur, JPEG artefacts, natural colour
variation. Every material gets one or more ``TextureSpec``\\ s: a region of one photo, how to
colour it and at what scale. ``material_canvas`` turns a spec into a full-frame texture whose
mean colour is the material's target colour; the target renderer then cuts each part out of
its material's canvas.

No file is downloaded: every photo used here is inside the installed wheels (checked by the
tests, also for a wheel of sci2i); ``skimage.data`` images that need the optional ``pooch`` download are not used.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from sci2i.toycity.camera import Camera
from sci2i.toycity.materials import MATERIAL_ID, MATERIALS, SOURCE_COLORS

Region = tuple[float, float, float, float]  # y0, y1, x0, x1 as fractions of the photo


@dataclass(frozen=True)
class TextureSpec:
    """How to texture a material from a photo.

    ``mode``: ``"lum"`` keeps the photo's luminance pattern and colours it with ``tint``;
    ``"color"`` keeps the photo's colours, pulled towards ``tint`` by ``mix`` (0..1).
    ``tint=None`` means the material's source colour: the part's per-instance paint then
    colours it (cars, buildings, clothes come in many colours in both domains).
    ``contrast`` scales the texture's relative deviation from its mean. ``ground=True`` maps
    the texture onto the road plane in perspective with a tile of ``tile_m`` metres;
    otherwise a random crop of ``zoom`` (fraction of the region) is stretched over the frame.
    """

    photo: str
    region: Region = (0.0, 1.0, 0.0, 1.0)
    mode: str = "lum"
    tint: tuple[int, int, int] | None = None
    mix: float = 0.5
    contrast: float = 0.4
    zoom: tuple[float, float] = (0.35, 0.8)
    ground: bool = False
    tile_m: float = 3.0


def _photo_loaders() -> dict:
    import skimage.data as sk

    def shipped_photo(name: str):
        from importlib import resources

        from PIL import Image

        def load() -> np.ndarray:
            with resources.files("sci2i.toycity").joinpath("photos", name).open("rb") as f:
                return np.asarray(Image.open(f))  # decoded as scikit-learn's load_sample_image does

        return load

    return {
        "brick": sk.brick, "grass": sk.grass, "gravel": sk.gravel, "moon": sk.moon, "text": sk.text,
        "page": sk.page, "coins": sk.coins, "camera": sk.camera, "rocket": sk.rocket,
        "coffee": sk.coffee, "astronaut": sk.astronaut, "chelsea": sk.chelsea,
        "hubble": sk.hubble_deep_field, "motorcycle": lambda: sk.stereo_motorcycle()[0],
        "china": shipped_photo("china.jpg"), "flower": shipped_photo("flower.jpg"),
    }


@lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    """A shipped photo as float32 RGB ``[H, W, 3]`` in [0, 255] (cached per process)."""
    img = np.asarray(_photo_loaders()[name]())
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    return np.ascontiguousarray(img[..., :3]).astype(np.float32)


S = TextureSpec
_WINDOW = [S("rocket", (0.0, 0.3, 0.15, 0.45), "color", (58, 70, 84), 0.6, 0.6),
           S("hubble", mode="color", tint=(56, 66, 80), mix=0.7, contrast=0.8),
           S("china", (0.45, 0.56, 0.6, 1.0), "color", (70, 84, 98), 0.6, 0.5)]
_WHEEL = [S("coins", tint=(30, 30, 32), contrast=0.5), S("camera", (0.3, 1.0, 0.25, 0.55), tint=(28, 28, 30), contrast=0.6)]
_PAINT = [S("coffee", (0.62, 1.0, 0.2, 0.65), contrast=0.45), S("motorcycle", (0.3, 0.8, 0.25, 0.75), contrast=0.45),
          S("rocket", (0.3, 0.9, 0.42, 0.6), contrast=0.4), S("moon", contrast=0.35)]
_CLOTH = [S("astronaut", (0.55, 1.0, 0.0, 0.45), contrast=0.6), S("camera", (0.3, 1.0, 0.25, 0.55), contrast=0.6),
          S("chelsea", (0.0, 0.6, 0.0, 0.35), contrast=0.5), S("grass", contrast=0.3)]
_SKIN = [S("chelsea", (0.0, 0.6, 0.0, 0.35), "color", None, 0.8, 0.4), S("astronaut", (0.1, 0.35, 0.35, 0.6), "color", None, 0.6, 0.5)]
_BUS = [S("astronaut", (0.0, 0.45, 0.0, 0.18), contrast=0.35), S("page", (0.15, 0.75, 0.0, 1.0), contrast=0.25),
        S("moon", contrast=0.3)]

#: Texture options per material (one is drawn per image).
TEXTURES: dict[str, list[TextureSpec]] = {
    "sky": [S("china", (0.0, 0.22, 0.0, 0.35), "color", (160, 190, 226), 0.5, 0.25),
            S("camera", (0.0, 0.12, 0.6, 1.0), "lum", (168, 192, 226), contrast=0.15),
            S("moon", tint=(166, 190, 224), contrast=0.15, zoom=(0.6, 1.0))],
    "road": [S("gravel", tint=(96, 96, 100), contrast=0.28, ground=True, tile_m=2.5),
             S("moon", tint=(100, 98, 100), contrast=0.5, ground=True, tile_m=12.0)],
    "road_marking": [S("gravel", tint=(214, 214, 206), contrast=0.15, ground=True, tile_m=2.5)],
    "sidewalk": [S("brick", tint=(160, 152, 146), contrast=0.35, ground=True, tile_m=2.0),
                 S("motorcycle", (0.85, 1.0, 0.0, 0.4), "color", (158, 150, 142), 0.5, 0.8, ground=True, tile_m=3.0),
                 S("gravel", tint=(150, 144, 140), contrast=0.3, ground=True, tile_m=1.2)],
    "curb": [S("moon", tint=(182, 178, 172), contrast=0.5)],
    "building": [S("brick", contrast=0.45, zoom=(0.25, 0.6)), S("moon", contrast=0.6),
                 S("china", (0.15, 0.75, 0.3, 0.6), "color", None, 0.75, 0.5), S("text", contrast=0.35)],
    "building_window": _WINDOW,
    "wall": [S("moon", contrast=0.7), S("text", contrast=0.6), S("brick", contrast=0.5, zoom=(0.15, 0.4))],
    "fence": [S("coffee", (0.0, 0.45, 0.65, 1.0), "color", None, 0.45, 0.8),
              S("rocket", (0.0, 0.9, 0.0, 0.12), "color", None, 0.5, 0.8)],
    "pole": [S("camera", (0.3, 1.0, 0.25, 0.55), tint=(112, 112, 118), contrast=0.35), S("moon", tint=(120, 120, 124), contrast=0.5)],
    "light_box": [S("hubble", mode="color", tint=(34, 36, 34), mix=0.5, contrast=0.8)],
    "light_lamp": [S("moon", contrast=0.25)],
    "sign_face": [S("page", (0.1, 0.8, 0.0, 1.0), contrast=0.6), S("text", contrast=0.5)],
    "sign_border": [S("moon", contrast=0.25)],
    "vegetation": [S("flower", (0.0, 0.35, 0.0, 0.4), "color", (64, 108, 52), 0.75, 0.4),
                   S("china", (0.62, 1.0, 0.6, 1.0), "color", (70, 112, 60), 0.35, 0.8),
                   S("grass", tint=(72, 116, 56), contrast=0.45, zoom=(0.4, 0.9))],
    "trunk": [S("coffee", (0.0, 0.45, 0.65, 1.0), "color", (92, 72, 54), 0.6, 0.6)],
    "terrain": [S("grass", tint=(142, 150, 92), contrast=0.5, ground=True, tile_m=1.5),
                S("camera", (0.75, 1.0, 0.65, 1.0), tint=(136, 148, 90), contrast=0.6, ground=True, tile_m=3.0)],
    "person_head": _SKIN, "rider_head": _SKIN,
    "person_top": _CLOTH, "person_bottom": _CLOTH, "rider_top": _CLOTH, "rider_bottom": _CLOTH,
    "car_body": _PAINT, "truck_body": [S("moon", contrast=0.35), S("brick", contrast=0.12)], "truck_cab": _PAINT,
    "car_window": _WINDOW, "truck_window": _WINDOW, "bus_window": _WINDOW, "train_window": _WINDOW,
    "car_wheel": _WHEEL, "truck_wheel": _WHEEL, "bus_wheel": _WHEEL, "motorcycle_wheel": _WHEEL, "bicycle_wheel": _WHEEL,
    "car_light": [S("moon", contrast=0.2)],
    # Target trams are built and painted like buses (the class-definition clash).
    "bus_body": _BUS, "train_body": _BUS,
    "motorcycle_body": [S("motorcycle", (0.3, 0.8, 0.25, 0.75), "color", None, 0.5, 0.7)],
    "bicycle_frame": [S("moon", contrast=0.2)],
    "ego_hood": [S("rocket", (0.0, 0.3, 0.15, 0.45), "color", (44, 46, 52), 0.5, 0.5)],
}
_DEFAULT = [S("moon", contrast=0.3)]


def _crop(rng: np.random.Generator, spec: TextureSpec, aspect: float) -> np.ndarray:
    img = photo(spec.photo)
    h, w = img.shape[:2]
    y0, y1, x0, x1 = (int(spec.region[0] * h), int(spec.region[1] * h), int(spec.region[2] * w), int(spec.region[3] * w))
    rh, rw = y1 - y0, x1 - x0
    cw = min(rw, rh * aspect) * rng.uniform(*spec.zoom)
    ch = cw / aspect
    cw, ch = max(8, int(cw)), max(4, int(ch))
    oy = y0 + int(rng.integers(0, max(1, rh - ch + 1)))
    ox = x0 + int(rng.integers(0, max(1, rw - cw + 1)))
    crop = img[oy:oy + ch, ox:ox + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return crop


def _colourise(crop: np.ndarray, spec: TextureSpec, tint: np.ndarray) -> np.ndarray:
    """Recolour a crop so its mean is ``tint`` and its relative texture has ``contrast``."""
    if spec.mode == "lum":
        lum = crop @ np.array([0.299, 0.587, 0.114], np.float32)
        rel = np.clip((lum - lum.mean()) / (lum.std() + 1e-3), -2.5, 2.5)  # outliers: no black holes
        return tint * np.clip(1.0 + spec.contrast * rel, 0.05, 3.0)[..., None]
    mean = crop.reshape(-1, 3).mean(0) + 1e-3
    target_mean = (1 - spec.mix) * mean + spec.mix * tint
    rel = crop / mean - 1.0
    return target_mean * np.clip(1.0 + spec.contrast * rel, 0.05, 3.0)


def material_canvas(rng: np.random.Generator, material: int, cam: Camera) -> np.ndarray:
    """Full-frame float RGB texture ``[H, W, 3]`` for ``material``, mean ≈ its target colour."""
    specs = TEXTURES.get(MATERIALS[material], _DEFAULT)
    spec = specs[int(rng.integers(len(specs)))]
    tint = np.asarray(spec.tint if spec.tint is not None else SOURCE_COLORS[material], np.float32)
    w, h = cam.width, cam.height
    if not spec.ground:
        crop = _crop(rng, spec, w / h)
        tex = cv2.resize(_colourise(crop, spec, tint), (w, h), interpolation=cv2.INTER_LINEAR)
        return tex
    # Ground plane: texture coordinates from world (X, Z) of each pixel, tile repeated.
    tile = _colourise(_crop(rng, spec, 1.0), spec, tint)
    px_per_m = cam.focal / 12.0  # texel density that matches the road ~12 m ahead
    size = int(np.clip(spec.tile_m * px_per_m, 16, 256))
    tile = cv2.resize(tile, (size, size), interpolation=cv2.INTER_AREA)
    rows = np.arange(h, dtype=np.float32)[:, None] + 0.5
    cols = np.arange(w, dtype=np.float32)[None, :] + 0.5
    z = cam.ground_depth_at_row(rows).astype(np.float32)
    z = np.minimum(z, 400.0)
    x = (cols - cam.cx) * z / cam.focal
    off = rng.uniform(0, size, 2)
    map_x = np.broadcast_to(x * size / spec.tile_m + off[0], (h, w)).astype(np.float32)
    map_y = np.broadcast_to(z * size / spec.tile_m + off[1], (h, w)).astype(np.float32)
    tex = cv2.remap(tile, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    # Far ground: texture is sub-pixel there; fade to its mean instead of aliasing.
    far = np.clip((z - 25.0) / 60.0, 0.0, 1.0)[..., None]
    return tex * (1 - far) + tile.reshape(-1, 3).mean(0) * far


GROUND_MATERIALS = np.array([MATERIAL_ID[m] for m in ("road", "road_marking", "sidewalk", "curb", "terrain")])
