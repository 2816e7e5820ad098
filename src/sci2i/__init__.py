"""sci2i: Semantically Consistent Image-to-Image Translation for Unsupervised Domain Adaptation.

Brehm, Scherer, Lienhart, ICAART 2022. Three phases (docs/METHOD.md):
(a) warm-up mean-teacher segmentation, (b) semantically consistent I2I translation,
(c) mean-teacher segmentation on source + translated + target images.
"""

__version__ = "0.1.0"
