"""``sci2i pseudo-label``: the teacher's argmax ŷ_t on target images, as trainId PNGs."""

from __future__ import annotations

import argparse
import os

EPILOG = """\
Each image <city>/<stem>_leftImg8bit.png gets DIR/<city>/<stem>.png (trainIds 0-18, full image
resolution), the layout CityscapesDataset(label_dir=DIR) and i2i.pseudo_label_dir read; with
--confidence also DIR/<city>/<stem>_confidence.png (max softmax x 255, uint8).

examples:
  sci2i pseudo-label --checkpoint runs/seg-a/teacher.safetensors --target-root data/toycity/cityscapes --output runs/pl
  sci2i evaluate --predictions runs/pl --train-ids --split train --target-root ...   # pseudo-label quality
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pseudo-label",
        help="write the teacher's pseudo labels for target images",
        description="Predict trainId pseudo labels ŷ_t for a Cityscapes split (or an image folder).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, metavar="CKPT",
                   help="teacher.safetensors, a training checkpoint step_*.pt, or a run directory")
    p.add_argument("--target-root", metavar="ROOT", default=os.environ.get("SCI2I_TARGET_ROOT", ""),
                   help="Cityscapes root (leftImg8bit/<split>/...; default: $SCI2I_TARGET_ROOT)")
    p.add_argument("--split", default="train", help="Cityscapes split (default: train)")
    p.add_argument("--input", metavar="DIR", default=None,
                   help="label every image below DIR instead of a Cityscapes split")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--confidence", action="store_true", help="also write max-softmax confidence PNGs")
    p.add_argument("--long-side", type=int, default=None, metavar="N",
                   help="network input scale (default: the model's data.eval_long_side, else 1024)")
    p.add_argument("--max-images", type=int, default=0, metavar="N", help="only the first N images")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--workers", type=int, default=2, metavar="N",
                   help="processes decoding images (default: 2; 0 = in the main process)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from sci2i.data.datasets import CityscapesDataset, ImageFolderDataset
    from sci2i.errors import UserError
    from sci2i.infer.segmenter import load_segmenter, segmenter_config, write_pseudo_labels
    from sci2i.utils.runtime import amp_dtype, resolve_device

    if args.input:
        dataset = ImageFolderDataset(args.input, max_images=args.max_images)
    elif args.target_root:
        dataset = CityscapesDataset(args.target_root, args.split, with_labels=False, max_images=args.max_images)
    else:
        raise UserError("pass --target-root (or set SCI2I_TARGET_ROOT) or --input")
    device = resolve_device(args.device)
    model = load_segmenter(args.checkpoint, device)
    trained = segmenter_config(args.checkpoint)
    long_side = args.long_side or (trained.data.eval_long_side if trained else 1024)
    n = write_pseudo_labels(model, dataset, args.output, device, long_side, confidence=args.confidence,
                            num_workers=args.workers, amp_dtype=amp_dtype("auto", device),
                            progress=not args.no_progress)
    print(f"{n} pseudo labels written to {args.output}")
    return 0
