"""Utilities every training loop shares: interruption, divergence guard, precision, optimisers.

* :class:`GracefulStop` turns SIGINT/SIGTERM into a flag; the loop checkpoints and returns, so
  pre-emption loses nothing but the step in flight. The signal usually comes to the whole
  process group (Slurm, systemd, ``kill -- -PGID``, Ctrl-C) and more than once (torchrun passes
  it on to its workers too): DataLoader workers ignore it (:func:`ignore_stop_signals`, their
  ``worker_init_fn``) and repeats within ``GRACE_S`` seconds change nothing, so the checkpoint is
  still written; a signal after that exits at once.
* :class:`NonFiniteGuard` skips a step whose loss or gradient norm is not finite (a logged
  warning) and stops the run with :class:`DivergenceError` after ``max_consecutive`` in a row;
  the last good checkpoint stays on disk, and no checkpoint is written while a streak of
  non-finite steps is going on (:attr:`NonFiniteGuard.in_streak`). The streak is part of the
  checkpoint (:meth:`NonFiniteGuard.state_dict`), so resuming does not reset it.
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
import time
from typing import Iterable

import torch
from torch import nn

from sci2i.config.schema import PerfConfig
from sci2i.utils.runtime import amp_dtype

log = logging.getLogger("sci2i")


class DivergenceError(RuntimeError):
    """Too many consecutive non-finite steps: the run stops, its last good checkpoint is kept.

    The CLI prints the message without a traceback and exits with 3.
    """


#: Seconds after a first stop signal during which further signals are taken for repeats.
GRACE_S = 60.0


def ignore_stop_signals(worker_id: int | None = None) -> None:  # noqa: ARG001
    """In a DataLoader worker: SIGINT/SIGTERM are the main process's to handle.

    A signal to the process group reaches the workers too; one that died of it would make the
    main process fail ("DataLoader worker … killed by signal") before it could checkpoint. The
    workers still end: the main process shuts them down, and they exit when it dies.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class GracefulStop:
    """Context manager: SIGINT/SIGTERM set ``requested``; the training loop polls it each step.

    Signals within ``grace_s`` seconds of the first are repeats (the same stop sent to a process
    group and forwarded by torchrun, or an impatient second Ctrl-C) and are only logged, so the
    stop checkpoint is still written; one later than that raises KeyboardInterrupt (exit 130
    without a new checkpoint). Once a stop was requested this stays so after the ``with``
    block too (the checkpoint and the exit come after the loop), instead of the default
    handlers coming back and a repeat killing the process while it writes.
    """

    def __init__(self, grace_s: float = GRACE_S) -> None:
        self.requested = False
        self.grace_s = grace_s
        self._first = 0.0
        self._previous: dict[int, object] = {}

    def _handler(self, signum, frame) -> None:  # noqa: ARG002
        name = signal.Signals(signum).name
        if self.requested:
            if time.monotonic() - self._first > self.grace_s:
                raise KeyboardInterrupt  # asked again long after: stop now
            log.warning("received %s again: still finishing this step and writing the checkpoint", name)
            return
        self.requested = True
        self._first = time.monotonic()
        log.warning("received %s: finishing this step, writing a checkpoint, then stopping", name)

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, prev in self._previous.items():
            # a stop under way keeps this handler: repeats are still repeats (see above)
            signal.signal(sig, self._handler if self.requested else prev)  # type: ignore[arg-type]
        self._previous.clear()


class NonFiniteGuard:
    """Skip steps with a non-finite loss or gradient; raise after ``max_consecutive`` in a row."""

    def __init__(self, max_consecutive: int = 10, name: str = "") -> None:
        self.max_consecutive = max_consecutive
        self.name = name
        self.consecutive = 0
        self.skipped_total = 0
        self.streak_start = -1  # first step of the current streak of non-finite steps

    @property
    def in_streak(self) -> bool:
        """The last step was skipped: the weights may be on their way out; write no checkpoint."""
        return self.consecutive > 0

    def step_ok(self, step: int, *values: torch.Tensor) -> bool:
        finite = torch.stack([v.detach().float().reshape(()) for v in values]).isfinite().all()
        if bool(finite):  # the one synchronisation per step
            self.consecutive = 0
            self.streak_start = -1
            return True
        if self.consecutive == 0:
            self.streak_start = step
        self.consecutive += 1
        self.skipped_total += 1
        log.warning("%sstep %d: non-finite loss or gradient, step skipped (%d in a row, %d total)",
                    f"{self.name}: " if self.name else "", step, self.consecutive, self.skipped_total)
        if self.consecutive > self.max_consecutive:
            raise DivergenceError(
                f"{self.name or 'training'} diverged: {self.consecutive} consecutive non-finite "
                f"steps, from step {self.streak_start} to step {step}. The last good checkpoint "
                f"(before step {self.streak_start}) is kept; lower the learning rate or check the "
                f"data, then resume with the changed setting (the same setting is refused: it "
                f"would diverge again)."
            )
        return False

    def state_dict(self) -> dict:
        return {"consecutive": self.consecutive, "skipped_total": self.skipped_total,
                "streak_start": self.streak_start}

    def load_state_dict(self, state: dict) -> None:
        self.consecutive = int(state.get("consecutive", 0))
        self.skipped_total = int(state.get("skipped_total", 0))
        self.streak_start = int(state.get("streak_start", -1))


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


# ----------------------------------------------------------------------------- divergence record
#: Written into the run directory when a run stops with DivergenceError.
DIVERGED_NAME = "DIVERGED.json"


def record_divergence(run_path, error: DivergenceError, streak_start: int, config_yaml: str,
                      checkpoints) -> None:
    """After a divergence: ``DIVERGED.json`` in the run folder, checkpoints from the streak set aside.

    A checkpoint at step ``streak_start`` or later holds the weights whose steps were not
    finite; it is renamed ``step_….pt.diverged`` (kept for inspection, never resumed from).
    """
    import json
    from pathlib import Path

    for step, path in checkpoints.list():
        if step >= streak_start:
            path.replace(path.with_name(path.name + ".diverged"))
    marker = Path(run_path) / DIVERGED_NAME
    marker.write_text(json.dumps({"message": str(error), "streak_start": streak_start,
                                  "config": config_yaml}, indent=2) + "\n")


def check_divergence_before_resume(run_path, config_yaml: str, resume_hint: str) -> bool:
    """Refuse to resume a diverged run with the setting that diverged; True if it had diverged.

    With a changed configuration the run may go on from its last checkpoint before the
    non-finite steps (the others were set aside by :func:`record_divergence`); the record is
    then removed, after logging what happened.
    """
    import json
    from pathlib import Path

    from sci2i.utils.distributed import is_main_process

    marker = Path(run_path) / DIVERGED_NAME
    try:
        record = json.loads(marker.read_text())
    except FileNotFoundError:  # (also when rank 0 has just removed it: then all go on alike)
        return False
    except (OSError, ValueError):
        record = {}
    message = record.get("message", "the run diverged")
    if record.get("config") == config_yaml or not record:
        raise DivergenceError(
            f"this run stopped earlier because it diverged ({message.rstrip('.')}). Resuming "
            f"with the same configuration would repeat the non-finite steps, so it is refused: "
            f"{resume_hint}, or start a new run in another folder. (To resume unchanged anyway, "
            f"delete {marker}.)"
        )
    log.warning("this run diverged earlier (%s); resuming from its last checkpoint before step %s "
                "with the changed configuration", message.rstrip("."), record.get("streak_start"))
    if is_main_process():
        marker.unlink(missing_ok=True)
    return True
