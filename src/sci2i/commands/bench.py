"""``sci2i bench``: ms/step, images/s, peak memory and TFLOP/s of each phase's training step."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _phases(text: str) -> tuple[str, ...]:
    from sci2i.bench import PHASES

    names = [p.strip() for p in text.split(",") if p.strip()]
    if names == ["all"]:
        return PHASES
    bad = [p for p in names if p not in PHASES + ("seg-forward",)]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown phase(s) {bad}; choose from {', '.join(PHASES)}, seg-forward, all")
    return tuple(names)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="measure the training steps and the data pipeline (ms/step, img/s, TFLOP/s, memory)",
        description=(
            "Time one training step of each phase (seg: mean-teacher step of phase (c); i2i: D-step + "
            "G-step) and the input pipeline alone, with warm-up steps, random-init weights and fixed "
            "in-memory batches. Reports ms/step, images/s, peak memory and, from the FLOPs of one "
            "step counted once with FlopCounterMode, the achieved TFLOP/s. --compare builds an fp32-eager "
            "baseline and the optimised settings in one process, times them interleaved round by round "
            "(A B, B A, ...) and prints the per-round speed-ups (median, min, max) for wall-clock and "
            "process CPU time."
        ),
        epilog=(
            "Examples: sci2i bench --profile paper --phase seg,i2i --batch 8 --amp bf16 --json bench.json  |  "
            "sci2i bench --profile toycity --device cpu --compare  |  "
            "sci2i bench --profile paper --device cpu --batch 1 --steps 0 --phase seg,i2i (FLOPs only)"
        ),
    )
    p.add_argument("--phase", type=_phases, default=("seg", "i2i", "data"),
                   help="comma-separated: seg, i2i, data, seg-forward, or all (default: all)")
    p.add_argument("--profile", choices=["auto", "paper", "paper-r101", "toycity"], default="auto",
                   help="paper: gta5-cityscapes preset (VGG16, 384 crops); paper-r101: gta5-cityscapes-r101 "
                        "(DeepLab-v2 ResNet-101 segmenter); toycity: the CPU demo's sizes "
                        "(EfficientNet-Lite0); auto: paper on CUDA, toycity on CPU")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--batch", type=int, default=None, help="images per domain per step (default: the profile's)")
    p.add_argument("--crop", type=int, default=None, help="crop size (default: the profile's data.crop_size)")
    p.add_argument("--amp", choices=["auto", "off", "bf16", "fp16"], default="auto",
                   help="autocast of the optimised/as-configured run (auto: bf16 on capable GPUs, off on CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks (perf.compile)")
    p.add_argument("--steps", type=int, default=10,
                   help="timed steps per training phase and variant, all rounds together (default: 10); "
                        "0 = only count FLOPs")
    p.add_argument("--rounds", type=int, default=4,
                   help="spread the timed steps over this many rounds; with --compare the variants "
                        "alternate A B, B A, ... and each round gives one ratio (default: 4)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    p.add_argument("--data-steps", type=int, default=40,
                   help="timed steps of the data phase per variant, all rounds together (default: 40)")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader workers per data stream (default: the profile's data.num_workers)")
    p.add_argument("--cache", action="store_true",
                   help="data phase reads through data.cache_dir (a temporary one; its fill time is reported)")
    p.add_argument("--data-root", default=None,
                   help="folder with source/ (GTA5 layout) and target/ (Cityscapes layout), e.g. a "
                        "`sci2i toycity` output; default: synthetic PNGs at the profile's image size")
    p.add_argument("--data-images", type=int, default=32, help="synthetic images per domain (default: 32)")
    p.add_argument("--seg-phase", choices=["a", "c"], default="c",
                   help="c: student on x_s, G(x_s), P(x_t) (default); a: x_s and P(x_t)")
    p.add_argument("--compare", action="store_true",
                   help="run the fp32-eager baseline and the optimised settings; print speed-up ratios")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON to OUT")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (the one option of every command; bench draws none, it prints a table)")
    p.add_argument("overrides", nargs="*", help="key=value config overrides applied to every variant")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from sci2i.bench import BenchOptions, format_table, run_bench

    opts = BenchOptions(
        phases=args.phase, profile=args.profile, device=args.device, batch=args.batch, crop=args.crop,
        amp=args.amp, compile=args.compile, steps=args.steps, rounds=args.rounds, warmup=args.warmup,
        data_steps=args.data_steps, workers=args.workers, cache=args.cache, data_root=args.data_root,
        data_images=args.data_images, seg_phase=args.seg_phase, compare=args.compare,
        overrides=list(args.overrides), threads=args.threads,
    )
    report = run_bench(opts)
    print(format_table(report))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"wrote {out}")
    return 0
