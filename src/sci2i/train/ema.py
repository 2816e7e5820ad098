"""Exponential moving average of a network's weights (the mean teacher F_T; the EMA of G).

``ema_update(ema_model, model, decay)`` is called explicitly right after each optimiser step:

    θ_ema ← decay · θ_ema + (1 − decay) · θ        for every parameter,
    b_ema ← b                                         for every buffer (BN statistics, counters).

Buffers are copied rather than averaged: BatchNorm running statistics are already running
averages, and integer buffers (``num_batches_tracked``) cannot be averaged. The EMA model never
receives gradients (:func:`make_ema` sets ``requires_grad=False`` and keeps it in eval mode
only if asked). Wrappers (DDP ``.module``, ``torch.compile``'s ``._orig_mod``) are unwrapped, so
``model`` may be the wrapped training module while ``ema_model`` is a plain copy.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from sci2i.utils.distributed import unwrap  # one definition, in the lower layer (re-exported here)


def make_ema(model: nn.Module) -> nn.Module:
    """A deep copy of ``unwrap(model)`` with ``requires_grad=False`` on every parameter."""
    ema = copy.deepcopy(unwrap(model))
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def ema_update(ema_model: nn.Module, model: nn.Module, decay: float) -> None:
    """θ_ema ← decay·θ_ema + (1 − decay)·θ for parameters; buffers copied (see module doc)."""
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"EMA decay must lie in [0, 1], got {decay}")
    ema_model, model = unwrap(ema_model), unwrap(model)
    ema_params = list(ema_model.parameters())
    params = list(model.parameters())
    if len(ema_params) != len(params):
        raise ValueError("EMA model and model have different parameter lists")
    if ema_params:
        # lerp: θ_ema + (1 − decay)(θ − θ_ema) = decay·θ_ema + (1 − decay)·θ, one fused kernel.
        torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1.0 - decay)
    for b_ema, b in zip(ema_model.buffers(), model.buffers()):
        b_ema.copy_(b)
