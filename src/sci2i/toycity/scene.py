"""Scene grammar: a random street, laid out in world coordinates, as a ``Scene``.

Layout (camera at X = 0 looking down the street, right-hand traffic)::

    building line | setback | sidewalk | verge | [parking] road lanes [parking] | verge | sidewalk | setback | building line

Each side of the street is cut into segments along Z; a segment holds a building or a gap
(trees on terrain, a wall, a fence, an open plaza with a building set back). Street furniture
(trees, poles with lights, signs and lamps) stands along the kerb; vehicles use lanes and
parking strips; people use sidewalks and crossings. Counts and sizes come from the domain's
``DomainProfile``; a ``feature`` class name forces one instance of a rare class to be visible.
"""

from __future__ import annotations

import numpy as np

from sci2i.toycity import objects as obj
from sci2i.toycity.camera import FAR, NEAR, Camera
from sci2i.toycity.domains import DomainProfile
from sci2i.toycity.materials import (BUILDING_PAINTS, CAR_PAINTS, CLOTHES, LAMP_COLORS, SKIN,
                                     SOURCE_COLORS, MATERIAL_ID)
from sci2i.toycity.shapes import Part, Scene, SceneObject

#: Classes a source image may be asked to feature (cycled over images).
RARE_CLASSES = ("train", "bus", "truck", "motorcycle", "bicycle", "rider", "wall", "fence",
                "traffic light", "traffic sign", "terrain", "person")

LANE_WIDTH = 3.2
PARKING_WIDTH = 2.3


def _footprint(x0: float, x1: float, z0: float, z1: float) -> tuple[float, float, float]:
    inner = 0.0 if x0 < 0 < x1 else min(abs(x0), abs(x1))
    return (inner, z0, z1)


class _Builder:
    """Holds the per-image random state while the street is assembled."""

    def __init__(self, rng: np.random.Generator, p: DomainProfile, width: int, height: int,
                 feature: str | None):
        self.rng, self.p, self.feature = rng, p, feature
        u = self.u
        self.cam = Camera(width, height, focal=p.focal_frac * width,
                          horizon=u(p.horizon_frac) * height, cam_height=u(p.cam_height))
        self.sun = float(rng.choice([-1.0, 1.0]))
        self.shadow_len = u((0.3, 1.2))  # shadow length per metre of height
        self.objects: list[SceneObject] = []
        self.shadows: list[np.ndarray] = []

    # --- helpers -------------------------------------------------------------------------
    def u(self, r: tuple[float, float]) -> float:
        return float(self.rng.uniform(*r))

    def pois(self, mean: float) -> int:
        return int(self.rng.poisson(mean))

    def pick(self, palette: np.ndarray) -> np.ndarray:
        jitter = self.rng.uniform(0.88, 1.12, size=3)
        return np.clip(palette[self.rng.integers(len(palette))] * jitter, 0, 255).astype(np.float32)

    def jittered(self, material: str, amount: float = 0.1) -> np.ndarray:
        return np.clip(SOURCE_COLORS[MATERIAL_ID[material]] * self.rng.uniform(1 - amount, 1 + amount, 3), 0, 255)

    def scale(self) -> float:
        return self.u(self.p.object_scale)

    def add(self, o: SceneObject, footprint: tuple[float, float, float] | None = None) -> None:
        o.footprint = footprint
        self.objects.append(o)

    def ground(self, material: str, x0: float, x1: float, z0: float, z1: float, paint=None) -> None:
        quad = self.cam.ground_quads(np.array([min(x0, x1), max(x0, x1), max(z0, NEAR), z1]))
        self.objects.append(SceneObject("ground", 0.0, [Part.of(material, paint).poly(quad[0])], material))

    def shadow(self, x0: float, x1: float, z0: float, z1: float) -> None:
        self.shadows.append(self.cam.ground_quads(np.array([min(x0, x1), max(x0, x1), max(z0, NEAR), max(z1, NEAR + 0.01)]))[0])

    # --- layout --------------------------------------------------------------------------
    def build(self) -> Scene:
        p, rng, u, f = self.p, self.rng, self.u, self.feature
        cam = self.cam
        w, h = cam.width, cam.height
        sky = Part.of("sky", self.jittered("sky", 0.06)).poly(np.array([[-1, -1], [w + 1, -1], [w + 1, h + 1], [-1, h + 1]]))
        self.objects.append(SceneObject("sky", FAR, [sky], "sky"))
        self.ground("terrain", -400, 400, NEAR, FAR, self.jittered("terrain"))

        # Cross-section of the street, per side (+1 right, -1 left).
        self.z_end = u(p.street_length)
        lanes_right, lanes_left = u(p.road_right), u(p.road_left)
        n_lanes = max(1, int(round((lanes_right + lanes_left) / LANE_WIDTH)))
        lane_w = (lanes_right + lanes_left) / n_lanes
        self.lanes = [lanes_right - lane_w * (i + 0.5) for i in range(n_lanes)]
        self.lane_busy: dict[float, list[tuple[float, float]]] = {x: [] for x in self.lanes}
        self.sides: dict[int, dict[str, float]] = {}
        for d, lane_edge in ((1, lanes_right), (-1, -lanes_left)):
            parking = rng.random() < min(0.9, p.parked_cars / 3.0)
            edge = lane_edge + d * (PARKING_WIDTH if parking else 0.0)
            verge = u((0.8, 2.0)) if (rng.random() < p.p_verge or (f == "terrain" and d == 1)) else 0.0
            walk = u(p.sidewalk)
            self.sides[d] = dict(d=d, lane_edge=lane_edge, edge=edge, parking=parking, verge=verge,
                                 walk0=edge + d * verge, walk1=edge + d * (verge + walk),
                                 line=edge + d * (verge + walk + u(p.setback)))
        self._ground_layers()
        for d in (1, -1):
            self._building_line(self.sides[d])
        if rng.random() < p.p_street_end:
            x0, x1 = -120.0, 120.0
            self.add(obj.building(cam, x0, x1, self.z_end, self.z_end + 15, u(p.building_height), self.pick(BUILDING_PAINTS), rng, self.sun),
                     (0.0, self.z_end, self.z_end + 15))
        for d in (1, -1):
            self._kerb_furniture(self.sides[d])
        self._traffic()
        self._people()
        if p.ego_hood:
            bonnet = Part.of("ego_hood").ellipse(w / 2, h * u((1.18, 1.3)), w * 0.8, h * 0.3)
            self.objects.append(SceneObject("overlay", 0.0, [bonnet], "ego_hood"))
        return Scene(w, h, self.objects, self.shadows, self.sun, cam)

    def _ground_layers(self) -> None:
        rng, u = self.rng, self.u
        for side in self.sides.values():
            d = side["d"]
            outer = "sidewalk" if rng.random() < 0.5 else "terrain"
            self.ground(outer, side["walk1"], d * 400, NEAR, FAR, self.jittered(outer))
            self.ground("sidewalk", side["walk0"], side["walk1"], NEAR, FAR, self.jittered("sidewalk", 0.06))
            if side["verge"]:
                self.ground("terrain", side["edge"], side["walk0"], NEAR, FAR, self.jittered("terrain"))
        right, left = self.sides[1], self.sides[-1]
        self.ground("road", left["edge"], right["edge"], NEAR, FAR, self.jittered("road", 0.08))
        for side in self.sides.values():
            d = side["d"]
            self.ground("curb", side["edge"], side["edge"] + d * 0.2, NEAR, FAR)
        # Lane markings: dashed lane dividers, solid edge lines, sometimes a zebra crossing.
        marks = []
        for b in (np.array(self.lanes[:-1]) + np.diff(self.lanes) / 2 if len(self.lanes) > 1 else []):
            zs = np.arange(u((0, 9)), self.z_end + 40, 9.0)
            marks += [[b - 0.08, b + 0.08, z, z + 3.0] for z in zs]
        for side in self.sides.values():
            x = side["lane_edge"] - side["d"] * 0.25
            marks.append([x - 0.07, x + 0.07, NEAR, FAR])
        if rng.random() < 0.35:
            self.crossing_z = u((8, 30))
            xs = np.arange(left["edge"] + 0.3, right["edge"] - 0.5, 1.0)
            marks += [[x, x + 0.5, self.crossing_z, self.crossing_z + 3.5] for x in xs]
        else:
            self.crossing_z = None
        quads = self.cam.ground_quads(np.array(marks, dtype=np.float64))
        self.objects.append(SceneObject("ground", 0.0, [Part.of("road_marking", self.jittered("road_marking", 0.05)).polys(quads)], "marking"))

    def _building_line(self, side: dict[str, float]) -> None:
        """Buildings and gaps along one side, from behind the camera to the street's end."""
        p, rng, u, cam, sun = self.p, self.rng, self.u, self.cam, self.sun
        d, xb = side["d"], side["line"]
        z = u((-6.0, 2.0))
        first = True
        while z < self.z_end:
            length = min(u((9.0, 28.0)), self.z_end - z)
            z1 = z + length
            forced = self.feature if (first and d == 1 and self.feature in ("wall", "fence")) else None
            if forced is None and rng.random() < p.p_building:
                depth = u((10.0, 20.0))
                height = u(p.building_height)
                self.add(obj.building(cam, *sorted((xb, xb + d * depth)), z, z1, height, self.pick(BUILDING_PAINTS), rng, sun),
                         (abs(xb), z, z1))
                if d == -sun:  # buildings on the sun's side throw shadows over the street
                    self.shadow(xb, xb - d * height * self.shadow_len, z, z1)
            else:
                kind = forced or rng.choice(["trees", "wall", "fence", "open"], p=[0.35, 0.2, 0.2, 0.25])
                self.ground("terrain" if kind != "open" else "sidewalk", xb, xb + d * 60, z, z1,
                            self.jittered("terrain" if kind != "open" else "sidewalk"))
                if kind != "trees" and rng.random() < 0.7:  # a building set further back
                    xb2 = xb + d * u((8.0, 25.0))
                    self.add(obj.building(cam, *sorted((xb2, xb2 + d * 15)), z, z1, u(p.building_height), self.pick(BUILDING_PAINTS), rng, sun),
                             (abs(xb2), z, z1))
                if kind in ("trees", "fence") or rng.random() < 0.4:
                    for zt in np.arange(z + u((1.0, 4.0)), z1, u((4.0, 8.0))):
                        xt = xb + d * u((1.5, 6.0))
                        self.add(obj.tree(cam, xt, zt, rng, "backdrop", self.scale()), _footprint(xt - 2, xt + 2, zt - 1.5, zt + 1.5))
                xw = side["walk1"] + d * 0.2  # walls and fences close the sidewalk off
                if kind == "wall":
                    self.add(obj.wall(cam, xw, z, z1, u((1.2, 3.0)), self.jittered("wall", 0.15), sun), (abs(xw) - 0.15, z, z1))
                elif kind == "fence":
                    self.add(obj.fence(cam, xw, z, z1, u((1.2, 2.2)), self.jittered("fence", 0.2)), (abs(xw), z, z1))
                elif kind == "trees" and rng.random() < 0.5:
                    hx0, hx1 = sorted((xb, xb + d * 1.0))
                    self.add(obj.hedge(cam, hx0, hx1, z, z1, u((0.8, 1.6)), sun), (abs(xb), z, z1))
            z = z1 + u((0.0, 3.0))
            first = False

    def _kerb_furniture(self, side: dict[str, float]) -> None:
        """Trees and poles along the kerb."""
        p, rng, u, cam = self.p, self.rng, self.u, self.cam
        d = side["d"]
        if rng.random() < p.p_trees:
            xt = side["walk0"] + d * 0.8 if not side["verge"] else (side["edge"] + side["walk0"]) / 2
            for zt in np.arange(u((2.0, 10.0)), self.z_end, u(p.tree_spacing)):
                self.add(obj.tree(cam, xt, zt, rng, "street", self.scale()), _footprint(xt - 1, xt + 1, zt - 1, zt + 1))
        xp = side["walk0"] + d * 0.35
        zs = list(np.arange(u((3.0, 15.0)), self.z_end, u(p.pole_spacing)))
        kinds = [rng.choice(["light", "sign", "lamp"], p=[p.p_light, p.p_sign, 1 - p.p_light - p.p_sign]) for _ in zs]
        if d == 1 and self.feature in ("traffic light", "traffic sign"):
            zs.append(u((7.0, 16.0)))
            kinds.append("light" if self.feature == "traffic light" else "sign")
        for zp, kind in zip(zs, kinds):
            paints = (self.pick(np.array([(200, 34, 30), (30, 70, 170)], np.float32)),
                      self.pick(np.array([(236, 236, 226), (30, 70, 170), (240, 200, 40)], np.float32)))
            self.add(obj.pole(cam, xp, zp, rng, str(kind), d, paints, self.pick(LAMP_COLORS)), _footprint(xp - 0.1, xp + 0.1, zp - 0.1, zp + 0.1))

    def _free(self, lane: float, z0: float, z1: float) -> bool:
        return all(z1 + 1.5 < a or z0 > b + 1.5 for a, b in self.lane_busy[lane])

    def _place(self, lane: float, length: float, zr: tuple[float, float], tries: int = 6) -> float | None:
        for _ in range(tries):
            z = self.u(zr)
            if self._free(lane, z, z + length):
                self.lane_busy[lane].append((z, z + length))
                return z
        return None

    def _traffic(self) -> None:
        p, rng, u, cam, sun, f = self.p, self.rng, self.u, self.cam, self.sun, self.feature
        ego = min(self.lanes, key=abs)
        mid = (self.sides[1]["lane_edge"] + self.sides[-1]["lane_edge"]) / 2
        n = {k: self.pois(getattr(p, k)) for k in ("moving_cars", "trucks", "buses", "trains", "parked_cars")}
        for k, cls in (("trains", "train"), ("buses", "bus"), ("trucks", "truck")):
            if f == cls:
                n[k] = max(1, n[k])
        # Big vehicles first (they need the most room); featured ones close enough to see.
        for k, length in (("trains", 28.0), ("buses", 12.5), ("trucks", 9.5), ("moving_cars", 4.6)):
            for i in range(n[k]):
                s = self.scale()
                featured = i == 0 and f == {"trains": "train", "buses": "bus", "trucks": "truck"}.get(k)
                lane = ego if (k == "trains" or featured) else self.lanes[rng.integers(len(self.lanes))]
                zr = (10.0, 30.0) if featured else (7.0 if lane != ego else 10.0, 70.0)
                z = self._place(lane, length * s, zr)
                if z is None:
                    continue
                x = lane + u((-0.3, 0.3))
                if k == "trains":
                    o = obj.tram(cam, x, z, sun, s) if p.train_style == "tram" else \
                        obj.bus(cam, x, z, sun, s, cls="train", length=20.0, paint=self.jittered("bus_body", 0.06))
                elif k == "buses":
                    paint = self.jittered("bus_body", 0.06) if p.train_style == "tram" else self.pick(np.array([(40, 110, 170), (200, 50, 40)], np.float32))
                    o = obj.bus(cam, x, z, sun, s, paint=paint)
                elif k == "trucks":
                    o = obj.truck(cam, x, z, self.pick(CAR_PAINTS), sun, s)
                else:
                    o = obj.car(cam, x, z, self.pick(CAR_PAINTS), toward=lane < mid, sun=sun, s=s)
                w = {"trains": 2.65, "buses": 2.55, "trucks": 2.5}.get(k, 1.8) * s
                self.add(o, _footprint(x - w / 2, x + w / 2, z, z + length * s))
                self.shadow(x - w / 2 - 0.15 - 0.5 * sun, x + w / 2 + 0.15 - 0.5 * sun, z - 0.3, z + length * s + 0.3)
        # Parked cars and motorcycles in the parking strips.
        for side in self.sides.values():
            if not side["parking"]:
                continue
            d = side["d"]
            x = side["edge"] - d * PARKING_WIDTH / 2
            z = u((-2.0, 8.0))
            for _ in range(self.pois(p.parked_cars / 2 + 1)):
                s = self.scale()
                if rng.random() < 0.12:
                    self.add(obj.motorcycle(cam, x, z + 1.0, float(rng.choice([-1, 1])), self.pick(CAR_PAINTS), None, s),
                             _footprint(x - 0.3, x + 0.3, z + 1.0, z + 1.1))
                    z += 2.6 + u((0.3, 2.0))
                    continue
                self.add(obj.car(cam, x, z, self.pick(CAR_PAINTS), toward=bool(rng.random() < 0.3), sun=sun, s=s),
                         _footprint(x - 0.9 * s, x + 0.9 * s, z, z + 4.4 * s))
                self.shadow(x - 1.05 * s - 0.5 * sun, x + 1.05 * s - 0.5 * sun, z - 0.3, z + 4.7 * s)
                z += 4.4 * s + u((0.5, 6.0))

    def _people(self) -> None:
        p, rng, u, cam, f = self.p, self.rng, self.u, self.cam, self.feature
        right = self.sides[1]

        def clothes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return self.pick(CLOTHES), self.pick(CLOTHES), self.pick(SKIN)

        n_ped = self.pois(p.pedestrians) + (1 if f == "person" else 0)
        for i in range(n_ped):
            d = 1 if (rng.random() < 0.6 or f == "person") else -1
            side = self.sides[d]
            if self.crossing_z is not None and rng.random() < 0.25:
                x, z = u((self.sides[-1]["edge"], right["edge"])), self.crossing_z + u((0.3, 3.0))
            else:
                x, z = u(tuple(sorted((side["walk0"] + d * 0.4, side["walk1"] - d * 0.3)))), u((3.0, 45.0))
                if i == 0 and f == "person":
                    z = u((6.0, 14.0))
            self.add(obj.person(cam, x, z, rng, *clothes(), s=self.scale()), _footprint(x - 0.3, x + 0.3, z - 0.2, z + 0.2))
        # Riders on the road's right edge; parked bicycles and motorcycles on the sidewalk.
        riders = [("bicycle", self.pois(p.cyclists)), ("motorcycle", self.pois(p.motorcyclists))]
        if f in ("rider", "bicycle"):
            riders[0] = ("bicycle", max(1, riders[0][1]))
        if f == "motorcycle":
            riders[1] = ("motorcycle", max(1, riders[1][1]))
        for kind, count in riders:
            for i in range(count):
                x = self.sides[1]["edge"] - (PARKING_WIDTH if self.sides[1]["parking"] else 0.0) - u((0.5, 1.2))
                z = u((6.0, 14.0)) if (i == 0 and f in ("rider", "bicycle", "motorcycle")) else u((5.0, 50.0))
                make = obj.bicycle if kind == "bicycle" else obj.motorcycle
                self.add(make(cam, x, z, float(rng.choice([-1, 1])), self.pick(CAR_PAINTS if kind == "motorcycle" else CLOTHES), list(clothes()), self.scale()),
                         _footprint(x - 0.3, x + 0.3, z - 0.2, z + 0.2))
        for kind, count in (("bicycle", self.pois(p.parked_bicycles)), ("motorcycle", self.pois(p.parked_motorcycles))):
            for _ in range(count):
                d = 1 if rng.random() < 0.7 else -1
                side = self.sides[d]
                x, z = side["walk0"] + d * u((0.5, 1.2)), u((4.0, 35.0))
                make = obj.bicycle if kind == "bicycle" else obj.motorcycle
                self.add(make(cam, x, z, float(rng.choice([-1, 1])), self.pick(CLOTHES if kind == "bicycle" else CAR_PAINTS), None, self.scale()),
                         _footprint(x - 0.3, x + 0.3, z - 0.2, z + 0.2))


def build_scene(rng: np.random.Generator, profile: DomainProfile, width: int, height: int,
                feature: str | None = None) -> Scene:
    """Sample one street scene of the given domain (``feature``: a ``RARE_CLASSES`` entry)."""
    return _Builder(rng, profile, width, height, feature).build()
