"""``sci2i train-i2i``: phase (b), the generator and discriminator (Eqs. 1-9)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-i2i",
        help="train the I2I generator and discriminator (phase b)",
        description=(
            "Train G and D with the semantically consistent objective (Eqs. 1-9). Writes "
            "checkpoints, metrics, TensorBoard samples, and finally generator_ema.safetensors "
            "+ generator.yaml (for `sci2i translate`) into the run directory. Ablations of the "
            "paper's Table 3 are overrides: i2i.gan_loss=sgan, i2i.lambda_cgan=0, "
            "i2i.lambda_gseg=0, i2i.pseudo_labels=online."
        ),
    )
    p.add_argument("preset", nargs="?", default=None, help="preset name or YAML file (e.g. toycity-i2i)")
    p.add_argument("overrides", nargs="*", help="key=value config overrides (e.g. i2i.steps=100)")
    p.add_argument("--output", metavar="DIR", default=None, help="run directory (default: run.out_dir)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint in the run directory (with no preset: "
                        "with the run's own config.yaml)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (there is none off a terminal)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from sci2i.commands import training_config
    from sci2i.config.loader import split_preset
    from sci2i.train.i2i import train_i2i

    preset, overrides = split_preset(args.preset, args.overrides)
    cfg = training_config(preset, overrides, args.output, args.resume)
    summary = train_i2i(cfg, args.output, resume=args.resume, progress=not args.no_progress)
    print(json.dumps(summary, indent=2))
    return 130 if summary.get("stopped") else 0  # 130: stopped by a signal, resumable
