"""Losses, one module per group of paper equations; all are pure functions of tensors.

* :mod:`sci2i.losses.segmentation` — softmax cross-entropy (Eqs. 1, 11) and the symmetric
  cross-entropy SCE of Wang et al. 2019 (Eq. 1, pseudo-label term), both ignoring label 255.
* :mod:`sci2i.losses.consistency` — the mean-teacher consistency loss L_FS,con (Eq. 12).
* :mod:`sci2i.losses.gan` — the (class-wise) GAN losses of the I2I phase (Eqs. 2-9).
"""
