"""What a training loop says while it runs: one plain line per log interval, a bar on a terminal.

As StyleGAN2-ADA's ``tick … kimg … sec/tick … gpumem`` and DINOv2's metric logger, every
training loop (segmentation, I2I, the linear probe) writes at its log interval one line::

    train-seg step 400/2000 (20%) | total 0.8123 seg_src 0.7311 con 0.0081 | lr 2.40e-03 lambda_con 1 | 0.412 s/step | ETA 10m59s | peak mem 1.31 GB

* to the run's ``log.txt`` (the ``sci2i`` logger's file handlers; not its console handler),
* to standard output when that is not a terminal (a log file, a pipe, a batch system),
* and on a terminal a tqdm bar instead (on stderr, with the latest losses), never off one:
  a log file gets readable lines, not megabytes of carriage-return updates.

s/step is measured over the last interval (the first includes start-up), the ETA assumes the
rest runs at that pace, and peak memory is the accelerator's peak allocation (CUDA) or the
process's peak resident set size (CPU).
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from typing import Mapping, Optional

import torch

log = logging.getLogger("sci2i")

#: ``extra`` of a log record that belongs in log files only (the console has the bar or stdout).
FILE_ONLY = {"console": False}

_SCHEDULE_PREFIXES = ("lr", "lambda_", "Schedule/", "ema")


def format_duration(seconds: float) -> str:
    """``3h02m``, ``10m59s`` or ``42s``."""
    s = int(round(max(0.0, seconds)))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def _number(v: float) -> str:
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e4):
        return f"{v:.2e}"
    return f"{v:.4g}" if float(v).is_integer() else f"{v:.4f}"


def peak_memory(device: Optional[torch.device]) -> str:
    """``peak mem 1.31 GB`` (CUDA allocations) or ``peak RSS 0.84 GB`` (CPU process)."""
    if device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available():
        return f"peak mem {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GB"
    return f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB"  # KiB on Linux


def on_terminal(progress: bool = True) -> bool:
    """Whether to draw a progress bar: asked for and stderr is a terminal (never in a log file)."""
    return progress and sys.stderr.isatty()


class TrainingLog:
    """The log lines and the terminal bar of one training loop from ``start`` to ``total`` steps.

    ``update(n)`` after every step moves the bar; ``report(step, values)`` at the log interval
    writes the line (losses are the values whose names do not start with ``lr``, ``lambda_``,
    ``Schedule/`` or ``ema``; a ``Loss/`` prefix is dropped). ``enabled=False`` (ranks other
    than 0) makes it silent; ``progress=False`` (``--no-progress``) removes the bar only.
    """

    def __init__(self, phase: str, total: int, start: int = 0, progress: bool = True,
                 device: Optional[torch.device] = None, enabled: bool = True) -> None:
        self.phase = phase
        self.total = total
        self.device = device
        self.enabled = enabled
        self._last_step = start
        self._last_time = time.perf_counter()
        self.bar = None
        if enabled and on_terminal(progress):
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc=phase, dynamic_ncols=True)

    def __enter__(self) -> "TrainingLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def line(self, step: int, values: Mapping[str, float]) -> str:
        """The text of the line for ``step`` (and the pace since the previous line)."""
        now = time.perf_counter()
        per_step = (now - self._last_time) / max(1, step - self._last_step)
        self._last_step, self._last_time = step, now
        losses, schedules = [], []
        for key, value in values.items():
            value = float(value)
            if key.startswith(_SCHEDULE_PREFIXES):
                schedules.append(f"{key.removeprefix('Schedule/')} {_number(value)}")
            else:
                losses.append(f"{key.removeprefix('Loss/')} {_number(value)}")
        parts = [f"{self.phase} step {step}/{self.total} ({100 * step / max(1, self.total):.0f}%)"]
        parts += [" ".join(losses)] if losses else []
        parts += [" ".join(schedules)] if schedules else []
        parts += [f"{per_step:.3f} s/step", f"ETA {format_duration(per_step * (self.total - step))}",
                  peak_memory(self.device)]
        return " | ".join(parts)

    def report(self, step: int, values: Mapping[str, float | torch.Tensor]) -> Optional[str]:
        """Write the line of ``step`` to log.txt, to stdout off a terminal, to the bar on one."""
        if not self.enabled:
            return None
        values = {k: float(v.detach().float().item()) if hasattr(v, "detach") else float(v) for k, v in values.items()}
        text = self.line(step, values)
        log.info("%s", text, extra=FILE_ONLY)
        if not sys.stdout.isatty():
            print(text, flush=True)
        if self.bar is not None:
            shown = [(k.removeprefix("Loss/"), v) for k, v in values.items() if not k.startswith(_SCHEDULE_PREFIXES)]
            self.bar.set_postfix({k: f"{v:.3g}" for k, v in shown[:3]}, refresh=False)
        return text

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
