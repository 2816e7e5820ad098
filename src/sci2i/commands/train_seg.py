"""``sci2i train-seg``: one mean-teacher segmentation phase (a or c), Eqs. 10-12.

Source-only, phase (a), phase (c) and the oracle are the same command with other values::

    sci2i train-seg toycity-seg seg.lambda_con=0                       # source only
    sci2i train-seg toycity-seg                                        # (a) source + mean teacher
    sci2i train-seg toycity-seg seg.translated_root=runs/x/translated  # (c) + G(x_s)
    sci2i train-seg toycity-seg seg.lambda_src=0 seg.lambda_con=0 seg.lambda_trg_sup=1  # oracle
"""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  sci2i train-seg toycity-seg --output runs/seg-a
  sci2i train-seg toycity-seg seg.lambda_con=0 --output runs/seg-source-only
  sci2i train-seg toycity-seg seg.lambda_src=0 seg.lambda_con=0 seg.lambda_trg_sup=1 --output runs/oracle
  sci2i train-seg --output runs/seg-a --resume     # continue with the run's own config.yaml

The run directory holds config.yaml, git.txt, log.txt, metrics.jsonl, tb/, checkpoints/,
eval/ (per-evaluation JSON and IoU tables), eval.json (final teacher) and teacher.safetensors
(+ teacher.yaml), which `sci2i evaluate --checkpoint` and `sci2i pseudo-label` read.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-seg",
        help="train DeepLab-v2 with mean-teacher self-training (phases a and c)",
        description="Mean-teacher segmentation training (Eqs. 10-12); reports the EMA teacher.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", nargs="*", metavar="PRESET_OR_YAML [key=value ...]",
                   help="a preset name or YAML file, then key=value overrides")
    p.add_argument("--output", metavar="DIR", default=None, help="run directory (default: run.out_dir)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint in the run directory (with no preset: "
                        "with the run's own config.yaml)")
    p.add_argument("--init", metavar="CKPT", default=None,
                   help="initialise the student from a trained segmenter (teacher.safetensors or a run dir)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from sci2i.commands import training_config
    from sci2i.config.loader import split_preset
    from sci2i.train.mean_teacher import train_segmentation

    preset, overrides = split_preset(args.config[0] if args.config else None, args.config[1:])
    cfg = training_config(preset, overrides, args.output, args.resume)
    result = train_segmentation(cfg, args.output, resume=args.resume, progress=not args.no_progress,
                                init_weights=args.init)
    if result["stopped"]:
        return 130
    print(f"teacher: {result['weights']}")
    print(result["eval"]["table"])
    from sci2i.eval.metrics import headline_metrics

    for key in headline_metrics(result["eval"]["class_set"]):
        print(f"{key}: {result['eval'][key]:.2f}")
    return 0
