"""``sci2i predict``: a trained segmenter on any images, folders, globs or videos."""

from __future__ import annotations

import argparse
import json

DESCRIPTION = """\
Label your own images with a trained segmenter. For each image NAME it writes
OUTPUT/NAME_color.png (the prediction in the class palette) and OUTPUT/NAME_overlay.jpg (the
palette blended over the image), and on request NAME_trainIds.png and NAME_labelIds.png. NAME
mirrors the input: a file keeps its name, an image in a folder (or below a glob's fixed part)
keeps its path relative to it, frame k of clip.mp4 is clip/clip_00000k.

The image is rescaled so that its longer side is --long-side for the network; the class
probabilities are upsampled to the image's full resolution before the argmax, so every output
has the size of its input. --window runs large images in overlapping square crops, --flip
averages with the mirrored image (both cost time, often gain a little accuracy).
"""

EPILOG = """\
examples:
  sci2i predict --checkpoint runs/toycity/checkpoints/final --input data/toycity/target/leftImg8bit/val --output preds
  sci2i predict --checkpoint runs/seg-a/teacher.safetensors --input 'photos/**/*.jpg' street.png --output preds \\
      --long-side 2048 --window 1024 --flip --train-ids
  sci2i predict --checkpoint runs/seg-a/checkpoints/step_00002000.pt --input dashcam.mp4 --output frames
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="label your own images, folders, globs or videos with a trained segmenter",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, metavar="CKPT",
                   help="teacher.safetensors (teacher.yaml beside it), a training checkpoint step_*.pt, or a "
                        "run directory such as runs/toycity/checkpoints/final")
    p.add_argument("--input", required=True, nargs="+", metavar="PATH",
                   help="image files, folders (searched recursively), quoted glob patterns ('a/**/*.jpg') "
                        "or video files")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--long-side", type=int, default=None, metavar="N",
                   help="network input scale: the longer side in px (default: the model's "
                        "data.eval_long_side, else 1024; 0 = each image at its own size)")
    p.add_argument("--window", type=int, default=0, metavar="N",
                   help="sliding-window inference in N x N crops at network scale, for images larger than "
                        "N (default: 0, the whole image at once)")
    p.add_argument("--overlap", type=float, default=1 / 3, metavar="F",
                   help="with --window: fraction by which neighbouring crops overlap (default: 0.33)")
    p.add_argument("--flip", action="store_true", help="average with the prediction of the mirrored image")
    p.add_argument("--batch", type=int, default=4, metavar="N",
                   help="images (or crops) per forward pass (default: 4)")
    p.add_argument("--train-ids", action="store_true",
                   help="also write NAME_trainIds.png: the class index per pixel (255 = none)")
    p.add_argument("--label-ids", action="store_true",
                   help="also write NAME_labelIds.png: Cityscapes labelIds (19- or 16-class models)")
    p.add_argument("--alpha", type=float, default=0.5, metavar="A",
                   help="opacity of the class colours in the overlay, 0-1 (default: 0.5)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--workers", type=int, default=2, metavar="N",
                   help="processes decoding images (default: 2; 0 = in the main process)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (there is none off a terminal)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from sci2i.infer.predict import PredictOptions, predict_images

    opts = PredictOptions(
        long_side=args.long_side, window=args.window, overlap=args.overlap, flip=args.flip,
        batch_size=args.batch, train_ids=args.train_ids, label_ids=args.label_ids,
        overlay_alpha=args.alpha, device=args.device, num_workers=args.workers,
        progress=False if args.no_progress else None,
    )
    summary = predict_images(args.checkpoint, args.input, args.output, opts)
    print(json.dumps(summary))
    return 0
