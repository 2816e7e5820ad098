"""Materials: the unit of appearance shared by the two renderers.

A *material* is one kind of surface ("car_body", "car_window", "road_marking", ...). Each
belongs to exactly one Cityscapes class (its ``label_id``), so the label of a pixel follows
from the material drawn there. The source renderer paints a material with a flat base colour
(``SOURCE_COLORS``, jittered per instance); the target renderer fills it with photographic
texture (``sci2i.toycity.textures``).

Several materials share a class on purpose: a car is body, windows, wheels and lights, all
labelled car, as in GTA5 and Cityscapes.
"""

from __future__ import annotations

import numpy as np

from sci2i.labels import TRAIN_ID_TO_LABEL_ID

# Cityscapes labelIds by name (cityscapesscripts.helpers.labels); checked against labels.py below.
LID = {
    "ego vehicle": 1, "road": 7, "sidewalk": 8, "building": 11, "wall": 12, "fence": 13,
    "pole": 17, "traffic light": 19, "traffic sign": 20, "vegetation": 21, "terrain": 22,
    "sky": 23, "person": 24, "rider": 25, "car": 26, "truck": 27, "bus": 28, "train": 31,
    "motorcycle": 32, "bicycle": 33,
}

#: material -> (Cityscapes class name, source base colour RGB)
_TABLE: dict[str, tuple[str, tuple[int, int, int]]] = {
    "sky": ("sky", (128, 176, 228)),
    "road": ("road", (78, 78, 84)),
    "road_marking": ("road", (226, 226, 214)),
    "sidewalk": ("sidewalk", (152, 142, 136)),
    "curb": ("sidewalk", (186, 182, 176)),
    "building": ("building", (168, 128, 98)),
    "building_window": ("building", (62, 78, 98)),
    "wall": ("wall", (190, 184, 166)),
    "fence": ("fence", (126, 102, 76)),
    "pole": ("pole", (98, 98, 104)),
    "light_box": ("traffic light", (34, 36, 34)),
    "light_lamp": ("traffic light", (226, 70, 40)),
    "sign_face": ("traffic sign", (236, 236, 226)),
    "sign_border": ("traffic sign", (200, 34, 30)),
    "vegetation": ("vegetation", (66, 124, 52)),
    "trunk": ("vegetation", (92, 68, 46)),
    "terrain": ("terrain", (150, 164, 94)),
    "person_head": ("person", (222, 182, 150)),
    "person_top": ("person", (60, 90, 150)),
    "person_bottom": ("person", (50, 50, 62)),
    "rider_head": ("rider", (222, 182, 150)),
    "rider_top": ("rider", (170, 60, 40)),
    "rider_bottom": ("rider", (44, 44, 56)),
    "car_body": ("car", (180, 40, 36)),
    "car_window": ("car", (42, 52, 64)),
    "car_wheel": ("car", (26, 26, 28)),
    "car_light": ("car", (214, 40, 34)),
    "truck_body": ("truck", (214, 214, 208)),
    "truck_cab": ("truck", (40, 84, 150)),
    "truck_window": ("truck", (44, 54, 66)),
    "truck_wheel": ("truck", (26, 26, 28)),
    "bus_body": ("bus", (218, 176, 48)),
    "bus_window": ("bus", (40, 50, 62)),
    "bus_wheel": ("bus", (26, 26, 28)),
    "train_body": ("train", (232, 234, 238)),
    "train_stripe": ("train", (196, 32, 46)),
    "train_window": ("train", (36, 46, 60)),
    "train_pantograph": ("train", (70, 70, 76)),
    "motorcycle_body": ("motorcycle", (40, 44, 120)),
    "motorcycle_wheel": ("motorcycle", (24, 24, 26)),
    "bicycle_frame": ("bicycle", (30, 140, 150)),
    "bicycle_wheel": ("bicycle", (28, 28, 30)),
    "ego_hood": ("ego vehicle", (40, 42, 48)),
}

#: Material names; a material's integer id is its index here.
MATERIALS: tuple[str, ...] = tuple(_TABLE)
MATERIAL_ID: dict[str, int] = {m: i for i, m in enumerate(MATERIALS)}
#: Cityscapes labelId of each material id.
MATERIAL_LABEL_ID = np.array([LID[_TABLE[m][0]] for m in MATERIALS], dtype=np.uint8)
#: Source (flat) base colour of each material id, float RGB in [0, 255].
SOURCE_COLORS = np.array([_TABLE[m][1] for m in MATERIALS], dtype=np.float32)

assert set(TRAIN_ID_TO_LABEL_ID) <= set(LID.values()), "a Cityscapes train class has no material"

# Instance colour palettes (RGB): the per-instance "paint" of objects that come in many colours.
CAR_PAINTS = np.array(
    [(190, 34, 30), (34, 62, 150), (222, 222, 222), (40, 40, 44), (150, 150, 156), (24, 92, 54),
     (226, 196, 44), (120, 32, 34), (92, 112, 132), (200, 110, 40)], dtype=np.float32)
BUILDING_PAINTS = np.array(
    [(172, 130, 100), (194, 174, 142), (152, 152, 150), (124, 84, 72), (204, 194, 172),
     (142, 112, 92), (112, 116, 126), (186, 150, 120)], dtype=np.float32)
CLOTHES = np.array(
    [(60, 90, 150), (170, 60, 40), (40, 40, 46), (210, 210, 200), (120, 120, 124), (50, 110, 70),
     (200, 170, 60), (110, 70, 120), (150, 110, 80), (30, 60, 100)], dtype=np.float32)
SKIN = np.array([(232, 194, 164), (198, 150, 116), (140, 98, 70), (96, 66, 48)], dtype=np.float32)
LAMP_COLORS = np.array([(226, 60, 40), (236, 180, 40), (60, 210, 90)], dtype=np.float32)
