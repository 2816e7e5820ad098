"""The objectives of D and G in the I2I phase (Eqs. 1, 7, 8, 9); pure functions of tensors.

Each combiner returns ``(total, {name: value})``; values stay tensors (no synchronisation),
the trainer converts them on logging steps only.

Paper -> code:

=======================================  =====================================================
paper                                     code
=======================================  =====================================================
L_seg, Eq. 1                               ``seg`` term of :func:`discriminator_loss`
CE(D_ac(G(x_s)), y_s) (= L^{D,seg} term 1)  ``seg_src`` (:func:`sci2i.losses.segmentation.cross_entropy`)
SCE(D_ac(x_t), ŷ_t)                        ``seg_pl`` (:func:`~sci2i.losses.segmentation.symmetric_cross_entropy`)
L^{D,gan}/HW, Eqs. 2, 4, 6                 ``gan`` of :func:`discriminator_loss`
L^D, Eq. 7                                 :func:`discriminator_loss` total
L^{G,seg} (first term of Eq. 1)            :func:`generator_seg_loss`, weight ``lambda_gseg``
L^{G,gan}/HW, Eqs. 3, 5, 6                 ``gan`` of :func:`generator_loss`
L^{G,id}/HW, Eq. 8                         :func:`identity_loss`, weight ``lambda_id``
L^G, Eq. 9                                 :func:`generator_loss` total
λ_pl, λ_cgan                               ``lambda_pl``, ``lambda_cgan``
|C|                                        ``num_classes`` = classes of the class set
=======================================  =====================================================

Normalisation ("/HW"): every term is a mean over pixels (and the images of the batch). The
segmentation terms are means over *labelled* pixels (255 is ignored), the convention of
:mod:`sci2i.losses.segmentation`; the GAN and identity terms are means over all pixels.

Class sets: D has one output channel per class of the run's data (Cityscapes' 19 for GTA5 /
SYNTHIA; a dataset file's own list otherwise). With SYNTHIA (``data.class_set=synthia16``)
the trainer first maps labels outside its 16 classes to 255 (:func:`restrict_labels`), so
the class-wise terms and the AC head's loss only see those 16 classes, and ``|C| = 16`` in
the ``λ_cgan/|C|`` factor of Eq. 6 — the number of classes that can receive class-wise
feedback, which keeps the class-wise term's scale the same for both benchmarks.

Ablations (Table 3) are values: ``gan_loss="sgan"``, ``lambda_cgan=0``, ``lambda_gseg=0``.
"""

from __future__ import annotations

from typing import Sequence

import torch

from sci2i.labels import IGNORE_INDEX, class_set_ids
from sci2i.losses.gan import (
    discriminator_classwise_gan,
    discriminator_domain_gan,
    gan_objective,
    generator_classwise_gan,
    generator_domain_gan,
    one_hot_labels,
)
from sci2i.losses.segmentation import cross_entropy, symmetric_cross_entropy
from sci2i.models.discriminator import DiscriminatorOutput

Losses = dict[str, torch.Tensor]


def restrict_labels(labels: torch.Tensor, class_ids: Sequence[int]) -> torch.Tensor:
    """Labels with every class outside ``class_ids`` set to 255 (ignore)."""
    if tuple(class_ids) == tuple(range(len(class_ids))):  # every class of the data: nothing to drop
        return labels
    keep = torch.zeros(256, dtype=torch.bool, device=labels.device)
    keep[list(class_ids)] = True
    lut_index = labels.long().clamp(0, 255)
    return torch.where(keep[lut_index], labels, torch.full_like(labels, IGNORE_INDEX))


def identity_loss(trg_recon: torch.Tensor, trg_image: torch.Tensor) -> torch.Tensor:
    """Eq. 8 / HW: ``mean_ij ‖G(x_t)_ij − x_t,ij‖_1`` (L1 norm over the RGB channels)."""
    return (trg_recon.float() - trg_image.float()).abs().sum(dim=1).mean()


def generator_seg_loss(fake_seg: torch.Tensor, src_label: torch.Tensor) -> torch.Tensor:
    """L^{G,seg}: the AC head's CE on the translated image, ``CE(D_ac(G(x_s)), y_s)``."""
    return cross_entropy(fake_seg, src_label)


def discriminator_loss(
    fake: DiscriminatorOutput,
    real: DiscriminatorOutput,
    src_label: torch.Tensor,
    trg_pseudo: torch.Tensor,
    *,
    lambda_pl: float,
    lambda_cgan: float,
    num_classes: int,
    gan_loss: str = "lsgan",
) -> tuple[torch.Tensor, Losses]:
    """Eq. 7: ``L^D = (L^{D,seg} + L^{D,gan}) / HW``.

    ``fake`` = D(G(x_s)) (with G(x_s) detached: D's objective never trains G), ``real`` =
    D(x_t); ``src_label`` = y_s and ``trg_pseudo`` = ŷ_t, (N, H, W) trainIds with 255.
    L^{D,seg} is Eq. 1 (CE on the translated source + λ_pl · SCE on the pseudo labels).
    """
    seg_src = cross_entropy(fake.seg, src_label)
    seg_pl = symmetric_cross_entropy(real.seg, trg_pseudo)
    seg = seg_src + lambda_pl * seg_pl
    channels = fake.classwise.shape[1]
    src_onehot = one_hot_labels(src_label, channels)
    trg_onehot = one_hot_labels(trg_pseudo, channels)
    domain = discriminator_domain_gan(fake.domain, real.domain, gan_loss)
    classwise = discriminator_classwise_gan(fake.classwise, real.classwise, src_onehot, trg_onehot, gan_loss)
    gan = gan_objective(domain, classwise, lambda_cgan, num_classes)
    total = seg + gan
    return total, {
        "total": total, "seg": seg, "seg_src": seg_src, "seg_pl": seg_pl, "gan": gan,
        "gan_domain": domain.mean(), "gan_classwise": classwise.sum(dim=1).mean(),
    }


def generator_loss(
    fake: DiscriminatorOutput,
    src_label: torch.Tensor,
    trg_recon: torch.Tensor,
    trg_image: torch.Tensor,
    *,
    lambda_gseg: float,
    lambda_cgan: float,
    lambda_id: float,
    num_classes: int,
    gan_loss: str = "lsgan",
) -> tuple[torch.Tensor, Losses]:
    """Eq. 9: ``L^G = (λ_gseg·L^{G,seg} + L^{G,gan} + λ_id·L^{G,id}) / HW``.

    ``fake`` = D(G(x_s)) attached to G's graph; ``trg_recon`` = G(x_t), ``trg_image`` = x_t.
    The paper's weights are λ_gseg = λ_id = 1; ``lambda_gseg=0`` is the "w/o L_G,seg" ablation.
    """
    seg = generator_seg_loss(fake.seg, src_label)
    channels = fake.classwise.shape[1]
    src_onehot = one_hot_labels(src_label, channels)
    domain = generator_domain_gan(fake.domain, gan_loss)
    classwise = generator_classwise_gan(fake.classwise, src_onehot, gan_loss)
    gan = gan_objective(domain, classwise, lambda_cgan, num_classes)
    ident = identity_loss(trg_recon, trg_image)
    total = lambda_gseg * seg + gan + lambda_id * ident
    return total, {
        "total": total, "seg": seg, "gan": gan, "gan_domain": domain.mean(),
        "gan_classwise": classwise.sum(dim=1).mean(), "id": ident,
    }
