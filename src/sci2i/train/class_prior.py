"""Distribution alignment of the teacher's target in Eq. 12 (optional, ``seg.con_align``).

Not in the paper. With a weak teacher, mean-teacher self-training drifts towards the classes
the teacher already predicts often (road, building, car) and the small classes, which a
source-trained model barely predicts on the target, fade out of its predictions. Distribution
alignment (Berthelot et al., *ReMixMatch*, ICLR 2020) rescales the teacher's class
distribution on every target pixel by ``π / p̃`` and renormalises it:

    q(c | x_t) ∝ σ(F_T(x_t))_c · π_c / p̃_c

``π`` is the class distribution of the source labels (counted from the source batches as they
stream by, so no pass over the dataset is needed), ``p̃`` a running mean (momentum
:data:`MOMENTUM`) of the teacher's mean class probabilities on the target batches. A class the
teacher predicts less often on the target than it occurs in the source is pushed up, one it
over-predicts down. In logits: ``F_T(x_t) + log π − log p̃``, so Eq. 12 and the optional
confidence mask / class balance operate on the aligned distribution unchanged.

``prior="start"`` (``seg.con_align_prior=start``) replaces π by the teacher's own mean class
distribution on the target over its first :data:`START_BATCHES` consistency batches: instead
of pulling the target predictions towards the source's class shares (which differ from the
target's: toy-city's source has twice the target's sky), alignment then keeps the shares the
teacher had when self-training began, which only stops the drift. During those first batches
π is the mean so far, so the shift starts near 0.

Both statistics are tensors on the training device (no host sync) and are saved in the
checkpoint, so a resumed run aligns exactly as an uninterrupted one. Under DDP each rank
keeps statistics of its own batches (no communication; with thousands of pixels per batch the
ranks' estimates agree closely); the checkpoint holds rank 0's.
"""

from __future__ import annotations

import torch

from sci2i.config.schema import ALIGN_PRIORS
from sci2i.labels import class_index_with_extra_bin

MOMENTUM = 0.99  # p̃: a mean over the last ~100 target batches, as ReMixMatch's 128
EPS = 1e-6       # floors of π and p̃ (classes absent from the source, unseen classes)
START_BATCHES = 50  # prior="start": π = the teacher's mean target distribution over these


def _shares(totals: torch.Tensor) -> torch.Tensor:
    """``totals`` normalised to sum to 1 (uniform while they are all 0), as float32."""
    total = totals.sum()
    uniform = torch.full_like(totals, 1.0 / totals.numel())
    return torch.where(total > 0, totals / total.clamp(min=1e-12), uniform).float()


class ClassPrior:
    """Running source class counts and teacher target distribution; aligns teacher logits."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu", prior: str = "source") -> None:
        if prior not in ALIGN_PRIORS:
            raise ValueError(f"prior must be one of {ALIGN_PRIORS}; got {prior!r}")
        self.num_classes, self.prior = num_classes, prior
        self.start_sum = torch.zeros(num_classes, dtype=torch.float64, device=device)
        self.source_counts = torch.zeros(num_classes, dtype=torch.float64, device=device)
        self.teacher_mean = torch.full((num_classes,), 1.0 / num_classes, dtype=torch.float32,
                                       device=device)
        self.teacher_batches = torch.zeros((), dtype=torch.long, device=device)

    def observe_source(self, labels: torch.Tensor) -> None:
        """Add the (N, H, W) trainId labels of a source batch to π's counts."""
        # ignored pixels go to an extra bin that is dropped; no boolean indexing, no bincount
        # (both need the host to know a size), so no sync on a GPU
        idx = class_index_with_extra_bin(labels.flatten(), self.num_classes)
        counts = torch.zeros(self.num_classes + 1, dtype=self.source_counts.dtype, device=idx.device)
        counts.index_add_(0, idx, torch.ones_like(idx, dtype=counts.dtype))
        self.source_counts += counts[: self.num_classes].to(self.source_counts.device)

    @property
    def source_prior(self) -> torch.Tensor:
        """π: the source class distribution seen so far (uniform before any label)."""
        return _shares(self.source_counts)

    @property
    def start_prior(self) -> torch.Tensor:
        """π for ``prior="start"``: the teacher's mean target distribution of its first batches."""
        return _shares(self.start_sum)

    def align(self, teacher_logits: torch.Tensor) -> torch.Tensor:
        """``teacher_logits + log π − log p̃`` after updating p̃ with this batch's teacher."""
        probs = teacher_logits.detach().float().softmax(dim=1)
        batch_mean = probs.mean(dim=(0, 2, 3))
        if self.prior == "start":  # no host sync: batches after the first ones add 0
            counting = (self.teacher_batches < START_BATCHES).to(self.start_sum.dtype)
            self.start_sum += counting * batch_mean.to(self.start_sum.dtype)
        # the first batch sets p̃ (no bias towards the uniform start), later ones average in
        first = self.teacher_batches == 0
        self.teacher_mean = torch.where(first, batch_mean,
                                        MOMENTUM * self.teacher_mean + (1 - MOMENTUM) * batch_mean)
        self.teacher_batches += 1
        prior = self.start_prior if self.prior == "start" else self.source_prior
        shift = prior.clamp(min=EPS).log() - self.teacher_mean.clamp(min=EPS).log()
        return teacher_logits + shift.to(teacher_logits.dtype).view(1, -1, 1, 1)

    def state_dict(self) -> dict:
        return {"source_counts": self.source_counts, "teacher_mean": self.teacher_mean,
                "teacher_batches": self.teacher_batches, "start_sum": self.start_sum}

    def load_state_dict(self, state: dict) -> None:
        # checkpoints written before prior="start" existed have no start_sum (it stays 0)
        keys = ("source_counts", "teacher_mean", "teacher_batches") + (("start_sum",) if "start_sum" in state else ())
        for k in keys:
            current = getattr(self, k)
            setattr(self, k, state[k].to(device=current.device, dtype=current.dtype))
