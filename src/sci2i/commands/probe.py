"""``sci2i probe``: linear-probe domain-gap analysis (Table 5)."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  sci2i probe --checkpoint runs/demo/checkpoints/final/teacher.safetensors \\
      --source runs/src/teacher.safetensors --oracle runs/oracle/teacher.safetensors --output runs/probe
  sci2i probe toycity --checkpoint runs/demo/checkpoints/final probe.steps=500 --output runs/probe

Only the last classification layer (DeepLab-v2's ASPP) is re-initialised and trained, on the
labelled target train split; the backbone stays frozen. With --source and --oracle the domain
gap closed, (ours - source) / (oracle - source), is reported as in the paper's Table 5.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="linear-probe domain-gap analysis (Table 5)",
                       description="Retrain only the final classification layer on target labels "
                                   "and evaluate on target val.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("preset", nargs="?", default=None,
                   help="preset or YAML for data/probe settings (default: the checkpoint's own config)")
    p.add_argument("overrides", nargs="*", help="key=value overrides (e.g. probe.steps=500)")
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="the model to probe ('ours')")
    p.add_argument("--source", metavar="CKPT", help="a source-only model, for the gap closed")
    p.add_argument("--oracle", metavar="CKPT", help="a target-supervised model, for the gap closed")
    p.add_argument("--target-root", default="", help="Cityscapes-layout root (default: from the config)")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from sci2i.config import load_config
    from sci2i.config.loader import split_preset
    from sci2i.eval.probe import run_probes, with_target
    from sci2i.infer.segmenter import segmenter_config

    preset, overrides = split_preset(args.preset, args.overrides)
    if preset or overrides:
        cfg = load_config(preset, overrides)
    else:
        cfg = segmenter_config(args.checkpoint) or load_config()
    cfg = with_target(cfg, args.target_root)
    if not cfg.data.target_root:
        from sci2i.pipeline.steps import ensure_toycity

        cfg = ensure_toycity(cfg)
    run_probes(cfg, {"ours": args.checkpoint, "source": args.source, "oracle": args.oracle},
               args.output, progress=not args.no_progress)
    return 0
