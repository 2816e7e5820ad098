"""``sci2i run``: the whole three-phase pipeline, resumable; no argument = toy-city CPU demo."""

from __future__ import annotations

import argparse
import os

from sci2i.config.loader import list_presets, split_preset

DEMO_PRESET = "toycity"


def _seed_list(text: str) -> list[int]:
    """``"0,1,2"`` -> [0, 1, 2] (comma-separated, so that key=value overrides may follow)."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes comma-separated integers, e.g. 0,1,2; got {text!r}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds needs distinct integers, e.g. 0,1,2; got {text!r}")
    return seeds


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run the whole method: warm-up, pseudo labels, I2I, translation, final segmentation",
        description=(
            "Run the three-phase pipeline in one run directory (run.out_dir). Phases whose "
            "outputs are complete are skipped, so running the same command again after an "
            "interruption goes on where it stopped. With no argument, runs the toy-city demo "
            "on CPU (generating toy-city first if needed)."
        ),
        epilog="Example: sci2i run gta5-cityscapes data.source_root=/data/gta5 "
               "data.target_root=/data/cityscapes run.out_dir=runs/gta5",
    )
    p.add_argument("preset", nargs="?", default=None,
                   help=f"preset name or YAML file (default: {DEMO_PRESET}, the CPU demo)")
    p.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. seg.steps=2000")
    p.add_argument("--experiment", metavar="TABLE",
                   help="run every row of a paper table (table3, table4, table5) with shared phases")
    p.add_argument("--seeds", metavar="S,S,...", type=_seed_list,
                   help="with --experiment: run the table once per seed (run.seed), e.g. 0,1,2, "
                        "and report mean ± std per row")
    p.add_argument("--list", action="store_true", help="list presets and experiments, then exit")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (there are none off a terminal); the log lines stay")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from sci2i.config import ConfigError, load_config, to_yaml
    from sci2i.pipeline.experiments import load_experiments, run_experiment
    from sci2i.pipeline.runner import run_pipeline

    if args.list:
        print("presets:")
        for name in list_presets():
            print(f"  {name}")
        print("experiments (sci2i run PRESET --experiment NAME):")
        for name, spec in load_experiments().items():
            print(f"  {name}: {spec['title']}")
            for row in spec["rows"]:
                print(f"      - {row['name']}: {' '.join(row['overrides']) or '(preset as is)'}")
        return 0
    preset, overrides = split_preset(args.preset, args.overrides)
    preset = preset or DEMO_PRESET  # `sci2i run seg.steps=10` is the demo with an override
    if args.print_config:
        print(to_yaml(load_config(preset, overrides)))
        return 0
    if args.seeds and not args.experiment:
        raise ConfigError("--seeds needs --experiment TABLE (a single run takes run.seed=S)")
    if args.experiment:
        run_experiment(args.experiment, preset, overrides, seeds=args.seeds, progress=not args.no_progress)
        return 0
    cfg = load_config(preset, overrides)
    summary = run_pipeline(cfg, progress=not args.no_progress)
    ev = summary.get("final_eval") or {}
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun the summary is rank 0's to print
    print(f"done: {cfg.run.out_dir}/report.md  " +
          "  ".join(f"{k} {ev[k]:.1f}" for k in ("mIoU19", "mIoU16", "mIoU13", "mIoU") if isinstance(ev.get(k), float)))
    return 0
