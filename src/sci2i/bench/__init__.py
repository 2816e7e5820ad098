"""``sci2i bench``: how fast each phase's training step and the input pipeline run.

:func:`run_bench` measures, for each requested phase (:mod:`sci2i.bench.workloads`), ms per
step, images per second, peak memory and — for the training steps — the FLOPs of one step
(counted once with ``FlopCounterMode``) and the achieved TFLOP/s. With ``compare=True`` every
phase runs twice in the same process, as an fp32-eager baseline (no autocast, no TF32,
contiguous NCHW, for-loop Adam, no compile, data in the main process) and as the optimised
configuration, and the speed-ups are reported as ratios (baseline ms / optimised ms).

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

from sci2i.bench.measure import Result
from sci2i.bench.workloads import (
    data_workload,
    get_profile,
    i2i_workload,
    make_config,
    measure,
    perf_settings,
    seg_forward_workload,
    seg_workload,
    set_tf32,
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
    steps: int = 10
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
            for variant in variants:
                cfg = make_config(profile, phase, variant, opts.batch, opts.crop, str(device), opts.amp,
                                  opts.compile, opts.workers, opts.overrides)
                work_dir = tmp / f"{phase}-{variant}"
                work_dir.mkdir()
                log(f"bench {phase} ({variant}) on {device}: batch {opts.batch or '(profile)'}, "
                    f"crop {cfg.data.crop_size}, amp {cfg.perf.amp}, compile {cfg.perf.compile}")
                steps, flops = opts.steps, True
                if phase == "seg":
                    work = seg_workload(cfg, device, work_dir, opts.seg_phase)
                elif phase == "i2i":
                    work = i2i_workload(cfg, device, work_dir)
                elif phase == "data":
                    use_cache = opts.cache and variant != "baseline"
                    work = data_workload(cfg, device, work_dir, profile, opts.data_root, opts.data_images,
                                         use_cache)
                    steps, flops = opts.data_steps, False
                elif phase == "seg-forward":
                    work = seg_forward_workload(cfg, device, concat=variant != "baseline")
                else:
                    raise ValueError(f"unknown bench phase {phase!r}; one of {PHASES + ('seg-forward',)}")
                # baseline = true fp32 (trainers' configure_backends turns TF32 on)
                set_tf32(variant != "baseline")
                result = measure(phase, variant, work, device, steps if steps > 0 else 0,
                                 opts.warmup if steps > 0 else 0, perf_settings(cfg), flops=flops)
                results.append(result)
                log(format_row(result))
                del work
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    out = {"meta": _meta(opts, device, profile), "results": [r.to_json() for r in results],
           "ratios": ratios(results)}
    return out


def ratios(results: list[Result]) -> dict:
    """Per phase: baseline ms / optimised ms (speed-up) and the images/s of both."""
    out = {}
    by = {(r.phase, r.variant): r for r in results}
    for phase in dict.fromkeys(r.phase for r in results):
        base, opt = by.get((phase, "baseline")), by.get((phase, "optimised"))
        if base and opt and opt.ms_per_step == opt.ms_per_step and opt.ms_per_step > 0:
            out[phase] = {"speedup": base.ms_per_step / opt.ms_per_step,
                          "baseline_images_per_s": base.images_per_s,
                          "optimised_images_per_s": opt.images_per_s}
    return out


def format_row(r: Result) -> str:
    tf = f"{r.tflops_per_s:.3f} TFLOP/s" if r.tflops_per_s else "-"
    gf = f"{r.flops_per_step / 1e9:.1f} GFLOP/step" if r.flops_per_step else "-"
    return (f"  {r.phase:<11} {r.variant:<13} {r.ms_per_step:9.1f} ms/step  {r.images_per_s:8.2f} img/s  "
            f"{gf}  {tf}  peak {r.peak_memory_mib:.0f} MiB")


def format_table(report: dict) -> str:
    lines = ["| phase | variant | batch | crop | ms/step | img/s | GFLOP/step | TFLOP/s | peak MiB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in report["results"]:
        gf = f"{r['flops_per_step'] / 1e9:.1f}" if r["flops_per_step"] else "-"
        tf = f"{r['tflops_per_s']:.3f}" if r["tflops_per_s"] else "-"
        lines.append(f"| {r['phase']} | {r['variant']} | {r['batch']} | {r['crop']} | "
                     f"{r['ms_per_step']:.1f} | {r['images_per_s']:.2f} | {gf} | {tf} | "
                     f"{r['peak_memory_mib']:.0f} |")
    for phase, v in report["ratios"].items():
        lines.append(f"\n{phase}: optimised is {v['speedup']:.2f}x the baseline's speed")
    return "\n".join(lines)


__all__ = ["BenchOptions", "run_bench", "format_table", "ratios", "PHASES"]
