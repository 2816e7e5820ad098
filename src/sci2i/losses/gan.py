"""GAN losses of the I2I phase, per pixel (Eqs. 2-6); pure functions of tensors.

The distance ``m(a, b)`` of the paper is chosen by ``cfg.i2i.gan_loss``:

* ``"lsgan"`` (paper default): ``m(a, b) = (a − b)²`` on the raw head output (LSGAN);
* ``"sgan"`` (ablation, Table 3): ``m(a, b) = BCE(σ(a), b)``, binary cross-entropy with logits.

Targets: 0 = fake (translated source ``G(x_s)``, and the synthetic labels ``y_s``),
1 = real (target ``x_t``, and the pseudo labels ``ŷ_t``).

Paper -> code (per-pixel maps; ``fake_*`` = D on G(x_s), ``real_*`` = D on x_t):

====================  ===========================================  ==================
paper                  code                                         shape
====================  ===========================================  ==================
m(a, b)                :func:`gan_distance`                          like ``a``
L^{D,dgan}_ij  Eq. 2   :func:`discriminator_domain_gan`              (N, H, W)
L^{G,dgan}_ij  Eq. 3   :func:`generator_domain_gan`                  (N, H, W)
L^{D,cgan}_ijc Eq. 4   :func:`discriminator_classwise_gan`           (N, C, H, W)
L^{G,cgan}_ijc Eq. 5   :func:`generator_classwise_gan`               (N, C, H, W)
L^{·,gan} / HW Eq. 6   :func:`gan_objective`                         scalar
y_ijc (one-hot)        :func:`one_hot_labels`                        (N, C, H, W)
====================  ===========================================  ==================

Eq. 6 sums over pixels; Eq. 7/9 then divide by HW, so :func:`gan_objective` returns the
pixel mean directly (and the mean over the images of a batch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


GAN_LOSSES = ("lsgan", "sgan")
FAKE, REAL = 0.0, 1.0


def gan_distance(output: torch.Tensor, target: float, kind: str = "lsgan") -> torch.Tensor:
    """``m(output, target)`` element-wise: squared error (LSGAN) or BCE with logits (SGAN)."""
    output = output.float()
    if kind == "lsgan":
        return (output - target).pow(2)
    if kind == "sgan":
        return F.binary_cross_entropy_with_logits(output, torch.full_like(output, target), reduction="none")
    raise ValueError(f"gan_loss must be one of {GAN_LOSSES}, got {kind!r}")


def one_hot_labels(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Integer labels (N, H, W) -> float one-hot (N, C, H, W) with C = ``num_classes``.

    Pixels labelled 255 (ignore), or with any value outside 0..C-1, get an all-zero row, so
    they contribute nothing to Eqs. 4-5. (No value checks: no host synchronisation.)
    """
    labels = labels.long()
    valid = (labels >= 0) & (labels < num_classes)
    safe = torch.where(valid, labels, torch.zeros_like(labels))
    onehot = F.one_hot(safe, num_classes).permute(0, 3, 1, 2).to(torch.float32)
    return onehot * valid.unsqueeze(1)


def discriminator_domain_gan(fake_domain: torch.Tensor, real_domain: torch.Tensor,
                             kind: str = "lsgan") -> torch.Tensor:
    """Eq. 2: ``L^{D,dgan}_ij = m(D(G(x_s))_ij, 0) + m(D(x_t)_ij, 1)``, per pixel (N, H, W)."""
    return gan_distance(fake_domain, FAKE, kind) + gan_distance(real_domain, REAL, kind)


def generator_domain_gan(fake_domain: torch.Tensor, kind: str = "lsgan") -> torch.Tensor:
    """Eq. 3: ``L^{G,dgan}_ij = m(D(G(x_s))_ij, 1)``, per pixel (N, H, W)."""
    return gan_distance(fake_domain, REAL, kind)


def discriminator_classwise_gan(fake_classwise: torch.Tensor, real_classwise: torch.Tensor,
                                src_onehot: torch.Tensor, trg_onehot: torch.Tensor,
                                kind: str = "lsgan") -> torch.Tensor:
    """Eq. 4: ``L^{D,cgan}_ijc = m(D_c(G(x_s))_ijc, 0)·y_s,ijc + m(D_c(x_t)_ijc, 1)·ŷ_t,ijc``.

    Feedback only where the pixel belongs to class c: synthetic labels ``y_s`` mark "fake",
    pseudo labels ``ŷ_t`` mark "real". All maps (N, C, H, W); one-hot masks from
    :func:`one_hot_labels` (ignored pixels are all-zero rows and contribute nothing).
    """
    return (gan_distance(fake_classwise, FAKE, kind) * src_onehot
            + gan_distance(real_classwise, REAL, kind) * trg_onehot)


def generator_classwise_gan(fake_classwise: torch.Tensor, src_onehot: torch.Tensor,
                            kind: str = "lsgan") -> torch.Tensor:
    """Eq. 5: ``L^{G,cgan}_ijc = m(D_c(G(x_s))_ijc, 1)·y_s,ijc``, (N, C, H, W)."""
    return gan_distance(fake_classwise, REAL, kind) * src_onehot


def gan_objective(domain_map: torch.Tensor, classwise_map: torch.Tensor,
                  lambda_cgan: float, num_classes: int) -> torch.Tensor:
    """Eq. 6 divided by HW: ``mean_ij ( L^{dgan}_ij + λ_cgan/|C| · Σ_c L^{cgan}_ijc )``.

    ``num_classes`` is |C| of the class set (19 for GTA5, 16 for SYNTHIA), not the number of
    output channels. Averaged over the images of the batch too.
    """
    if num_classes <= 0:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    per_pixel = domain_map + (lambda_cgan / num_classes) * classwise_map.sum(dim=1)
    return per_pixel.mean()
