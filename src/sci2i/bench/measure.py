"""Timing, FLOP counting and peak memory for ``sci2i bench`` (no model code here).

* :func:`time_steps` runs ``warmup`` untimed steps, then ``steps`` timed ones, and returns
  ms per step as the wall time of the whole timed loop divided by ``steps`` (the device is
  synchronised before and after the loop only, so host-device overlap counts as it does in
  training), plus the median of per-step wall times (each step synchronised) as a check.
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
class Timing:
    ms_per_step: float
    median_step_ms: float
    steps: int
    warmup: int


def time_steps(step: Callable[[], object], steps: int, warmup: int, device: torch.device) -> Timing:
    """Warm up, then time ``steps`` calls of ``step`` (see module docstring)."""
    for _ in range(warmup):
        step()
    synchronize(device)
    # per-step times first (each synchronised), then the loop the headline figure comes from
    per_step = []
    for _ in range(min(steps, 3)):
        t0 = time.perf_counter()
        step()
        synchronize(device)
        per_step.append((time.perf_counter() - t0) * 1e3)
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    total = time.perf_counter() - t0
    return Timing(ms_per_step=total * 1e3 / max(steps, 1),
                  median_step_ms=statistics.median(per_step) if per_step else float("nan"),
                  steps=steps, warmup=warmup)


@dataclass
class Result:
    """One measured workload; ``to_json()`` is what ``--json`` writes."""

    phase: str  # "seg" | "i2i" | "data"
    variant: str  # "baseline" | "optimised" | "as-configured"
    device: str
    batch: int
    crop: int
    images_per_step: int
    ms_per_step: float = float("nan")
    median_step_ms: float = float("nan")
    images_per_s: float = float("nan")
    flops_per_step: Optional[int] = None
    tflops_per_s: Optional[float] = None
    peak_memory_mib: float = float("nan")
    peak_memory_kind: str = ""
    steps: int = 0
    warmup: int = 0
    settings: dict = field(default_factory=dict)

    def finish(self, timing: Optional[Timing], device: torch.device) -> "Result":
        if timing is not None:
            self.ms_per_step = timing.ms_per_step
            self.median_step_ms = timing.median_step_ms
            self.steps, self.warmup = timing.steps, timing.warmup
            self.images_per_s = self.images_per_step * 1e3 / timing.ms_per_step
            if self.flops_per_step:
                self.tflops_per_s = self.flops_per_step / (timing.ms_per_step * 1e-3) / 1e12
        self.peak_memory_mib, self.peak_memory_kind = peak_memory(device)
        return self

    def to_json(self) -> dict:
        return asdict(self)
