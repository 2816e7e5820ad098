"""``sci2i translate``: translate synthetic images with a trained generator (G(x_s))."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "translate",
        help="translate a folder of synthetic images with a trained generator",
        description=(
            "Translate a folder of images, or a GTA5/SYNTHIA root keeping its layout (labels "
            "linked beside, so the output is itself a source dataset for seg.translated_root)."
        ),
    )
    p.add_argument("--checkpoint", required=True, metavar="CKPT",
                   help="generator_ema.safetensors (generator.yaml beside it) or the I2I run directory")
    p.add_argument("--input", required=True, metavar="DIR", help="input folder or dataset root")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--format", default="folder", choices=["folder", "gta5", "synthia"],
                   help="input layout (default: folder)")
    z = p.add_mutually_exclusive_group()
    z.add_argument("--z-seed", type=int, default=0,
                   help="one fixed latent z for all images, drawn from this seed (default 0)")
    z.add_argument("--sample-z", action="store_true",
                   help="a different z per image (reproducible from --seed and the image name)")
    p.add_argument("--seed", type=int, default=0, help="seed for --sample-z")
    p.add_argument("--long-side", type=int, default=0,
                   help="rescale so the longer side is N before translating (0: keep size)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--max-images", type=int, default=0, help="translate only the first N (0: all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (there is none off a terminal)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from sci2i.translate import load_generator, translate_dataset
    from sci2i.utils.runtime import resolve_device

    device = resolve_device(args.device)
    G, _ = load_generator(args.checkpoint, device)
    summary = translate_dataset(
        G, args.input, args.output, fmt=args.format,
        z_seed=args.seed if args.sample_z else args.z_seed, sample_z=args.sample_z,
        long_side=args.long_side, device=device, max_images=args.max_images, progress=not args.no_progress,
    )
    print(json.dumps(summary, indent=2))
    return 0
