"""Data: readers for GTA5, SYNTHIA and Cityscapes layouts, transforms, loaders
(docs/METHOD.md, "Data"; docs/DATA.md).

See ``docs/DATA.md`` for where to put the datasets. Items are dicts
``{"image": 3×H×W float in [0,1], "label": H×W int64 trainIds (255 = ignore), "name": str}``.
"""

from sci2i.data.datasets import (
    CityscapesDataset,
    ConcatSegDataset,
    GTA5Dataset,
    ImageFolderDataset,
    SynthiaDataset,
    pseudo_label_path,
)
from sci2i.data.robust import SkipBadSamples
from sci2i.data.transforms import EvalTransform, TrainTransform

__all__ = [
    "CityscapesDataset", "ConcatSegDataset", "GTA5Dataset", "ImageFolderDataset", "SynthiaDataset",
    "pseudo_label_path", "SkipBadSamples", "EvalTransform", "TrainTransform",
]
