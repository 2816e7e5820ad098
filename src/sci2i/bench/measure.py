"""Timing, FLOP counting and peak memory for ``sci2i bench`` (no model code here).

* :func:`interleaved_rounds` times the variants of one comparison round by round — round 1
  runs A then B, round 2 B then A, and so on (A B B A A B …) — so a change in the machine's
  load during the measurement falls on both variants alike instead of showing up as a speed-up.
  Each variant's block of steps is timed as a whole, wall clock and process CPU time
  (``time.process_time``: all of this process's threads, not DataLoader worker processes); the
  device is synchronised before and after each block only, so host-device overlap counts as it
  does in training. :func:`ratio_stats` turns the per-round times of two variants into
  per-round ratios (median, min, max).
* :func:`count_flops` counts one call's FLOPs with ``torch.utils.flop_counter.FlopCounterMode``:
  matrix products and convolutions (forward and backward), the operations that dominate these
  networks; element-wise work is not counted, as in the usual "model FLOPs" figures.
* :func:`peak_memory` is ``torch.cuda.max_memory_allocated`` on CUDA (reset before the timed
  loop) and the process's peak resident set size (``ru_maxrss``) on CPU — the latter cannot be
  reset, so within one process it is the peak so far.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> tuple[float, str]:
    """(MiB, what was measured)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "torch.cuda.max_memory_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    mib = rss / 2**20 if sys.platform == "darwin" else rss / 2**10
    return mib, "ru_maxrss (process peak so far)"


def allocated_mib(device: torch.device) -> float:
    """Memory held by live tensors now (CUDA); 0 elsewhere."""
    return torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0


def _conv_backward_flop(grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed,
                        output_padding, groups, output_mask, out_shape, **kwargs) -> int:
    """``convolution_backward`` FLOPs with grouped convolutions counted right.

    torch's formula (2.13) counts the weight gradient of a grouped convolution as if it were
    dense, i.e. ``groups`` times too much: for EfficientNet's depthwise convolutions that is
    a factor of up to 1152, and a backward pass "costing" 35x its forward. The weight-gradient
    term is divided by ``groups`` here; the input-gradient term (already right) is torch's own.
    """
    from torch.utils.flop_counter import conv_backward_flop

    flops = conv_backward_flop(grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation,
                               transposed, output_padding, groups, [output_mask[0], False], out_val=out_shape)
    if output_mask[1]:
        weight_only = conv_backward_flop(grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation,
                                         transposed, output_padding, groups, [False, True], out_val=out_shape)
        flops += weight_only // max(int(groups), 1)
    return flops


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (matmul/conv forward and backward), counted once.

    ``FlopCounterMode`` counts a multiply-add as 2 FLOPs, as do accelerator peak figures.
    """
    from torch.utils.flop_counter import FlopCounterMode

    mapping = {torch.ops.aten.convolution_backward: _conv_backward_flop}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return int(counter.get_total_flops())


@dataclass
class RoundTimes:
    """One variant's per-round figures: ms per step of wall clock and of process CPU time."""

    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    steps: int = 0


def split_steps(steps: int, rounds: int) -> list[int]:
    """``steps`` timed steps spread over at most ``rounds`` rounds (each round ≥ 1 step)."""
    rounds = max(1, min(rounds, steps))
    return [steps // rounds + (1 if r < steps % rounds else 0) for r in range(rounds)]


def interleaved_rounds(steps: dict[str, Callable[[], object]], per_round: list[int],
                       sync: Callable[[], None] = lambda: None,
                       before: Callable[[str], None] = lambda name: None,
                       after: Callable[[str], None] = lambda name: None,
                       wall_clock: Callable[[], float] = time.perf_counter,
                       cpu_clock: Callable[[], float] = time.process_time) -> dict[str, RoundTimes]:
    """Time each variant's ``step`` for ``per_round[r]`` calls in round r, alternating the order.

    Round r runs the variants in the given order when r is even and reversed when it is odd
    (A B, B A, A B, …: each variant's mean position in time is the same over two rounds).
    ``before(name)``/``after(name)`` run outside the timed block (backend flags, peak memory).
    """
    names = list(steps)
    out = {name: RoundTimes() for name in names}
    for r, n in enumerate(per_round):
        for name in (names if r % 2 == 0 else names[::-1]):
            before(name)
            sync()
            wall0, cpu0 = wall_clock(), cpu_clock()
            for _ in range(n):
                steps[name]()
            sync()
            wall1, cpu1 = wall_clock(), cpu_clock()
            after(name)
            out[name].wall_ms.append((wall1 - wall0) * 1e3 / n)
            out[name].cpu_ms.append((cpu1 - cpu0) * 1e3 / n)
            out[name].steps += n
    return out


def ratio_stats(numerator: list[float], denominator: list[float]) -> dict:
    """Per-round ratios ``numerator[r] / denominator[r]``: median, min, max and the list."""
    per_round = [a / b for a, b in zip(numerator, denominator) if b > 0]
    if not per_round:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "rounds": []}
    return {"median": statistics.median(per_round), "min": min(per_round), "max": max(per_round),
            "rounds": per_round}


@dataclass
class Result:
    """One measured workload; ``to_json()`` is what ``--json`` writes."""

    phase: str  # "seg" | "i2i" | "data"
    variant: str  # "baseline" | "optimised" | "as-configured"
    device: str
    batch: int
    crop: int
    images_per_step: int
    ms_per_step: float = float("nan")  # median over rounds of the round's wall ms/step
    cpu_ms_per_step: float = float("nan")  # median over rounds of the process CPU ms/step
    round_ms: list = field(default_factory=list)
    round_cpu_ms: list = field(default_factory=list)
    images_per_s: float = float("nan")
    flops_per_step: Optional[int] = None
    tflops_per_s: Optional[float] = None
    peak_memory_mib: float = float("nan")
    peak_memory_kind: str = ""
    steps: int = 0  # timed steps, all rounds together
    rounds: int = 0
    warmup: int = 0
    settings: dict = field(default_factory=dict)

    def finish(self, times: Optional[RoundTimes], peak: tuple[float, str]) -> "Result":
        if times is not None and times.wall_ms:
            self.round_ms, self.round_cpu_ms = list(times.wall_ms), list(times.cpu_ms)
            self.ms_per_step = statistics.median(times.wall_ms)
            self.cpu_ms_per_step = statistics.median(times.cpu_ms)
            self.steps, self.rounds = times.steps, len(times.wall_ms)
            self.images_per_s = self.images_per_step * 1e3 / self.ms_per_step
            if self.flops_per_step:
                self.tflops_per_s = self.flops_per_step / (self.ms_per_step * 1e-3) / 1e12
        self.peak_memory_mib, self.peak_memory_kind = peak
        return self

    def to_json(self) -> dict:
        return asdict(self)
