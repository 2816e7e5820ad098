"""Schedules: pure functions of the training step (0-based: ``step`` is the step being taken).

* :func:`lambda_con_at` — λ_con of Eq. 10: 0 for the first ``con_start`` steps, then constant.
* :func:`exponential_lr` — the segmentation lr, ``lr · γ^step`` (paper: "exponential decay").
* :func:`linear_ramp` — 0 before ``start``, linear to ``value`` at ``end``, then ``value``
  (λ_pl and λ_cgan with online pseudo labels: 0 → 0.3 from 20k to 100k).
* :func:`ema_decay_at` — the teacher's EMA decay with Tarvainen & Valpola's warm-up
  ``min(1 − 1/(step + 1), decay)``: early teachers are true averages of all student weights
  so far rather than mostly the random/ImageNet initialisation.
"""

from __future__ import annotations


def lambda_con_at(step: int, con_start: int, lambda_con: float) -> float:
    """λ_con (Eq. 10): 0 while ``step < con_start``, else ``lambda_con``."""
    return lambda_con if step >= con_start else 0.0


def exponential_lr(step: int, lr: float, gamma: float) -> float:
    """``lr · gamma ** step``."""
    return lr * gamma ** step


def linear_ramp(step: int, start: int, end: int, value: float) -> float:
    """0 for ``step <= start``, ``value`` for ``step >= end``, linear in between.

    ``start == end`` is a step function (``value`` from ``end`` on).
    """
    if step >= end:
        return value
    if step <= start:
        return 0.0
    return value * (step - start) / (end - start)


def ema_decay_at(step: int, decay: float, warmup: bool = True) -> float:
    """EMA decay used after optimiser step ``step``; ``warmup`` = Tarvainen's ramp."""
    return min(1.0 - 1.0 / (step + 1), decay) if warmup else decay
