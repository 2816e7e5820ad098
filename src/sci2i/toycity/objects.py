"""Object models: each function turns one object's world placement into a ``SceneObject``.

Boxes (buildings, vehicles, walls) are projected face by face in true perspective; thin or
organic things (people, trees, poles, two-wheelers) are *billboards*: flat shapes on the plane
at the object's depth, which is what a distant pinhole view of them looks like anyway.
Dimensions are metres; ``s`` scales an object (domain-dependent object sizes).
"""

from __future__ import annotations

import numpy as np

from sci2i.toycity.camera import NEAR, Camera
from sci2i.toycity.shapes import Part, SceneObject

# Simple face shading shared by both domains: a face turned to the sun is lit.
SHADE_FRONT, SHADE_TOP, SHADE_LIT, SHADE_DARK = 0.92, 1.08, 1.0, 0.72


def side_shade(face_x: float, sun_side: float) -> float:
    """Shade of a side face at X = ``face_x`` (it faces the camera, i.e. towards -sign(x))."""
    return SHADE_LIT if np.sign(-face_x) == np.sign(sun_side) else SHADE_DARK


def _circle(n: int = 12) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([np.cos(t), np.sin(t)], -1)


_CIRCLE = _circle()


def billboard(cam: Camera, x: float, z: float, pts: np.ndarray) -> np.ndarray:
    """Local shape points ``[..., 2]`` (dx, y) on the plane at depth ``z`` -> pixels."""
    pts = np.asarray(pts, dtype=np.float64)
    return cam.project(x + pts[..., 0], pts[..., 1], np.full(pts.shape[:-1], z))


def _box(
    cam: Camera, parts: list[Part], material: str, paint, sun: float,
    x0: float, x1: float, y0: float, y1: float, z0: float, z1: float,
) -> dict[str, np.ndarray]:
    faces = cam.box_faces(x0, x1, y0, y1, z0, z1)
    face_x = x0 if x0 > 0 else x1
    for name, quad in faces.items():
        shade = {"front": SHADE_FRONT, "top": SHADE_TOP}.get(name) or side_shade(face_x, sun)
        parts.append(Part.of(material, paint, shade).poly(quad))
    return faces


def _side_x(x0: float, x1: float) -> float | None:
    """X of the visible side face of a box spanning [x0, x1], or None."""
    return x0 if x0 > 0 else (x1 if x1 < 0 else None)


def _side_wheels(cam: Camera, xs: float, zs: list[float], r: float, material: str) -> Part:
    circles = [np.stack([np.full(len(_CIRCLE), xs), r + r * _CIRCLE[:, 1], z + r * _CIRCLE[:, 0]], -1)
               for z in zs]
    pts = np.stack(circles)
    return Part.of(material).polys(cam.project(pts[..., 0], pts[..., 1], pts[..., 2]))


# --- vehicles -------------------------------------------------------------------------------
def car(cam: Camera, x: float, z: float, paint: np.ndarray, toward: bool, sun: float,
        s: float = 1.0) -> SceneObject:
    """A passenger car centred at lateral ``x``, nearest face at depth ``z``."""
    w, l, h = 1.8 * s, 4.4 * s, 1.45 * s
    x0, x1, z1 = x - w / 2, x + w / 2, z + l
    parts: list[Part] = []
    xs = _side_x(x0, x1)
    # Dark underbody and wheels first: the body's front face covers their upper part.
    parts.append(Part.of("car_wheel").poly(cam.front_quads(z + 0.5 * s, np.array([x0 + 0.1, x1 - 0.1, 0.0, 0.3 * s]))[0]))
    if xs is not None:
        parts.append(_side_wheels(cam, xs, [z + 0.85 * s, z1 - 0.85 * s], 0.33 * s, "car_wheel"))
    _box(cam, parts, "car_body", paint, sun, x0, x1, 0.22 * s, 0.9 * s, z, z1)
    if xs is not None:  # wheels in front of the lower body on the side
        parts.append(_side_wheels(cam, xs, [z + 0.85 * s, z1 - 0.85 * s], 0.33 * s, "car_wheel"))
    # Cabin: glass on the sides and front, painted roof.
    cz0, cz1 = z + (1.1 if not toward else 1.3) * s, z1 - 1.0 * s
    c0, c1 = x0 + 0.12 * s, x1 - 0.12 * s
    faces = cam.box_faces(c0, c1, 0.9 * s, h, cz0, cz1)
    if "side" in faces:
        parts.append(Part.of("car_window").poly(faces["side"]))
    if "top" in faces:
        parts.append(Part.of("car_body", paint, SHADE_TOP).poly(faces["top"]))
    parts.append(Part.of("car_body", paint, SHADE_FRONT).poly(faces["front"]))
    parts.append(Part.of("car_window").poly(
        cam.front_quads(cz0, np.array([c0 + 0.1 * s, c1 - 0.1 * s, 0.95 * s, h - 0.08 * s]))[0]))
    light = np.array([240, 236, 210], np.float32) if toward else None
    lights = cam.front_quads(z, np.array([[x0 + 0.08, x0 + 0.42, 0.62, 0.8], [x1 - 0.42, x1 - 0.08, 0.62, 0.8]]) * [1, 1, s, s])
    parts.append(Part.of("car_light", light).polys(lights))
    return SceneObject("street", z, parts, "car")


def truck(cam: Camera, x: float, z: float, paint: np.ndarray, sun: float, s: float = 1.0) -> SceneObject:
    """A box truck seen from behind: cargo box near, cab beyond it."""
    w, l, h = 2.5 * s, 7.0 * s, 3.6 * s
    x0, x1 = x - w / 2, x + w / 2
    parts: list[Part] = []
    xs = _side_x(x0, x1)
    cab_z0 = z + l + 0.2 * s
    _box(cam, parts, "truck_cab", paint, sun, x0 + 0.05, x1 - 0.05, 0.5 * s, 3.0 * s, cab_z0, cab_z0 + 2.2 * s)
    if xs is not None:
        parts.append(Part.of("truck_window").poly(cam.side_quads(xs, np.array([cab_z0 + 0.3 * s, cab_z0 + 1.6 * s, 1.8 * s, 2.7 * s]))[0]))
    parts.append(Part.of("truck_wheel").poly(cam.front_quads(z + 0.4 * s, np.array([x0 + 0.05, x1 - 0.05, 0.0, 0.8 * s]))[0]))
    if xs is not None:
        parts.append(_side_wheels(cam, xs, [z + 1.2 * s, z + 2.3 * s, cab_z0 + 1.2 * s], 0.5 * s, "truck_wheel"))
    _box(cam, parts, "truck_body", None, sun, x0, x1, 0.8 * s, h, z, z + l)
    if xs is not None:
        parts.append(_side_wheels(cam, xs, [z + 1.2 * s, z + 2.3 * s], 0.5 * s, "truck_wheel"))
    parts.append(Part.of("truck_window").poly(cam.front_quads(z, np.array([x - 0.03, x + 0.03, 0.9 * s, h - 0.1 * s]))[0]))
    return SceneObject("street", z, parts, "truck")


def bus(cam: Camera, x: float, z: float, sun: float, s: float = 1.0, cls: str = "bus",
        length: float = 12.0, paint: np.ndarray | None = None) -> SceneObject:
    """A city bus; with ``cls="train"`` the same shape labelled train (target trams)."""
    w, l, h = 2.55 * s, length * s, 3.1 * s
    body, window, wheel = f"{cls}_body", f"{cls}_window", f"{cls}_wheel" if cls == "bus" else f"{cls}_window"
    x0, x1, z1 = x - w / 2, x + w / 2, z + l
    parts: list[Part] = []
    xs = _side_x(x0, x1)
    parts.append(Part.of(wheel).poly(cam.front_quads(z + 0.6 * s, np.array([x0 + 0.1, x1 - 0.1, 0.0, 0.5 * s]))[0]))
    _box(cam, parts, body, paint, sun, x0, x1, 0.3 * s, h, z, z1)
    if xs is not None:
        n = max(2, int(l / (1.6 * s)))
        zz = z + 0.6 * s + np.arange(n - 1) * (l - 1.2 * s) / (n - 1)
        rects = np.stack([zz, zz + 0.85 * (l - 1.2 * s) / (n - 1), np.full_like(zz, 1.35 * s), np.full_like(zz, 2.55 * s)], -1)
        parts.append(Part.of(window).polys(cam.side_quads(xs, rects)))
        parts.append(_side_wheels(cam, xs, [z + 2.4 * s, z1 - 2.6 * s], 0.5 * s, wheel))
    parts.append(Part.of(window).poly(cam.front_quads(z, np.array([x0 + 0.15 * s, x1 - 0.15 * s, 1.6 * s, 2.85 * s]))[0]))
    return SceneObject("street", z, parts, cls)


def tram(cam: Camera, x: float, z: float, sun: float, s: float = 1.0) -> SceneObject:
    """The source's train: a long tram with a coloured stripe, big windscreen and pantograph."""
    w, l, h = 2.65 * s, 28.0 * s, 3.5 * s
    x0, x1, z1 = x - w / 2, x + w / 2, z + l
    parts: list[Part] = []
    xs = _side_x(x0, x1)
    _box(cam, parts, "train_body", None, sun, x0, x1, 0.35 * s, h, z, z1)
    if xs is not None:
        parts.append(Part.of("train_stripe").poly(cam.side_quads(xs, np.array([z, z1, 0.9 * s, 1.25 * s]))[0]))
        n = int(l / (1.3 * s))
        zz = z + 0.5 * s + np.arange(n) * (l - 1.0 * s) / n
        rects = np.stack([zz, zz + 0.7 * (l - 1.0 * s) / n, np.full_like(zz, 1.55 * s), np.full_like(zz, 2.75 * s)], -1)
        parts.append(Part.of("train_window").polys(cam.side_quads(xs, rects)))
    parts.append(Part.of("train_stripe").poly(cam.front_quads(z, np.array([x0, x1, 0.9 * s, 1.25 * s]))[0]))
    parts.append(Part.of("train_window").poly(cam.front_quads(z, np.array([x0 + 0.2 * s, x1 - 0.2 * s, 1.5 * s, 3.15 * s]))[0]))
    zp = z + 6.0 * s  # pantograph: a zig-zag above the roof
    pts = np.array([[-0.6, h], [0.5, h + 0.6], [-0.5, h + 1.0], [0.7, h + 1.0]]) * [s, 1]
    parts.append(Part.of("train_pantograph").lines([billboard(cam, x, zp, pts)], max(1.0, 0.08 * cam.scale(zp))))
    return SceneObject("street", z, parts, "train")


# --- people and two-wheelers ------------------------------------------------------------------
def person(cam: Camera, x: float, z: float, rng: np.random.Generator, top: np.ndarray,
           bottom: np.ndarray, skin: np.ndarray, s: float = 1.0) -> SceneObject:
    """A pedestrian (front/back view billboard)."""
    h = 1.75 * s * rng.uniform(0.88, 1.1)
    stride = rng.uniform(0.0, 0.16) * h
    legs = np.array([
        [[-0.17, 0], [-0.05, 0], [-0.02, 0.48], [-0.16, 0.48]],
        [[0.05, 0], [0.17, 0], [0.16, 0.48], [0.02, 0.48]],
    ]) * h
    legs[0, :2, 0] -= stride * 0.5
    legs[1, :2, 0] += stride * 0.5
    torso = np.array([[-0.16, 0.46], [0.16, 0.46], [0.2, 0.82], [-0.2, 0.82]]) * h
    swing = rng.uniform(-0.06, 0.06)
    arms = np.array([
        [[-0.2, 0.82], [-0.14, 0.8], [-0.2 - swing, 0.46], [-0.27 - swing, 0.47]],
        [[0.2, 0.82], [0.14, 0.8], [0.2 + swing, 0.46], [0.27 + swing, 0.47]],
    ]) * h
    k = cam.scale(z)
    head_c = billboard(cam, x, z, np.array([0.0, 0.905 * h]))
    parts = [
        Part.of("person_bottom", bottom).polys(billboard(cam, x, z, legs)),
        Part.of("person_top", top).polys(billboard(cam, x, z, np.concatenate([torso[None], arms]))),
        Part.of("person_head", skin).ellipse(head_c[0], head_c[1], 0.075 * h * k, 0.095 * h * k),
    ]
    return SceneObject("street", z, parts, "person")


def _rider(cam: Camera, x: float, z: float, d: float, seat: tuple[float, float], hand: tuple[float, float],
           pedal: tuple[float, float], top: np.ndarray, bottom: np.ndarray, skin: np.ndarray, s: float) -> list[Part]:
    k = cam.scale(z)
    sx, sy = seat[0] * d, seat[1]
    shoulder = (sx + 0.22 * d * s, sy + 0.6 * s)
    torso = np.array([[sx - 0.12 * s, sy], [sx + 0.14 * s, sy], [shoulder[0] + 0.12 * s, shoulder[1]], [shoulder[0] - 0.14 * s, shoulder[1]]])
    arm = np.array([shoulder, (hand[0] * d, hand[1])])
    leg = np.array([(sx, sy + 0.05 * s), ((sx + pedal[0] * d) / 2 + 0.15 * d * s, (sy + pedal[1]) / 2 + 0.1 * s), (pedal[0] * d, pedal[1])])
    head = billboard(cam, x, z, np.array([shoulder[0] + 0.05 * d * s, shoulder[1] + 0.2 * s]))
    return [
        Part.of("rider_bottom", bottom).lines([billboard(cam, x, z, leg)], max(1.0, 0.16 * s * k)),
        Part.of("rider_top", top).poly(billboard(cam, x, z, torso)).lines([billboard(cam, x, z, arm)], max(1.0, 0.1 * s * k)),
        Part.of("rider_head", skin).ellipse(head[0], head[1], 0.11 * s * k, 0.13 * s * k),
    ]


def bicycle(cam: Camera, x: float, z: float, d: float, paint: np.ndarray, rider: list[np.ndarray] | None,
            s: float = 1.0) -> SceneObject:
    """A bicycle in side view (``d`` = ±1 heading), optionally ridden (rider paints given)."""
    k = cam.scale(z)
    r = 0.34 * s
    pts = {  # local (dx, y) in metres
        "rear": (-0.52 * d * s, r), "front": (0.52 * d * s, r), "bracket": (0.0, 0.32 * s),
        "seat": (-0.2 * d * s, 0.9 * s), "head": (0.38 * d * s, 0.95 * s), "bar": (0.42 * d * s, 1.05 * s),
    }
    p = {n: billboard(cam, x, z, np.array(v)) for n, v in pts.items()}
    frame = [np.stack([p["rear"], p["seat"], p["bracket"], p["rear"]]), np.stack([p["seat"], p["head"], p["bracket"]]),
             np.stack([p["head"], p["front"]]), np.stack([p["head"], p["bar"]])]
    thick = max(1.0, 0.06 * s * k)
    wheels = Part.of("bicycle_wheel")
    for w in ("rear", "front"):
        wheels.ring(p[w][0], p[w][1], r * k, r * k, thick)
    parts = [wheels, Part.of("bicycle_frame", paint).lines(frame, thick)]
    if rider is not None:
        parts += _rider(cam, x, z, d, (-0.2 * s, 0.95 * s), (0.42 * s, 1.05 * s), (0.05 * s, 0.25 * s), *rider, s=s)
    return SceneObject("street", z, parts, "bicycle")


def motorcycle(cam: Camera, x: float, z: float, d: float, paint: np.ndarray, rider: list[np.ndarray] | None,
               s: float = 1.0) -> SceneObject:
    """A motorcycle in side view, optionally ridden."""
    k = cam.scale(z)
    r = 0.31 * s
    body = np.array([[-0.85, 0.55], [-0.3, 0.48], [0.0, 0.25], [0.42, 0.4], [0.68, 0.82], [0.5, 0.98],
                     [0.15, 0.9], [-0.25, 0.82], [-0.8, 0.78]]) * s
    body[:, 0] *= d
    wheels = Part.of("motorcycle_wheel")
    for dx in (-0.68, 0.7):
        c = billboard(cam, x, z, np.array([dx * d * s, r]))
        wheels.ellipse(c[0], c[1], r * k, r * k)
    bar = billboard(cam, x, z, np.array([[0.5 * d * s, 0.95 * s], [0.62 * d * s, 1.18 * s]]))
    parts = [wheels, Part.of("motorcycle_body", paint).poly(billboard(cam, x, z, body)).lines([bar], max(1.0, 0.06 * s * k))]
    if rider is not None:
        parts += _rider(cam, x, z, d, (-0.3 * s, 0.9 * s), (0.6 * s, 1.15 * s), (0.05 * s, 0.45 * s), *rider, s=s)
    return SceneObject("street", z, parts, "motorcycle")


# --- street furniture and vegetation --------------------------------------------------------
def tree(cam: Camera, x: float, z: float, rng: np.random.Generator, layer: str = "street",
         s: float = 1.0) -> SceneObject:
    """A tree: trunk and a crown of overlapping ellipses (both vegetation)."""
    k = cam.scale(z)
    trunk_h = rng.uniform(2.0, 3.5) * s
    trunk = np.array([[-0.16, 0], [0.16, 0], [0.12, trunk_h + 0.5], [-0.12, trunk_h + 0.5]])
    crown = Part.of("vegetation", None, 1.0)
    n = rng.integers(4, 8)
    radius = rng.uniform(1.6, 2.8) * s
    for _ in range(n):
        c = billboard(cam, x, z, np.array([rng.uniform(-0.7, 0.7) * radius, trunk_h + radius * rng.uniform(0.5, 1.6)]))
        a = rng.uniform(0.45, 0.8) * radius * k
        crown.ellipse(c[0], c[1], a, a * rng.uniform(0.75, 1.1), rng.uniform(0, 180))
    return SceneObject(layer, z, [Part.of("trunk").poly(billboard(cam, x, z, trunk)), crown], "tree")


def hedge(cam: Camera, x0: float, x1: float, z0: float, z1: float, h: float, sun: float) -> SceneObject:
    parts: list[Part] = []
    _box(cam, parts, "vegetation", None, sun, x0, x1, 0.0, h, z0, z1)
    return SceneObject("backdrop", z0, parts, "hedge")


def pole(cam: Camera, x: float, z: float, rng: np.random.Generator, kind: str, side: float,
         sign_paints: tuple[np.ndarray, np.ndarray], lamp: np.ndarray) -> SceneObject:
    """A pole carrying a traffic light (``kind="light"``), a sign (``"sign"``) or a lamp."""
    k = cam.scale(z)
    height = {"light": rng.uniform(3.2, 4.5), "sign": rng.uniform(2.4, 3.2), "lamp": rng.uniform(5.5, 8.0)}[kind]
    parts = [Part.of("pole").poly(billboard(cam, x, z, np.array([[-0.07, 0], [0.07, 0], [0.06, height], [-0.06, height]])))]
    toward_road = -side  # the arm points over the road
    if kind == "light":
        hx = 0.0
        if rng.random() < 0.4:  # mast arm over the road with the head hanging from it
            hx = toward_road * rng.uniform(2.0, 4.5)
            parts[0].lines([billboard(cam, x, z, np.array([[0.0, height], [hx, height]]))], max(1.0, 0.1 * k))
        top = height - (0.05 if hx else 0.0)
        box = np.array([[hx - 0.17, top - 1.0], [hx + 0.17, top - 1.0], [hx + 0.17, top], [hx - 0.17, top]])
        parts.append(Part.of("light_box").poly(billboard(cam, x, z, box)))
        lit = int(rng.integers(0, 3))
        c = billboard(cam, x, z, np.array([hx, top - 0.18 - 0.32 * lit]))
        parts.append(Part.of("light_lamp", lamp).ellipse(c[0], c[1], 0.11 * k, 0.11 * k))
    elif kind == "sign":
        border, face = sign_paints
        cy = height - 0.35
        shape = rng.integers(0, 3)
        if shape == 0:  # round
            c = billboard(cam, x, z, np.array([0.0, cy]))
            parts.append(Part.of("sign_border", border).ellipse(c[0], c[1], 0.36 * k, 0.36 * k))
            parts.append(Part.of("sign_face", face).ellipse(c[0], c[1], 0.25 * k, 0.25 * k))
        elif shape == 1:  # triangle
            tri = np.array([[-0.42, cy - 0.3], [0.42, cy - 0.3], [0.0, cy + 0.42]])
            parts.append(Part.of("sign_border", border).poly(billboard(cam, x, z, tri)))
            parts.append(Part.of("sign_face", face).poly(billboard(cam, x, z, tri * [0.6, 1] + [0, 0.06 * 0])))
        else:  # rectangle
            rect = np.array([[-0.35, cy - 0.3], [0.35, cy - 0.3], [0.35, cy + 0.3], [-0.35, cy + 0.3]])
            parts.append(Part.of("sign_face", border).poly(billboard(cam, x, z, rect)))
    else:  # street lamp: arm and head are pole, as in Cityscapes
        hx = toward_road * 1.2
        parts[0].lines([billboard(cam, x, z, np.array([[0.0, height - 0.3], [hx * 0.5, height], [hx, height]]))], max(1.0, 0.1 * k))
        head = np.array([[hx - 0.35, height - 0.15], [hx + 0.35, height - 0.15], [hx + 0.3, height + 0.05], [hx - 0.3, height + 0.05]])
        parts[0].poly(billboard(cam, x, z, head))
    return SceneObject("street", z, parts, f"pole_{kind}")


# --- structures along the building line -------------------------------------------------------
def building(cam: Camera, x0: float, x1: float, z0: float, z1: float, h: float, paint: np.ndarray,
             rng: np.random.Generator, sun: float) -> SceneObject:
    """A building block with a window grid on its visible side and front faces."""
    parts: list[Part] = []
    faces = cam.box_faces(x0, x1, 0.0, h, z0, z1)
    xs = _side_x(x0, x1)
    floor_h = rng.uniform(2.9, 3.6)
    win_w, win_h = rng.uniform(0.9, 1.6), rng.uniform(1.2, 1.7)
    pitch = win_w + rng.uniform(0.8, 2.0)
    floors = np.arange(1.0 if rng.random() < 0.5 else floor_h, h - 1.5, floor_h)
    if xs is not None:
        parts.append(Part.of("building", paint, side_shade(xs, sun)).poly(faces["side"]))
        zz = np.arange(max(z0, NEAR) + 0.6, z1 - win_w, pitch)
        zg, yg = np.meshgrid(zz, floors)
        rects = np.stack([zg.ravel(), zg.ravel() + win_w, yg.ravel() + 0.6, yg.ravel() + 0.6 + win_h], -1)
        if len(rects):
            # Skip windows that would be smaller than a pixel: they only add aliasing.
            keep = cam.scale(rects[:, 0]) * win_w > 0.7
            parts.append(Part.of("building_window").polys(cam.side_quads(xs, rects[keep])))
    parts.append(Part.of("building", paint, SHADE_FRONT).poly(faces["front"]))
    if cam.scale(z0) * win_w > 0.7:
        xx = np.arange(min(x0, x1) + 0.6, max(x0, x1) - win_w, pitch)
        xg, yg = np.meshgrid(xx, floors)
        rects = np.stack([xg.ravel(), xg.ravel() + win_w, yg.ravel() + 0.6, yg.ravel() + 0.6 + win_h], -1)
        if len(rects):
            parts.append(Part.of("building_window").polys(cam.front_quads(max(z0, NEAR), rects)))
    return SceneObject("backdrop", z0, parts, "building")


def wall(cam: Camera, x: float, z0: float, z1: float, h: float, paint: np.ndarray, sun: float,
         thickness: float = 0.3) -> SceneObject:
    parts: list[Part] = []
    _box(cam, parts, "wall", paint, sun, x - thickness / 2, x + thickness / 2, 0.0, h, z0, z1)
    return SceneObject("backdrop", z0, parts, "wall")


def fence(cam: Camera, x: float, z0: float, z1: float, h: float, paint: np.ndarray,
          layer: str = "backdrop") -> SceneObject:
    """A picket fence along Z at lateral ``x``: posts, rails and pickets on the plane X = x."""
    z0 = max(z0, NEAR)
    pickets = np.arange(z0, z1, 0.28)
    pickets = pickets[cam.scale(pickets) * 0.28 > 1.2]  # far pickets would merge into mush
    rects = [np.stack([pickets, pickets + 0.09, np.zeros_like(pickets), np.full_like(pickets, h)], -1)]
    rects.append(np.array([[z0, z1, h * 0.78, h * 0.86], [z0, z1, h * 0.25, h * 0.33]]))
    far = np.arange(z0, z1, 2.0)
    rects.append(np.stack([far, far + 0.12, np.zeros_like(far), np.full_like(far, h * 1.05)], -1))
    if len(pickets) == 0:  # seen from far away the fence reads as a dense lattice band
        rects.append(np.array([[max(z0, z1 - 0.01 * (z1 - z0)), z1, 0.0, h]]))
        rects.append(np.array([[z0, z1, 0.1 * h, 0.18 * h], [z0, z1, 0.5 * h, 0.58 * h]]))
    part = Part.of("fence", paint).polys(cam.side_quads(x, np.concatenate(rects)))
    return SceneObject(layer, z0, [part], "fence")
