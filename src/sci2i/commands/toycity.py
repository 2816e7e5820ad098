"""``sci2i toycity``: write the embedded toy-city benchmark (GTA5 / Cityscapes layouts)."""

from __future__ import annotations

import argparse
import json

from sci2i.toycity.generate import ToyCitySizes

_D = ToyCitySizes()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "toycity",
        help="write the embedded synthetic->real benchmark to disk",
        description=(
            "Generate toy-city: OUT/source in the GTA5 layout (flat, game-like renderings) and "
            "OUT/target in the Cityscapes layout (photo-textured, with camera effects and a "
            "content shift). Deterministic: the same seed and sizes give the same files."
        ),
    )
    p.add_argument("--output", required=True, metavar="DIR",
                   help="output folder (created; must be empty or a toy-city)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--width", type=int, default=_D.width, help=f"image width in px (default: {_D.width})")
    p.add_argument("--height", type=int, default=_D.height, help=f"image height in px (default: {_D.height})")
    p.add_argument("--n-source", type=int, default=_D.n_source, help=f"source images (default: {_D.n_source})")
    p.add_argument("--n-target-train", type=int, default=_D.n_target_train,
                   help=f"target train images (default: {_D.n_target_train})")
    p.add_argument("--n-target-val", type=int, default=_D.n_target_val,
                   help=f"target val images (default: {_D.n_target_val})")
    p.add_argument("--workers", type=int, default=None, help="processes (default: up to 2); output does not depend on it")
    p.add_argument("--overwrite", action="store_true", help="replace source/, target/ and the manifest in --output")
    p.add_argument("--figure", default=None, metavar="PNG", help="also write an example figure to PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from sci2i.figures.toycity import make_figure
    from sci2i.toycity import generate

    manifest = generate(
        args.output, seed=args.seed, overwrite=args.overwrite, workers=args.workers, progress=not args.no_progress,
        width=args.width, height=args.height, n_source=args.n_source,
        n_target_train=args.n_target_train, n_target_val=args.n_target_val,
    )
    if args.figure:
        n = min(4, manifest["sizes"]["n_source"], manifest["sizes"]["n_target_val"])
        print(f"figure: {make_figure(args.output, args.figure, n=n)}")
    print(json.dumps({k: manifest[k] for k in ("seed", "sizes")}))
    return 0
