"""Cross-domain ClassMix of the consistency input (optional, ``seg.con_mix=classmix``).

Not in the paper. Eq. 12 compares the teacher on x_t with the student on a photometric
perturbation P(x_t). With a weak teacher, that self-training drifts towards the classes the
teacher already predicts often on the target, and the small classes fade out of the
student's target predictions (docs/RESULTS.md, issue 4). Cross-domain ClassMix (DACS,
Tranheden et al., WACV 2021; ClassMix, Olsson et al., WACV 2021) keeps them in the target
context: for each target image, about half of the classes of a source image (each class of its
label map with probability 1/2) are pasted onto it, and the consistency target is the source
label on the pasted pixels and the teacher's prediction elsewhere:

    M      = [y_s ∈ C_sel]                       (C_sel: the chosen classes of y_s)
    x_mix  = M·x_s + (1 − M)·x_t                 (the student sees P(x_mix))
    target = M·onehot(y_s) + (1 − M)·σ(F_T(x_t))

so Eq. 12 becomes ``‖target − σ(F_S(P(x_mix)))‖²`` (or the hard-label CE with
``seg.con_loss=ce``, DACS's form). The teacher still sees the clean, unmixed x_t, so
distribution alignment (``seg.con_align``) and its statistics are unchanged.

Code: ``mask`` = M, :func:`mix_images` = x_mix, :func:`mix_teacher_logits` = the target in
logit form: the source label as logits (0 at the label, :data:`LABEL_LOGIT_OFF` elsewhere,
whose softmax is exactly one-hot in float32 and float16), so the consistency losses, the
confidence mask and the class balance take the mixed target unchanged (a pasted pixel counts
as fully confident). The class choice draws from torch's global RNG on the labels' device
(seeded and saved in checkpoints, as the perturbation's), with no host synchronisation.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from sci2i.labels import class_index_with_extra_bin

#: Logit of the classes other than the label in a label-as-logits map: exp(-1e4) is 0 in
#: every float type, and -1e4 is finite in float16 (no inf - inf in a softmax).
LABEL_LOGIT_OFF = -1.0e4


def class_mix_mask(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, H, W) bool: pixels of the classes chosen in each label map (each with prob. 1/2).

    Ignored pixels (any id outside ``[0, num_classes)``, e.g. 255) are never chosen, so the
    consistency target on them stays the teacher's.
    """
    n = labels.shape[0]
    chosen = torch.rand(n, num_classes + 1, device=labels.device) < 0.5
    chosen[:, num_classes] = False  # the bin of ignored pixels
    idx = class_index_with_extra_bin(labels.reshape(n, -1), num_classes)
    return chosen.gather(1, idx).view_as(labels)


def _pair(src: torch.Tensor, n: int) -> torch.Tensor:
    """The first ``n`` source items, cycling when the source batch is smaller."""
    if src.shape[0] >= n:
        return src[:n]
    reps = -(-n // src.shape[0])
    return src.repeat(reps, *([1] * (src.dim() - 1)))[:n]


def paired_source(src_images: torch.Tensor, src_labels: torch.Tensor, n: int):
    """(images, labels) of the source items pasted onto the ``n`` target images (i-th on i-th)."""
    if src_images.shape[-2:] != src_labels.shape[-2:]:
        raise ValueError(f"source images {tuple(src_images.shape)} and labels "
                         f"{tuple(src_labels.shape)} differ in size")
    return _pair(src_images, n), _pair(src_labels, n)


class ClassMix(NamedTuple):
    """One ClassMix draw: where the source pixels are pasted (``mask``, N×H×W bool) and the
    source labels they carry (``labels``, N×H×W trainIds)."""

    mask: torch.Tensor
    labels: torch.Tensor


def mix_images(mask: torch.Tensor, src_images: torch.Tensor, trg_images: torch.Tensor) -> torch.Tensor:
    """x_mix = M·x_s + (1 − M)·x_t for (N, 3, H, W) images and an (N, H, W) mask."""
    if src_images.shape != trg_images.shape:
        raise ValueError(f"ClassMix needs source and target crops of one size; got "
                         f"{tuple(src_images.shape)} and {tuple(trg_images.shape)} (data.crop_size "
                         f"sets both)")
    return torch.where(mask.unsqueeze(1), src_images, trg_images)


def mix_teacher_logits(mask: torch.Tensor, src_labels: torch.Tensor,
                       teacher_logits: torch.Tensor) -> torch.Tensor:
    """The consistency target as logits: y_s (one-hot) on the mask, F_T(x_t) elsewhere."""
    num_classes = teacher_logits.shape[1]
    idx = src_labels.long().clamp(0, num_classes - 1).unsqueeze(1)
    label_logits = torch.full_like(teacher_logits, LABEL_LOGIT_OFF).scatter_(1, idx, 0.0)
    return torch.where(mask.unsqueeze(1), label_logits, teacher_logits)
