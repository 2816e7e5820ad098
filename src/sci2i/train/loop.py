"""Utilities every training loop shares: interruption, divergence guard, precision, optimisers.

* :class:`GracefulStop` turns SIGINT/SIGTERM into a flag; the loop checkpoints and returns, so
  pre-emption loses nothing but the step in flight. A second signal exits at once.
* :class:`NonFiniteGuard` skips a step whose loss or gradient norm is not finite (a logged
  warning) and stops the run with :class:`DivergenceError` after ``max_consecutive`` in a row;
  the last good checkpoint stays on disk.
* :class:`AmpContext` is autocast + GradScaler as ``cfg.perf.amp`` asks (bf16 on capable GPUs,
  fp16 with a scaler otherwise, plain fp32 on CPU so tests stay exact).
* :func:`make_optimizer` is Adam, fused on CUDA or foreach elsewhere, when ``perf.fused_optim``.
* :func:`prepare_model` applies channels-last and ``torch.compile`` from ``cfg.perf``.

Checking finiteness needs one host-device synchronisation per step (the same one GradScaler
makes); everything else that reads values back is done only on logging steps.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
from typing import Iterable

import torch
from torch import nn

from sci2i.config.schema import PerfConfig
from sci2i.utils.runtime import amp_dtype

log = logging.getLogger("sci2i")


class DivergenceError(RuntimeError):
    """Too many consecutive non-finite steps: the run stops, its last good checkpoint is kept."""


class GracefulStop:
    """Context manager: SIGINT/SIGTERM set ``requested``; the training loop polls it each step."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handler(self, signum, frame) -> None:  # noqa: ARG002
        if self.requested:  # second signal: stop now
            raise KeyboardInterrupt
        self.requested = True
        log.warning("received %s: finishing this step, writing a checkpoint, then stopping",
                    signal.Signals(signum).name)

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)  # type: ignore[arg-type]
        self._previous.clear()


class NonFiniteGuard:
    """Skip steps with a non-finite loss or gradient; raise after ``max_consecutive`` in a row."""

    def __init__(self, max_consecutive: int = 10, name: str = "") -> None:
        self.max_consecutive = max_consecutive
        self.name = name
        self.consecutive = 0
        self.skipped_total = 0

    def step_ok(self, step: int, *values: torch.Tensor) -> bool:
        finite = torch.stack([v.detach().float().reshape(()) for v in values]).isfinite().all()
        if bool(finite):  # the one synchronisation per step
            self.consecutive = 0
            return True
        self.consecutive += 1
        self.skipped_total += 1
        log.warning("%sstep %d: non-finite loss or gradient, step skipped (%d in a row, %d total)",
                    f"{self.name}: " if self.name else "", step, self.consecutive, self.skipped_total)
        if self.consecutive > self.max_consecutive:
            raise DivergenceError(
                f"{self.name or 'training'} diverged: {self.consecutive} consecutive non-finite "
                f"steps up to step {step}. The last good checkpoint is kept; lower the learning "
                f"rate or check the data, then resume."
            )
        return False


def clip_grad_norm(params: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Clip the global gradient norm in place; return the norm before clipping (a tensor)."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return torch.zeros(())
    return torch.nn.utils.clip_grad_norm_(params, max_norm, error_if_nonfinite=False, foreach=True)


def make_optimizer(params, lr: float, betas, weight_decay: float = 0.0,
                   perf: PerfConfig | None = None, device: torch.device | None = None) -> torch.optim.Adam:
    """Adam; fused kernels on CUDA (or foreach elsewhere) when ``perf.fused_optim``."""
    kwargs: dict = dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    if perf is not None and perf.fused_optim:
        if device is not None and device.type == "cuda":
            kwargs["fused"] = True
        else:
            kwargs["foreach"] = True
    return torch.optim.Adam(params, **kwargs)


class AmpContext:
    """Autocast and loss scaling for one network's objective, from ``cfg.perf.amp``."""

    def __init__(self, perf: PerfConfig, device: torch.device) -> None:
        self.device = device
        self.dtype = amp_dtype(perf.amp, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    def autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=self.dtype or torch.float32,
                              enabled=self.enabled)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler.is_enabled():
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler.is_enabled():
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler.is_enabled() else {}

    def load_state_dict(self, state: dict) -> None:
        if state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state)


def prepare_model(model: nn.Module, perf: PerfConfig, device: torch.device) -> nn.Module:
    """Move to ``device``; channels-last on CUDA; ``torch.compile`` when asked (returns wrapper)."""
    model = model.to(device)
    if perf.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if perf.compile:
        model = torch.compile(model)  # type: ignore[assignment]
    return model


def configure_backends(perf: PerfConfig, deterministic: bool) -> None:
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = perf.cudnn_benchmark and not deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def to_float(values: dict) -> dict:
    """Tensors -> Python floats (a synchronisation: call only on logging steps)."""
    return {k: (float(v.detach().float()) if torch.is_tensor(v) else float(v)) for k, v in values.items()}


def is_finite_number(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
