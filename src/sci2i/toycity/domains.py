"""The two domains' *content*: camera, street layout and object statistics.

Appearance (flat colours vs photographic texture) is the renderers' job; this module holds
the content shift between the game-like source and the photographed target, as between GTA5
and Cityscapes: a lower camera and a different horizon, other class frequencies (more trucks,
buses and free-standing terrain in the source; more pedestrians, bicycles, parked cars, trees
and poles in the target), slightly different object sizes, an ego-vehicle bonnet in the
target, and one class-definition clash: target trains are trams built like the source's buses.
"""

from __future__ import annotations

from dataclasses import dataclass

Range = tuple[float, float]


@dataclass(frozen=True)
class DomainProfile:
    """Content statistics of one domain (ranges are sampled uniformly per image)."""

    name: str
    horizon_frac: Range  # horizon row / image height
    cam_height: Range  # metres
    focal_frac: float  # focal length / image width
    road_right: Range  # ego lane's right road edge (m right of the camera)
    road_left: Range  # left road edge (m left of the camera)
    sidewalk: Range  # sidewalk width (m)
    setback: Range  # sidewalk edge -> building line (m), filled with terrain or pavement
    p_verge: float  # probability of a terrain strip between road and sidewalk (per side)
    p_building: float  # probability that a street segment holds a building
    building_height: Range
    street_length: Range  # depth of the street's end (m)
    p_street_end: float  # probability of a cross building closing the street
    tree_spacing: Range  # spacing of sidewalk trees (m); sides get trees with p_trees
    p_trees: float
    pole_spacing: Range
    p_light: float  # share of poles that carry traffic lights
    p_sign: float  # share of poles that carry signs (the rest are street lamps)
    # Poisson means per image.
    moving_cars: float
    parked_cars: float
    trucks: float
    buses: float
    trains: float
    pedestrians: float
    cyclists: float
    motorcyclists: float
    parked_bicycles: float
    parked_motorcycles: float
    object_scale: Range  # multiplies vehicle and person sizes
    train_style: str  # "tram" (source) or "bus_like" (target: trams shaped like buses)
    ego_hood: bool  # bonnet of the recording car at the bottom (labelId 1, ignored)
    # Guarantee each rare class in turn (keeps all 19 classes present in small generations).
    feature_rare_classes: bool


SOURCE = DomainProfile(
    name="source",
    horizon_frac=(0.44, 0.52), cam_height=(1.05, 1.35), focal_frac=0.78,
    road_right=(1.8, 3.2), road_left=(4.5, 9.5), sidewalk=(2.5, 4.5), setback=(0.0, 5.0),
    p_verge=0.45, p_building=0.62, building_height=(7.0, 30.0), street_length=(70.0, 160.0),
    p_street_end=0.5, tree_spacing=(9.0, 18.0), p_trees=0.45, pole_spacing=(12.0, 30.0),
    p_light=0.4, p_sign=0.35,
    moving_cars=3.0, parked_cars=2.0, trucks=1.0, buses=0.55, trains=0.35, pedestrians=3.0,
    cyclists=0.6, motorcyclists=0.7, parked_bicycles=0.4, parked_motorcycles=0.6,
    object_scale=(1.0, 1.12), train_style="tram", ego_hood=False, feature_rare_classes=True,
)

TARGET = DomainProfile(
    name="target",
    horizon_frac=(0.36, 0.43), cam_height=(1.4, 1.75), focal_frac=0.85,
    road_right=(1.6, 2.6), road_left=(3.5, 7.0), sidewalk=(3.0, 5.5), setback=(0.0, 2.0),
    p_verge=0.25, p_building=0.78, building_height=(9.0, 24.0), street_length=(60.0, 130.0),
    p_street_end=0.75, tree_spacing=(7.0, 12.0), p_trees=0.7, pole_spacing=(8.0, 20.0),
    p_light=0.3, p_sign=0.45,
    moving_cars=2.0, parked_cars=5.0, trucks=0.3, buses=0.25, trains=0.2, pedestrians=6.0,
    cyclists=1.2, motorcyclists=0.25, parked_bicycles=1.6, parked_motorcycles=0.3,
    object_scale=(0.9, 1.0), train_style="bus_like", ego_hood=True, feature_rare_classes=False,
)

PROFILES = {"source": SOURCE, "target": TARGET}
