"""Utilities every training loop shares: interruption, divergence guard, precision, optimisers.

* :class:`GracefulStop` turns SIGINT/SIGTERM into a flag; the loop checkpoints and returns, so
  pre-emption loses nothing but the step in flight. The signal usually comes to the whole
  process group (Slurm, systemd, ``kill -- -PGID``, Ctrl-C) and more than once (torchrun passes
  it on to its workers too): DataLoader workers ignore it
  (:func:`sci2i.data.workers.ignore_stop_signals`, their ``worker_init_fn``) and repeats within
  ``GRACE_S`` seconds change nothing, so the checkpoint is still written; a signal after that
  exits at once.
* :class:`NonFiniteGuard` skips a step whose loss or gradient norm is not finite (a logged
  warning) and stops the run with :class:`DivergenceError` after ``max_consecutive`` in a row;
  the last good checkpoint stays on disk, and no checkpoint is written while a streak of
  non-finite steps is going on (:attr:`NonFiniteGuard.in_streak`). The streak is part of the
  checkpoint (:meth:`NonFiniteGuard.state_dict`), so resuming does not reset it.
* :class:`AmpContext` is autocast + GradScaler as ``cfg.perf.amp`` asks (bf16 on capable GPUs,
  fp16 with a scaler otherwise, plain fp32 on CPU so tests stay exact).
* :func:`make_optimizer` is Adam, fused on CUDA or foreach elsewhere, when ``perf.fused_optim``.
* :func:`prepare_model` applies channels-last and ``torch.compile`` from ``cfg.perf``.
* :class:`Trainer` is the life cycle both trainers share (:class:`~sci2i.train.mean_teacher.
  MeanTeacherTrainer`, :class:`~sci2i.train.i2i.I2ITrainer`): ``resume`` / ``fit`` /
  ``state_dict`` / ``load_state_dict`` over one loop that checkpoints, guards, logs window
  means (:class:`WindowMean`), evaluates at its interval and stops gracefully.

Checking finiteness needs one host-device synchronisation per step (the same one GradScaler
makes); everything else that reads values back is done only on logging steps.
"""

from __future__ import annotations

import abc
import json
import logging
import math
import signal
import threading
import time
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import nn

from sci2i.config import Config, to_yaml
from sci2i.config.schema import PerfConfig
from sci2i.data.workers import ignore_stop_signals  # noqa: F401 (the workers' half of GracefulStop)
from sci2i.utils.checkpoint import CheckpointManager
from sci2i.utils.distributed import barrier, is_main_process
from sci2i.utils.progress import TrainingLog
from sci2i.utils.rundir import RunDir
from sci2i.utils.runtime import amp_dtype, rng_state, set_rng_state

log = logging.getLogger("sci2i")


class DivergenceError(RuntimeError):
    """Too many consecutive non-finite steps: the run stops, its last good checkpoint is kept.

    The CLI prints the message without a traceback and exits with 3.
    """


#: Seconds after a first stop signal during which further signals are taken for repeats.
GRACE_S = 60.0


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


# ----------------------------------------------------------------------------- the shared loop
def stream_seed(seed: int, *key: int) -> int:
    """The seed of one data stream: ``seed`` and the stream's ``key`` through a SeedSequence."""
    return int(np.random.SeedSequence([seed, *key]).generate_state(1)[0])


class WindowMean:
    """A loop's values averaged over one log interval, summed on the device (no sync per step).

    ``Schedule/…`` values are functions of the step: they are reported at the logged step, not
    averaged. :meth:`means` reads everything back at once (the one synchronisation).
    """

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.last: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, values: dict[str, torch.Tensor]) -> None:
        for k, v in values.items():
            v = torch.as_tensor(v).detach().float()
            if k.startswith("Schedule/"):
                self.last[k] = v
            else:
                self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.count += 1

    def means(self) -> dict[str, float]:
        out = to_float({**{k: v / max(1, self.count) for k, v in self.sums.items()}, **self.last})
        self.sums, self.last, self.count = {}, {}, 0
        return out

    def state_dict(self) -> dict:
        """The interval so far: a run cut in its middle logs the same means once resumed."""
        return {"sums": dict(self.sums), "last": dict(self.last), "count": self.count}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self.sums = {k: v.to(device) for k, v in state.get("sums", {}).items()}
        self.last = {k: v.to(device) for k, v in state.get("last", {}).items()}
        self.count = int(state.get("count", 0))


class Trainer(abc.ABC):
    """The life cycle both trainers share: :meth:`resume`, :meth:`fit`, :meth:`state_dict`.

    A subclass calls ``super().__init__`` first, then builds its networks and sets
    :attr:`guards` (``{net: NonFiniteGuard}``); it supplies

    * ``train_step()``: one optimiser step at :attr:`step` on the next batches of its
      :attr:`streams`, returning detached tensors keyed ``Loss/<net>/<name>`` and
      ``Schedule/<name>`` (what is logged, as window means, every ``log_every`` steps);
    * ``open_streams()``: :attr:`streams` from where step :attr:`step` starts reading;
    * ``model_state()`` / ``load_model_state(state)``: networks, optimisers, scalers;
    * ``evaluate(final=False)``: the work every ``eval_every`` steps (validation, samples);
    * ``finish()``: after the last step, the exports; returns their entries of the summary.

    The loop (:meth:`fit`), after each step: log at the interval; on a stop signal, break (the
    evaluation due at this step is then done first by the resumed run, so that it draws the
    random numbers the uninterrupted run drew); evaluate; then one checkpoint, after
    everything the step's state depends on. No checkpoint is written while a streak of
    non-finite steps is going on. A checkpoint holds :meth:`model_state`, the step, the
    deferred evaluation, every guard's counters, the log interval's sums so far, all RNG
    states and the resolved config, so a resumed run takes the same next step (and logs the
    same values) as an uninterrupted one.
    """

    #: The name of the log line and of messages (the command: ``train-seg``, ``train-i2i``).
    name = "train"
    #: The ``phase`` of metrics.jsonl rows (TensorBoard tags ``<phase>/Loss/<net>/<name>``).
    phase = "train"
    #: The config key to lower when a run diverged (``seg.lr``, ``i2i.lr``).
    lr_key = ""

    def __init__(self, cfg: Config, run: RunDir, device: torch.device, progress: bool, *,
                 steps: int, log_every: int, eval_every: int) -> None:
        self.cfg, self.run, self.device, self.progress = cfg, run, torch.device(device), progress
        self.total_steps, self.log_every, self.eval_every = steps, log_every, eval_every
        configure_backends(cfg.perf, cfg.run.deterministic)
        self.checkpoints = CheckpointManager(run.checkpoints, cfg.run.keep_checkpoints)
        self.guards: dict[str, NonFiniteGuard] = {}
        self.streams: dict = {}
        self.step = 0
        self.eval_due = False  # an evaluation a stop signal put off (done first on resuming)
        self.window = WindowMean()

    # -- what a subclass supplies (see the class docstring) ------------------------------
    @abc.abstractmethod
    def train_step(self) -> dict[str, torch.Tensor]:
        """One optimiser step at :attr:`step`; detached ``Loss/<net>/…``, ``Schedule/…`` tensors."""

    @abc.abstractmethod
    def open_streams(self) -> None:
        """:attr:`streams` positioned where step :attr:`step` reads."""

    @abc.abstractmethod
    def model_state(self) -> dict:
        """Networks, optimisers and scalers: the checkpoint's entries besides the loop's."""

    @abc.abstractmethod
    def load_model_state(self, state: dict) -> None:
        """The inverse of :meth:`model_state`."""

    @abc.abstractmethod
    def evaluate(self, final: bool = False) -> dict:
        """The work every ``eval_every`` steps and after the last (``final``)."""

    @abc.abstractmethod
    def finish(self) -> dict:
        """After the last step: exports; returns their entries of :meth:`fit`'s summary."""

    def line_values(self, values: dict[str, float]) -> dict[str, float]:
        """What the interval line shows (default: everything logged)."""
        return values

    # -- state -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {**self.model_state(), "step": self.step, "eval_due": self.eval_due,
                "guard": {k: g.state_dict() for k, g in self.guards.items()},
                "window": self.window.state_dict(), "rng": rng_state(), "config": to_yaml(self.cfg)}

    def load_state_dict(self, state: dict) -> None:
        self.load_model_state(state)
        self.step = int(state["step"])
        self.eval_due = bool(state.get("eval_due", False))
        self.window.load_state_dict(state.get("window", {}), self.device)
        saved = state.get("guard", {})
        if "consecutive" in saved:  # (older segmentation checkpoints: its one guard, unnamed)
            saved = {next(iter(self.guards)): saved}
        for key, guard in self.guards.items():
            if isinstance(saved.get(key), dict):  # (older I2I checkpoints kept the totals only)
                guard.load_state_dict(saved[key])
        set_rng_state(state["rng"])
        if state.get("config") and state["config"] != to_yaml(self.cfg):
            log.warning("%s: resuming with a configuration that differs from the checkpoint's; "
                        "see %s for the one in use", self.name, self.run.path / "config.yaml")

    @property
    def in_streak(self) -> bool:
        """A streak of non-finite steps of any network is going on: write no checkpoint."""
        return any(g.in_streak for g in self.guards.values())

    @property
    def streak_start(self) -> int:
        return min((g.streak_start for g in self.guards.values() if g.in_streak), default=-1)

    def resume(self) -> bool:
        """Load the newest checkpoint of the run (False, and step 0, when there is none)."""
        check_divergence_before_resume(self.run.path, to_yaml(self.cfg), f"resume with a lower "
                                       f"learning rate (e.g. --resume {self.lr_key}=…)")
        # on the CPU: RNG states must stay CPU tensors; load_state_dict copies to the device.
        found = self.checkpoints.load_newest(map_location="cpu")
        if found is None:
            log.info("%s: no checkpoint in %s, starting from step 0", self.name, self.checkpoints.folder)
            return False
        self.load_state_dict(found[0])
        log.info("%s: resumed from step %d (%s)", self.name, self.step, found[1])
        return True

    def save_checkpoint(self) -> None:
        if is_main_process():
            path = self.checkpoints.save(self.state_dict(), self.step)
            log.info("checkpoint %s", path)
        barrier()

    def save_unless_diverging(self) -> None:
        """A checkpoint, except in a streak of non-finite steps (its weights may be blowing up)."""
        if self.in_streak:
            log.warning("%s step %d: no checkpoint written, non-finite steps in a row", self.name, self.step)
            barrier()  # the ranks meet here as they would in save_checkpoint
            return
        self.save_checkpoint()

    def close_streams(self) -> None:
        for stream in self.streams.values():
            stream.close()  # stop the loader workers now (before evaluation starts its own)

    # -- the loop ----------------------------------------------------------------------
    def fit(self) -> dict:
        """Train to the last step; returns ``{"stopped", "step", "run_dir", **finish()}``."""
        total = self.total_steps
        self.open_streams()
        bar = TrainingLog(self.name, total, self.step, self.progress, self.device, enabled=is_main_process())
        stopped = False
        try:
            if self.eval_due:  # put off by the stop that ended the previous run
                self.evaluate()
                self.eval_due = False
            with GracefulStop() as stop:
                while self.step < total:
                    self.window.add(self.train_step())
                    self.step += 1
                    bar.update(1)
                    if self.step % self.log_every == 0 or self.step == total:
                        values = self.window.means()  # one sync per interval
                        self.run.log_metrics(self.phase, self.step, values)
                        bar.report(self.step, self.line_values(values))
                    eval_due = self.eval_every > 0 and self.step % self.eval_every == 0 and self.step < total
                    if stop.requested:
                        self.eval_due = eval_due
                        stopped = True
                        break
                    if eval_due:
                        self.evaluate()
                    if self.step % self.cfg.run.checkpoint_every == 0 and self.step < total:
                        self.save_unless_diverging()
        except DivergenceError as e:
            if is_main_process():
                record_divergence(self.run.path, e, self.streak_start, to_yaml(self.cfg), self.checkpoints)
            raise
        finally:
            bar.close()
            self.close_streams()
        self.save_unless_diverging()
        if stopped:
            log.warning("%s stopped at step %d; continue with --resume", self.name, self.step)
            return {"stopped": True, "step": self.step, "run_dir": self.run.path}
        return {"stopped": False, "step": self.step, "run_dir": self.run.path, **self.finish()}
