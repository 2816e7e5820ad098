"""`sci2i bench`, scripts/gpu_bench.sh's CPU fallback, the FLOP count, and the resize cache.

Real timings are never asserted (shared CPUs): only that every figure exists and is positive.
The interleaving of ``--compare`` is tested with fake clocks and fake workloads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import write_cityscapes, write_gta5
from torch import nn

from sci2i.bench.measure import count_flops, interleaved_rounds, ratio_stats, split_steps
from sci2i.bench.workloads import Workload, measure
from sci2i.config import load_config
from sci2i.data.build import build_source_dataset, build_target_dataset
from sci2i.data.cache import CachedResizeDataset, ResizedCache, fill_cache, with_resize_cache
from sci2i.data.datasets import GTA5Dataset
from sci2i.data.transforms import TrainTransform

REPO = Path(__file__).resolve().parents[1]


def test_gpu_bench_script_cpu_fallback_writes_positive_figures(tmp_path):
    env = {**os.environ, "SCI2I_BENCH_TINY": "1", "CUDA_VISIBLE_DEVICES": "",
           "SCI2I_BENCH_PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_bench.sh"), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=900)  # a hang guard only
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "cpu_tiny.json").read_text())
    assert report["meta"]["device"] == "cpu" and report["meta"]["torch"]
    results = {(r["phase"], r["variant"]): r for r in report["results"]}
    assert set(results) == {(p, v) for p in ("seg", "i2i", "data") for v in ("baseline", "optimised")}
    for (phase, _), r in results.items():
        for key in ("ms_per_step", "images_per_s", "peak_memory_mib", "images_per_step", "batch", "crop"):
            assert r[key] > 0, (phase, key, r[key])
        if phase != "data":
            assert r["flops_per_step"] > 0 and r["tflops_per_s"] > 0
    assert results[("seg", "baseline")]["settings"]["amp"] == "off"
    assert results[("seg", "baseline")]["settings"]["fused_optim"] is False
    # phase (c): x_s, G(x_s) and P(x_t) for the student (batch 1: the source slot is x_s or G(x_s))
    assert results[("seg", "optimised")]["images_per_step"] == 2
    for (phase, _), r in results.items():  # --steps 1: one round; --data-steps 3: three of one step
        rounds = 3 if phase == "data" else 1
        assert r["rounds"] == rounds and len(r["round_ms"]) == len(r["round_cpu_ms"]) == rounds
        assert r["steps"] == rounds and r["cpu_ms_per_step"] > 0
    for phase in ("seg", "i2i", "data"):
        ratio = report["ratios"][phase]
        assert ratio["speedup"] > 0 and ratio["cpu_speedup"] > 0
        assert ratio["rounds"] == len(ratio["speedup_rounds"]) == (3 if phase == "data" else 1)
        assert ratio["speedup_min"] <= ratio["speedup"] <= ratio["speedup_max"]
    assert "per round" in proc.stdout and "CPU time median" in proc.stdout


# ----------------------------------------------------------------------------- interleaving (fake clocks)
class FakeMachine:
    """A clock that only moves when a fake step runs; ``load(t)`` slows every step down alike."""

    def __init__(self, load=lambda t: 1.0):
        self.t = self.cpu = 0.0
        self.load = load
        self.log: list[str] = []

    def step(self, name: str, cost: float, cpu_share: float = 1.0):
        def run():
            dt = cost * self.load(self.t)
            self.t += dt
            self.cpu += cpu_share * dt
            self.log.append(name)
        return run


def test_interleaved_rounds_alternate_the_order_and_time_each_block():
    m = FakeMachine()
    events = []
    times = interleaved_rounds({"A": m.step("A", 2.0, 0.5), "B": m.step("B", 1.0)}, [2, 1, 2],
                               before=lambda n: events.append(f"+{n}"), after=lambda n: events.append(f"-{n}"),
                               wall_clock=lambda: m.t, cpu_clock=lambda: m.cpu)
    assert m.log == ["A", "A", "B", "B", "B", "A", "A", "A", "B", "B"]  # A B | B A | A B
    assert events == ["+A", "-A", "+B", "-B", "+B", "-B", "+A", "-A", "+A", "-A", "+B", "-B"]
    assert times["A"].wall_ms == [2000.0] * 3 and times["B"].wall_ms == [1000.0] * 3  # ms per step
    assert times["A"].cpu_ms == [1000.0] * 3 and times["B"].cpu_ms == [1000.0] * 3
    assert times["A"].steps == times["B"].steps == 5
    assert ratio_stats(times["A"].wall_ms, times["B"].wall_ms)["median"] == 2.0
    assert ratio_stats(times["A"].cpu_ms, times["B"].cpu_ms)["median"] == 1.0


def test_interleaving_keeps_load_drift_out_of_the_ratio():
    """The machine gets 4x slower while it runs; A costs exactly 2x B at any moment."""
    def drifting():
        return FakeMachine(load=lambda t: 1.0 + t / 10.0)

    m = drifting()
    inter = interleaved_rounds({"A": m.step("A", 2.0), "B": m.step("B", 1.0)}, [1] * 6,
                               wall_clock=lambda: m.t, cpu_clock=lambda: m.cpu)
    stats = ratio_stats(inter["A"].wall_ms, inter["B"].wall_ms)
    assert 1.6 < stats["min"] <= stats["median"] <= stats["max"] < 2.5
    assert abs(stats["median"] - 2.0) < 0.2
    # one variant after the other, as --compare did before: B pays for the drift -> A looks ~1x
    m = drifting()
    a = interleaved_rounds({"A": m.step("A", 2.0)}, [1] * 6, wall_clock=lambda: m.t, cpu_clock=lambda: m.cpu)
    b = interleaved_rounds({"B": m.step("B", 1.0)}, [1] * 6, wall_clock=lambda: m.t, cpu_clock=lambda: m.cpu)
    sequential = ratio_stats(a["A"].wall_ms, b["B"].wall_ms)["median"]
    assert sequential < 1.2


def test_split_steps_and_ratio_stats():
    assert split_steps(10, 4) == [3, 3, 2, 2] and split_steps(1, 4) == [1] and split_steps(3, 0) == [3]
    stats = ratio_stats([4.0, 6.0, 9.0], [2.0, 2.0, 3.0])
    assert stats == {"median": 3.0, "min": 2.0, "max": 3.0, "rounds": [2.0, 3.0, 3.0]}


def test_measure_warms_up_each_variant_then_interleaves_with_its_backend_flags(monkeypatch):
    import sci2i.bench.workloads as workloads

    m = FakeMachine()
    flags = []
    monkeypatch.setattr(workloads, "apply_backends", lambda cfg, variant: flags.append(variant))
    cfg = load_config(None, [])
    works = {v: (cfg, Workload(m.step(v, 1.0), 2, 1, 8, {})) for v in ("baseline", "optimised")}
    results = measure("seg", works, torch.device("cpu"), steps=4, rounds=2, warmup=1, flops=False)
    assert m.log == ["baseline", "optimised"] + ["baseline"] * 2 + ["optimised"] * 4 + ["baseline"] * 2
    assert flags == ["baseline", "optimised", "baseline", "optimised", "optimised", "baseline"]
    assert [r.variant for r in results] == ["baseline", "optimised"]
    assert all(r.rounds == 2 and r.steps == 4 and r.warmup == 1 for r in results)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("groups", [1, 4])
def test_flop_count_backward_is_twice_forward_also_for_grouped_convs(groups, transposed):
    conv = (nn.ConvTranspose2d if transposed else nn.Conv2d)(8, 8, 3, padding=1, groups=groups)
    x = torch.rand(2, 8, 12, 12, requires_grad=True)
    forward = count_flops(lambda: conv(x))
    assert forward == 2 * 2 * 12 * 12 * 8 * (8 // groups) * 9  # 2 FLOPs per multiply-add
    assert count_flops(lambda: conv(x).sum().backward()) == 3 * forward


# ----------------------------------------------------------------------------- resize cache
@pytest.fixture()
def gta(tmp_path) -> Path:
    write_gta5(tmp_path / "gta", n=3, size=(96, 48), seed=4)
    return tmp_path / "gta"


def _items(ds, seeds):
    return [ds.get(i % len(ds), np.random.default_rng(s)) for i, s in enumerate(seeds)]


def test_cached_samples_equal_uncached_and_second_read_hits(gta, tmp_path, monkeypatch):
    transform = TrainTransform(long_side=64, crop_size=24, flip=True)
    plain = GTA5Dataset(gta, transform=transform)
    cached = CachedResizeDataset(GTA5Dataset(gta, transform=transform), ResizedCache(tmp_path / "c", 64))
    seeds = range(9)
    for a, b in zip(_items(plain, seeds), _items(cached, seeds)):  # first pass fills the cache
        assert a["name"] == b["name"]
        torch.testing.assert_close(a["image"], b["image"], rtol=0, atol=0)
        torch.testing.assert_close(a["label"], b["label"], rtol=0, atol=0)
    assert len(list((tmp_path / "c").rglob("*.npy"))) == 2 * len(plain)  # image + label each

    def no_decode(index):
        raise AssertionError("cache miss")

    monkeypatch.setattr(cached.dataset, "read", no_decode)
    for a, b in zip(_items(plain, seeds), _items(cached, seeds)):
        torch.testing.assert_close(a["image"], b["image"], rtol=0, atol=0)
        torch.testing.assert_close(a["label"], b["label"], rtol=0, atol=0)


def test_cache_key_follows_mtime_and_scale(gta, tmp_path):
    image = sorted((gta / "images").glob("*.png"))[0]
    cache = ResizedCache(tmp_path / "c", 64)
    key = cache.entry(image, "image")
    assert key == cache.entry(image, "image")
    assert key != ResizedCache(tmp_path / "c", 128).entry(image, "image")
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert key != cache.entry(image, "image")


def test_cache_dir_config_wires_training_datasets_only(gta, tmp_path):
    write_cityscapes(tmp_path / "cs", n_per_split=2, size=(96, 48), seed=5)
    cfg = load_config(None, [f"data.source_root={gta}", f"data.target_root={tmp_path / 'cs'}",
                             "data.long_side=64", "data.crop_size=24", f"data.cache_dir={tmp_path / 'c'}"])
    src = build_source_dataset(cfg.data, train=True)
    assert isinstance(src.dataset, CachedResizeDataset)
    assert not isinstance(build_source_dataset(cfg.data, train=False), CachedResizeDataset)
    trg = build_target_dataset(cfg.data, "train", with_labels=False, train=True)
    assert fill_cache(trg.dataset) == 2 and fill_cache(src.dataset, num_workers=1) == 3
    assert len(list((tmp_path / "c").rglob("*.npy"))) == 2 + 2 * 3
    assert with_resize_cache(src.dataset, tmp_path / "c", 64) is src.dataset  # not wrapped twice
    assert src[(0, 7)]["image"].shape == (3, 24, 24)
