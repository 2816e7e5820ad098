"""Adam step alone, for-loop vs foreach (perf.fused_optim on CPU), timed interleaved.

    python scripts/adam_interleaved.py PRESET [STEPS,PER,ROUND]   # e.g. toycity-seg, or gta5-cityscapes 2,2,2,2

sci2i.bench.measure.interleaved_rounds on the student's parameters with random gradients
(docs/PERFORMANCE.md, Per-device choices).
"""
import sys, torch
from sci2i.bench.measure import interleaved_rounds, ratio_stats
from sci2i.config import load_config
from sci2i.models.deeplab import build_deeplab
from sci2i.train.loop import make_optimizer
preset = sys.argv[1]
cfg = load_config(preset, ["model.weights=", "perf.device=cpu"])
steps = {}
for name, fused in (("loop", False), ("foreach", True)):
    torch.manual_seed(0)
    model = build_deeplab(cfg.model)
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    perf = load_config(preset, [f"perf.fused_optim={str(fused).lower()}", "perf.device=cpu", "model.weights="]).perf
    opt = make_optimizer(params, 1e-5, (0.9, 0.99), perf=perf, device=torch.device("cpu"))
    opt.step()
    steps[name] = opt.step
n = sum(p.numel() for p in params)
t = interleaved_rounds(steps, [int(a) for a in sys.argv[2].split(",")] if len(sys.argv) > 2 else [3] * 6)
w, c = ratio_stats(t["loop"].wall_ms, t["foreach"].wall_ms), ratio_stats(t["loop"].cpu_ms, t["foreach"].cpu_ms)
print(f"{preset}: {n/1e6:.1f} M params, torch threads {torch.get_num_threads()}")
for k in t: print(f"  {k:8s} wall ms/step per round {[round(x) for x in t[k].wall_ms]}  CPU {[round(x) for x in t[k].cpu_ms]}")
print(f"  loop ms / foreach ms per round: median {w['median']:.2f} (min {w['min']:.2f}, max {w['max']:.2f}); CPU median {c['median']:.2f} (min {c['min']:.2f}, max {c['max']:.2f})")
