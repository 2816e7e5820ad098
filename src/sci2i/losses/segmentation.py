"""Supervised segmentation losses (L_seg of Eqs. 1 and 11), ignoring label 255.

Paper -> code: ``L_seg`` (softmax cross-entropy) -> :func:`cross_entropy`; ``SCE`` (Eq. 1,
the pseudo-label term ``λ_pl · SCE(D_ac(x_t), ŷ_t)``) -> :func:`symmetric_cross_entropy`;
``L_FS,seg`` (Eq. 11, ``CE(F_S(x_s), y_s) + CE(F_S(G(x_s)), y_s)``) ->
:func:`source_cross_entropy` (docs/METHOD.md, "Phases (a) and (c)").

Both take ``logits`` (N, C, H, W) and integer ``target`` (N, H, W) with ``ignore_index``
(255) marking pixels that contribute nothing, and return the mean over the valid pixels of
the whole batch (0, still attached to the graph, when no pixel is valid — instead of the NaN
``F.cross_entropy`` returns then).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from sci2i.labels import IGNORE_INDEX

#: Wang et al. 2019 weights: SCE = α·CE + β·RCE. α = 0.1, β = 1.0 is their setting for
#: CIFAR-10 and the one ProDA (Zhang et al. 2021) uses for segmentation pseudo labels.
SCE_ALPHA = 0.1
SCE_BETA = 1.0
#: log 0 := A in RCE (Wang et al. 2019 use A = -4).
SCE_LOG_ZERO = -4.0


def _check(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.dim() != 4 or target.dim() != 3 or logits.shape[0] != target.shape[0] \
            or logits.shape[2:] != target.shape[1:]:
        raise ValueError(
            f"expected logits (N, C, H, W) and target (N, H, W) of the same size; got "
            f"{tuple(logits.shape)} and {tuple(target.shape)}"
        )


def cross_entropy(logits: torch.Tensor, target: torch.Tensor,
                  ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Softmax cross-entropy ``CE = −log softmax(logits)_y``, mean over valid pixels."""
    _check(logits, target)
    total = F.cross_entropy(logits.float(), target.long(), ignore_index=ignore_index, reduction="sum")
    count = (target != ignore_index).sum()
    return total / count.clamp(min=1)


def source_cross_entropy(logits: torch.Tensor, target: torch.Tensor,
                         set_sizes: Optional[Sequence[int]] = None,
                         num_sets: Optional[int] = None,
                         ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """L_FS,seg of Eq. 11: ``Σ_k CE(F_S(X_k), y_s)``, one :func:`cross_entropy` per image set.

    ``logits``/``target`` hold the sets one after another along the batch, ``set_sizes[k]``
    images of set k (phase c: x_s then G(x_s); ``None`` = one set, phase a). Each set's CE is
    the mean over its own valid pixels, and the means are added, as Eq. 11 writes it: the
    images of a set with fewer valid pixels weigh as much as those of the other set.

    A step whose batch leaves a set out (``set_sizes[k] = 0``; at an odd batch size the 50/50
    split alternates between steps) estimates the absent set's CE by the present ones': the
    sum over the present sets is scaled by ``num_sets / present`` (``num_sets`` = the sets of
    the phase, default: those present), so that the expectation over steps is Eq. 11 at every
    batch size.
    """
    sizes = [logits.shape[0]] if set_sizes is None else [int(n) for n in set_sizes]
    if sum(sizes) != logits.shape[0] or min(sizes) < 0:
        raise ValueError(f"set sizes {sizes} do not split a batch of {logits.shape[0]} images")
    parts = [(lg, tg) for lg, tg, n in zip(logits.split(sizes), target.split(sizes), sizes) if n > 0]
    if not parts:
        raise ValueError("source_cross_entropy needs at least one image")
    total = sum(cross_entropy(lg, tg, ignore_index) for lg, tg in parts)
    present = len(parts)
    return total * ((num_sets or present) / present)


def reverse_cross_entropy(logits: torch.Tensor, target: torch.Tensor,
                          ignore_index: int = IGNORE_INDEX,
                          log_zero: float = SCE_LOG_ZERO) -> torch.Tensor:
    """RCE = −Σ_k p_k log q_k with p = softmax(logits), q = one-hot(target), log 0 := A.

    For a one-hot q this is ``−A · (1 − p_y)``: bounded in [0, −A], so a wrong (noisy)
    pseudo label can never produce a large gradient. Mean over valid pixels.
    """
    _check(logits, target)
    valid = target != ignore_index
    prob = logits.float().softmax(dim=1)
    safe_target = torch.where(valid, target.long(), torch.zeros_like(target, dtype=torch.long))
    p_y = prob.gather(1, safe_target.unsqueeze(1)).squeeze(1)
    rce = (-log_zero) * (1.0 - p_y)
    return (rce * valid).sum() / valid.sum().clamp(min=1)


def symmetric_cross_entropy(logits: torch.Tensor, target: torch.Tensor,
                            alpha: float = SCE_ALPHA, beta: float = SCE_BETA,
                            ignore_index: int = IGNORE_INDEX,
                            log_zero: float = SCE_LOG_ZERO) -> torch.Tensor:
    """Symmetric cross-entropy (Wang et al. 2019), Eq. 1's loss on pseudo labels ŷ_t.

    ``SCE = α · CE(p, q) + β · RCE(p, q)`` with ``CE = −Σ_k q_k log p_k`` (= −log p_y) and
    ``RCE = −Σ_k p_k log q_k`` (= −A·(1 − p_y), log 0 clamped to A = −4); p = softmax(logits),
    q = one-hot(target). Defaults α = 0.1, β = 1.0 (see ``SCE_ALPHA``). Pixels labelled
    ``ignore_index`` are skipped; the result is the mean over valid pixels.
    """
    ce = cross_entropy(logits, target, ignore_index)
    rce = reverse_cross_entropy(logits, target, ignore_index, log_zero)
    return alpha * ce + beta * rce
