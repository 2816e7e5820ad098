"""``sci2i evaluate``: per-class IoU, mIoU19/16/13 on Cityscapes (docs/METHOD.md, "Data").

Two sources of predictions, one scoring path (:mod:`sci2i.eval.evaluator`):

* ``--predictions DIR``: a folder of exported ``*_labelIds.png`` (or trainId PNGs with
  ``--train-ids``) scored against gtFine, as the official Cityscapes evaluator would;
* ``--checkpoint CKPT``: a segmentation model, evaluated by
  :func:`sci2i.eval.evaluator.evaluate_segmenter` (wired in :func:`evaluate_checkpoint`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from sci2i.errors import UserError
from sci2i.labels import CLASS_SETS  # not sci2i.eval: that imports torch, and --help must not

DESCRIPTION = """\
Score semantic segmentation on a labelled Cityscapes split at full label resolution and print
the per-class IoU table in the paper's class order with mIoU19 (GTA5 -> Cityscapes, Table 1) or
mIoU16 and mIoU13 (SYNTHIA -> Cityscapes, Table 2).

Predictions are matched to ground truth by image stem: the prediction of
frankfurt_000000_000294_leftImg8bit.png is the one PNG below DIR whose name starts with
frankfurt_000000_000294_ (*_color.png files are skipped; if DIR has a labelIds/ subfolder, as
written by --export, that is used).
"""

EPILOG = """\
examples:
  sci2i evaluate --predictions out/preds --target-root /data/cityscapes
  sci2i evaluate --predictions pseudo/ --train-ids --split train --json pl_quality.json
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="mIoU19/16/13 and the per-class IoU table of predictions or a checkpoint",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--predictions", metavar="DIR",
        help="folder of prediction PNGs (Cityscapes labelIds, e.g. from --export) to score",
    )
    src.add_argument(
        "--checkpoint", metavar="CKPT",
        help="segmentation model checkpoint to evaluate (runs the model on the split)",
    )
    p.add_argument(
        "--target-root", metavar="ROOT", default=os.environ.get("SCI2I_TARGET_ROOT", ""),
        help="Cityscapes root with leftImg8bit/ and gtFine/, or with --checkpoint a dataset file "
        "(.yaml, scored on its own classes; README \"Your own data\") (default: $SCI2I_TARGET_ROOT)",
    )
    p.add_argument("--split", default="val", help="Cityscapes split with gtFine labels (default: val)")
    p.add_argument(
        "--class-set", choices=CLASS_SETS, default="cityscapes19",
        help="columns of the table: cityscapes19 (mIoU19, GTA5 source) or synthia16 "
        "(mIoU16 and mIoU13, SYNTHIA source) (default: cityscapes19)",
    )
    p.add_argument(
        "--train-ids", action="store_true",
        help="prediction PNGs hold trainIds (0-18, 255 = none; e.g. pseudo labels) instead of "
        "Cityscapes labelIds",
    )
    p.add_argument(
        "--export", metavar="DIR", default=None,
        help="with --checkpoint: also write predictions as DIR/labelIds/**/*_labelIds.png "
        "(official evaluator / benchmark format) and DIR/color/**/*_color.png",
    )
    p.add_argument("--max-images", type=int, default=0, metavar="N", help="score only the first N images (0 = all)")
    p.add_argument("--long-side", type=int, default=None, metavar="N",
                   help="with --checkpoint: network input scale (default: the model's data.eval_long_side)")
    p.add_argument("--device", default="auto", help="with --checkpoint: auto | cpu | cuda | cuda:N")
    p.add_argument("--json", metavar="OUT", default=None, help="also write all scores to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=main)


def evaluate_checkpoint(args: argparse.Namespace) -> dict:
    """Evaluate a segmentation checkpoint; returns the results dict of sci2i.eval.evaluator.

    ``args.checkpoint`` is ``teacher.safetensors``, a training checkpoint or a run directory
    (see :func:`sci2i.infer.segmenter.evaluate_checkpoint`); the input scale is the model's
    ``data.eval_long_side`` unless ``--long-side`` is given.
    """
    from sci2i.infer.segmenter import evaluate_checkpoint as evaluate_segmenter_checkpoint

    return evaluate_segmenter_checkpoint(
        args.checkpoint, args.target_root, split=args.split, class_set=args.class_set,
        export_dir=args.export, max_images=args.max_images, long_side=args.long_side,
        device=args.device, progress=not args.no_progress,
    )


def main(args: argparse.Namespace) -> int:
    from sci2i.eval.evaluator import results_to_json, score_prediction_folder
    from sci2i.eval.metrics import headline_metrics

    if not args.target_root:
        raise UserError("--target-root is not set (nor SCI2I_TARGET_ROOT): pass the Cityscapes root folder")
    if args.checkpoint:
        results = evaluate_checkpoint(args)
    else:
        results = score_prediction_folder(
            args.predictions, args.target_root, split=args.split, train_ids=args.train_ids,
            class_set=args.class_set, max_images=args.max_images, progress=not args.no_progress,
        )
    print(f"{results['num_images']} images of {args.target_root} '{args.split}'")
    print(results["table"])
    for key in headline_metrics(results["class_set"]):  # "all" for a dataset file's own classes
        print(f"{key}: {results[key]:.2f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results_to_json(results), indent=2) + "\n")
        print(f"scores written to {args.json}", file=sys.stderr)
    return 0
