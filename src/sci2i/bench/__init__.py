"""``sci2i bench``: how fast each phase's training step and the input pipeline run.

:func:`run_bench` measures, for each requested phase (:mod:`sci2i.bench.workloads`), ms per
step, images per second, peak memory and — for the training steps — the FLOPs of one step
(counted once with ``FlopCounterMode``) and the achieved TFLOP/s. With ``compare=True`` every
phase is built twice in the same process, as an fp32-eager baseline (no autocast, no TF32,
contiguous NCHW, for-loop Adam, no compile, data in the main process) and as the optimised
configuration; the two are timed interleaved, round by round (A B, B A, …), and the speed-up
is reported per round (baseline ms / optimised ms: median, min, max), for wall-clock and for
process CPU time, so that a change of machine load during the run cannot pass for a speed-up.

Numbers are only comparable between runs on the same machine; docs/PERFORMANCE.md holds
measured tables and the commands that produced them.
"""

from __future__ import annotations

import os
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from sci2i.bench.measure import Result, ratio_stats
from sci2i.bench.workloads import (
    data_workload,
    get_profile,
    i2i_workload,
    make_config,
    measure,
    seg_forward_workload,
    seg_workload,
)

PHASES = ("seg", "i2i", "data")


@dataclass
class BenchOptions:
    phases: tuple[str, ...] = PHASES
    profile: str = "auto"  # "paper" | "paper-r101" | "toycity" | "auto" (paper on CUDA, toycity on CPU)
    device: str = "auto"
    batch: Optional[int] = None  # default: the profile's seg/i2i batch size
    crop: Optional[int] = None  # default: the profile's data.crop_size
    amp: str = "auto"
    compile: bool = False
    steps: int = 10  # timed steps per variant, all rounds together
    rounds: int = 4  # the timed steps are spread over this many interleaved rounds
    warmup: int = 3
    data_steps: int = 40
    workers: Optional[int] = None  # data workers per stream (default: the profile's)
    cache: bool = False  # data phase through data.cache_dir (filled first, fill time reported)
    data_root: Optional[str] = None
    data_images: int = 32
    seg_phase: str = "c"
    compare: bool = False
    overrides: list[str] = field(default_factory=list)
    threads: Optional[int] = None


def _device(name: str) -> torch.device:
    from sci2i.utils.runtime import resolve_device

    return resolve_device(name)


def _meta(opts: BenchOptions, device: torch.device, profile) -> dict:
    from sci2i.utils.rundir import git_revision

    meta = {
        "torch": torch.__version__, "python": platform.python_version(), "host": platform.node(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": str(device),
        "profile": profile.name, "presets": profile.presets, "profile_overrides": list(profile.overrides),
        "git": git_revision(), "options": {k: v for k, v in vars(opts).items()},
    }
    if device.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(device)
    return meta


def run_bench(opts: BenchOptions, log=print) -> dict:
    """Measure; returns ``{"meta", "results": [Result.to_json()], "ratios"}``."""
    if opts.threads:
        torch.set_num_threads(opts.threads)
    device = _device(opts.device)
    profile = get_profile(opts.profile if opts.profile != "auto" else
                          ("paper" if device.type == "cuda" else "toycity"))
    variants = ("baseline", "optimised") if opts.compare else ("as-configured",)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="sci2i-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for phase in opts.phases:
            if phase not in PHASES + ("seg-forward",):
                raise ValueError(f"unknown bench phase {phase!r}; one of {PHASES + ('seg-forward',)}")
            works = {}
            for variant in variants:  # every variant is built first, then all are timed interleaved
                cfg = make_config(profile, phase, variant, opts.batch, opts.crop, str(device), opts.amp,
                                  opts.compile, opts.workers, opts.overrides)
                work_dir = tmp / f"{phase}-{variant}"
                work_dir.mkdir()
                log(f"bench {phase} ({variant}) on {device}: batch {opts.batch or '(profile)'}, "
                    f"crop {cfg.data.crop_size}, amp {cfg.perf.amp}, compile {cfg.perf.compile}")
                if phase == "seg":
                    work = seg_workload(cfg, device, work_dir, opts.seg_phase)
                elif phase == "i2i":
                    work = i2i_workload(cfg, device, work_dir)
                elif phase == "data":
                    work = data_workload(cfg, device, work_dir, profile, opts.data_root, opts.data_images,
                                         opts.cache and variant != "baseline")
                else:
                    work = seg_forward_workload(cfg, device, concat=variant != "baseline")
                works[variant] = (cfg, work)
            steps = opts.data_steps if phase == "data" else opts.steps
            phase_results = measure(phase, works, device, max(steps, 0), opts.rounds,
                                    opts.warmup if steps > 0 else 0, flops=phase != "data")
            for result in phase_results:
                log(format_row(result))
            results += phase_results
            del works, work
            if device.type == "cuda":
                torch.cuda.empty_cache()
    out = {"meta": _meta(opts, device, profile), "results": [r.to_json() for r in results],
           "ratios": ratios(results)}
    return out


def ratios(results: list[Result]) -> dict:
    """Per phase: the per-round speed-ups (baseline ms / optimised ms), wall clock and CPU time.

    ``speedup`` is the median of the per-round wall-clock ratios, ``speedup_min``/``_max`` their
    range, ``cpu_speedup*`` the same for process CPU time.
    """
    out = {}
    by = {(r.phase, r.variant): r for r in results}
    for phase in dict.fromkeys(r.phase for r in results):
        base, opt = by.get((phase, "baseline")), by.get((phase, "optimised"))
        if not (base and opt and base.round_ms and opt.round_ms):
            continue
        wall, cpu = ratio_stats(base.round_ms, opt.round_ms), ratio_stats(base.round_cpu_ms, opt.round_cpu_ms)
        out[phase] = {"speedup": wall["median"], "speedup_min": wall["min"], "speedup_max": wall["max"],
                      "speedup_rounds": wall["rounds"],
                      "cpu_speedup": cpu["median"], "cpu_speedup_min": cpu["min"], "cpu_speedup_max": cpu["max"],
                      "cpu_speedup_rounds": cpu["rounds"], "rounds": len(wall["rounds"]),
                      "baseline_images_per_s": base.images_per_s, "optimised_images_per_s": opt.images_per_s}
    return out


def format_row(r: Result) -> str:
    tf = f"{r.tflops_per_s:.3f} TFLOP/s" if r.tflops_per_s else "-"
    gf = f"{r.flops_per_step / 1e9:.1f} GFLOP/step" if r.flops_per_step else "-"
    return (f"  {r.phase:<11} {r.variant:<13} {r.ms_per_step:9.1f} ms/step (CPU {r.cpu_ms_per_step:.1f})  "
            f"{r.images_per_s:8.2f} img/s  {gf}  {tf}  peak {r.peak_memory_mib:.0f} MiB")


def format_table(report: dict) -> str:
    lines = ["| phase | variant | batch | crop | ms/step | CPU ms/step | rounds × steps | img/s | GFLOP/step "
             "| TFLOP/s | peak MiB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in report["results"]:
        gf = f"{r['flops_per_step'] / 1e9:.1f}" if r["flops_per_step"] else "-"
        tf = f"{r['tflops_per_s']:.3f}" if r["tflops_per_s"] else "-"
        lines.append(f"| {r['phase']} | {r['variant']} | {r['batch']} | {r['crop']} | "
                     f"{r['ms_per_step']:.1f} | {r['cpu_ms_per_step']:.1f} | {r['rounds']} × "
                     f"{r['steps'] / max(r['rounds'], 1):.3g} | {r['images_per_s']:.2f} | {gf} | {tf} | "
                     f"{r['peak_memory_mib']:.0f} |")
    if report["ratios"]:
        lines.append("\nms/step and CPU ms/step: medians over the rounds (variants interleaved A B, B A, ...)")
    for phase, v in report["ratios"].items():
        rounds = " ".join(f"{x:.2f}" for x in v["speedup_rounds"])
        lines.append(f"{phase}: baseline ms / optimised ms per round {rounds}: median {v['speedup']:.2f}x "
                     f"(min {v['speedup_min']:.2f}, max {v['speedup_max']:.2f}); CPU time median "
                     f"{v['cpu_speedup']:.2f}x (min {v['cpu_speedup_min']:.2f}, max {v['cpu_speedup_max']:.2f})")
    return "\n".join(lines)


__all__ = ["BenchOptions", "run_bench", "format_table", "ratios", "PHASES"]
