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
    kid = p.add_argument_group("translation quality (KID, sci2i.eval.kid)")
    kid.add_argument("--kid-target", metavar="DIR",
                     help="folder of target images (searched recursively, e.g. "
                          "cityscapes/leftImg8bit/train): print the KID of the inputs and of their "
                          "translations against them")
    kid.add_argument("--kid-trunk", default="efficientnet_lite0", choices=["efficientnet_lite0", "vgg16"],
                     help="ImageNet network whose pooled features KID compares (default efficientnet_lite0)")
    kid.add_argument("--kid-trunk-weights", default="package", metavar="PATH",
                     help="its weights: 'package' (efficientnet_lite0) or vgg16-397923af.pth")
    kid.add_argument("--kid-images", type=int, default=1000, metavar="N",
                     help="at most N images per set (default 1000)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from sci2i.infer.translate import load_generator, translate_dataset
    from sci2i.utils.runtime import resolve_device

    device = resolve_device(args.device)
    G, _ = load_generator(args.checkpoint, device)
    summary = translate_dataset(
        G, args.input, args.output, fmt=args.format,
        z_seed=args.seed if args.sample_z else args.z_seed, sample_z=args.sample_z,
        long_side=args.long_side, device=device, max_images=args.max_images, progress=not args.no_progress,
    )
    if args.kid_target:
        from sci2i.data.build import source_reader
        from sci2i.eval.kid import KIDFeatures, translation_kid

        # every set at the translation's size (--long-side; 0: as the files are)
        summary["kid"] = translation_kid(
            source_reader(args.input, args.format, max_images=args.max_images),
            source_reader(args.output, args.format), source_reader(args.kid_target, "folder"),
            KIDFeatures(args.kid_trunk, args.kid_trunk_weights).to(device), device,
            max_images=args.kid_images, long_side=args.long_side)
    print(json.dumps(summary, indent=2))
    return 0
