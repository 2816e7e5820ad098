"""Mean-teacher consistency loss L_FS,con (Eq. 12).

``L_FS,con = ‖σ(F_T(x_t)) − σ(F_S(P(x_t)))‖²`` with σ the softmax over classes, F_T the EMA
teacher on the clean target image, F_S the student on its perturbed version P(x_t).

Code: ``teacher_logits`` = F_T(x_t), ``student_logits`` = F_S(P(x_t)). The squared L2 distance
of the two class distributions is summed over classes and averaged over pixels (and images),
so a pixel contributes a value in [0, 2]. The teacher's probabilities are a target: no
gradient flows into them.

:func:`confident_pixels` is an optional restriction that Eq. 12 does not have (``seg.con_threshold``,
0 = off): the mean is then taken over the pixels where the teacher's top class probability
reaches a threshold, as in French et al.'s self-ensembling for domain adaptation (ICLR 2018).

``kind`` chooses the per-pixel distance: ``"mse"`` is Eq. 12; ``"ce"`` (``seg.con_loss=ce``,
not in the paper) is the cross-entropy of the student's softmax at the teacher's argmax class,
i.e. the teacher's prediction used as a hard label ("the teacher's prediction serves as a label
for the student", Sec. 3.3), the usual form of mean-teacher self-training in later UDA work
(e.g. DACS, Tranheden et al. 2021). Its gradient does not vanish where the student is wrong
with confidence, which the squared distance of two probability vectors does.
"""

from __future__ import annotations

import torch

from sci2i.config.schema import CON_LOSSES


def _teacher_probs_and_distance(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                                kind: str = "mse"):
    """(teacher softmax, per-pixel distance), both float.

    ``mse``: Σ_c (softmax(teacher)_c − softmax(student)_c)² (Eq. 12); ``ce``:
    −log softmax(student)_k with k the teacher's argmax.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student {tuple(student_logits.shape)} and teacher "
                         f"{tuple(teacher_logits.shape)} logits must have the same shape")
    p_teacher = teacher_logits.detach().float().softmax(dim=1)
    if kind == "mse":
        return p_teacher, (p_teacher - student_logits.float().softmax(dim=1)).pow(2).sum(dim=1)
    if kind == "ce":
        log_p_student = student_logits.float().log_softmax(dim=1)
        return p_teacher, -log_p_student.gather(1, p_teacher.argmax(dim=1, keepdim=True)).squeeze(1)
    raise ValueError(f"consistency kind must be one of {CON_LOSSES}; got {kind!r}")


def consistency_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                     valid: torch.Tensor | None = None, kind: str = "mse") -> torch.Tensor:
    """Mean over pixels of Σ_c (softmax(teacher)_c − softmax(student)_c)², Eq. 12.

    ``valid`` (N, H, W) bool optionally restricts the mean to some pixels (e.g. padding);
    ``kind="ce"`` uses the hard-label cross-entropy instead (module docstring).
    """
    _, per_pixel = _teacher_probs_and_distance(student_logits, teacher_logits, kind)
    if valid is None:
        return per_pixel.mean()
    return (per_pixel * valid).sum() / valid.sum().clamp(min=1)


def class_balanced_consistency_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                                    valid: torch.Tensor | None = None, kind: str = "mse") -> torch.Tensor:
    """Eq. 12's per-pixel distance, averaged per teacher class, then over the classes present.

    Each class c that the teacher predicts (argmax) on some valid pixel of the batch gets the
    mean distance over its pixels; the loss is the mean of these class means. With the plain
    pixel mean, the few large classes (road, building, sky) set the target and self-training
    drifts the small ones towards them; here each predicted class weighs the same.
    """
    p_teacher, per_pixel = _teacher_probs_and_distance(student_logits, teacher_logits, kind)
    num_classes = p_teacher.shape[1]
    cls = p_teacher.argmax(dim=1)
    weight = torch.ones_like(per_pixel) if valid is None else valid.to(per_pixel.dtype)
    sums = per_pixel.new_zeros(num_classes).index_add_(0, cls.flatten(), (per_pixel * weight).flatten())
    counts = per_pixel.new_zeros(num_classes).index_add_(0, cls.flatten(), weight.flatten())
    # absent classes have sum 0 and add nothing; no class present gives 0 (no host sync)
    return (sums / counts.clamp(min=1)).sum() / (counts > 0).sum().clamp(min=1)


def confident_pixels(teacher_logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """(N, H, W) bool: the teacher's top softmax probability is at least ``threshold``."""
    return teacher_logits.detach().float().softmax(dim=1).amax(dim=1) >= threshold
