"""A trained segmenter on any images: the library behind ``sci2i predict``.

* :func:`collect_inputs` turns paths into named inputs: image files, folders (searched
  recursively), glob patterns (``'photos/**/*.jpg'``) and video files (every frame, read with
  OpenCV). The name mirrors where the image came from and is what the outputs are called:
  a file is its own name, an image in a folder or below a glob's fixed part is its path
  relative to that folder, frame ``k`` of ``clip.mp4`` is ``clip/clip_<k:06d>``.
* :func:`load_predictor` reads every segmenter the project writes (``teacher.safetensors``
  with ``teacher.yaml`` beside it, a training checkpoint ``step_*.pt``, a run directory or
  ``runs/<run>/checkpoints/final``) and refuses, by name, an I2I generator or a file that is
  not a checkpoint.
* :func:`class_logits` is the inference: the class logits of one batch of equal-size
  images, optionally in overlapping sliding windows (for images larger than what the model
  should see at once) and averaged with the horizontal flip.
* :func:`predict_images` runs the whole thing and writes, per image, below ``out_dir``:

  =======================  ============================================================
  ``<name>_color.png``     prediction in the class palette (no class: black)
  ``<name>_overlay.jpg``   the palette blended over the image (``overlay_alpha``)
  ``<name>_trainIds.png``  class index per pixel (``train_ids=True``; 255 = none)
  ``<name>_labelIds.png``  Cityscapes labelIds (``label_ids=True``, 19/16-class models)
  =======================  ============================================================

Scale: the image is rescaled so that its longer side is ``long_side`` (default: the
``data.eval_long_side`` the model was trained with, as in evaluation; 0 keeps the image's own
size). The (averaged) logits are upsampled bilinearly to the image's full resolution and the
argmax is taken there, as the evaluator does, so without window and flip a prediction is
exactly what ``sci2i evaluate`` scores; for very large images the upsampling is done in strips
with the same interpolation weights, so memory stays bounded. Logits rather than softmax
probabilities are averaged over crops and flips: softmax saturates for confident models, and
one rule for every path keeps them comparable.
"""

from __future__ import annotations

import glob
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open
from tqdm import tqdm

from sci2i.data.io import IMAGE_EXTENSIONS, list_images, read_rgb
from sci2i.data.transforms import resize_image, scaled_size
from sci2i.errors import UserError
from sci2i.infer.segmenter import META_KEY, WEIGHTS_NAME, load_segmenter, segmenter_config
from sci2i.infer.translate import GENERATOR_CONFIG, GENERATOR_WEIGHTS  # to recognise a generator
from sci2i.labels import (
    CLASS_COLORS,
    CLASS_NAMES,
    IGNORE_INDEX,
    NUM_CLASSES,
    SYNTHIA16_TRAIN_IDS,
    train_ids_to_label_ids,
)
from sci2i.utils.checkpoint import CheckpointError, load_state
from sci2i.utils.runtime import amp_dtype, resolve_device

log = logging.getLogger("sci2i")

#: Files read as videos (frame by frame, with OpenCV) when named as an input or matched by a glob.
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
#: Above this many C×H×W elements the full-resolution upsampling is done in strips.
MAX_UPSAMPLE_ELEMENTS = 1 << 26
_GLOB_CHARS = set("*?[")

CHECKPOINT_KINDS = ("teacher.safetensors (with teacher.yaml beside it), a training checkpoint "
                    "step_*.pt of `sci2i train-seg`, or a run directory such as runs/toycity/checkpoints/final")


# ----------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class ImageInput:
    """One image file and the name its outputs get."""

    path: Path
    name: str


@dataclass(frozen=True)
class VideoInput:
    """A video file; frame ``k`` of ``a/clip.mp4`` is named ``a/clip/clip_<k:06d>``."""

    path: Path
    prefix: str

    def frame_count(self) -> int:
        cap = cv2.VideoCapture(str(self.path))
        try:
            return max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
        finally:
            cap.release()

    def frames(self) -> Iterator[tuple[str, np.ndarray]]:
        cap = cv2.VideoCapture(str(self.path))
        try:
            k = 0
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                yield f"{self.prefix}/{Path(self.prefix).name}_{k:06d}", np.ascontiguousarray(bgr[:, :, ::-1])
                k += 1
        finally:
            cap.release()
        if k == 0:
            raise UserError(f"OpenCV read no frame from the video {self.path} (unsupported codec or not a video)")


Input = ImageInput | VideoInput


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _strip_ext(name: str) -> str:
    p = Path(name)
    return (p.parent / p.stem).as_posix() if p.suffix else name


def _glob_base(pattern: str) -> Path:
    """The leading folders of ``pattern`` that hold no wildcard (what names are relative to)."""
    parts = []
    for part in Path(pattern).parts[:-1]:
        if _GLOB_CHARS & set(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def _file_input(path: Path, name: str) -> Optional[Input]:
    if _is_video(path):
        return VideoInput(path, _strip_ext(name))
    if _is_image(path):
        return ImageInput(path, _strip_ext(name))
    return None


def collect_inputs(paths: Sequence[str | Path]) -> list[Input]:
    """Image files, folders, globs and videos -> named inputs, in the order given (folders
    and globs sorted). A path that matches nothing, or two inputs with the same output name,
    are a :class:`UserError`."""
    inputs: list[Input] = []
    for raw in paths:
        text = str(raw)
        path = Path(text)
        if path.is_dir():
            found = list_images(path)
            if not found:
                raise UserError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) below the folder {path}")
            inputs += [ImageInput(p, _strip_ext(p.relative_to(path).as_posix())) for p in found]
        elif path.is_file():
            item = _file_input(path, path.name)
            if item is None:
                raise UserError(f"{path} is neither an image ({', '.join(IMAGE_EXTENSIONS)}) nor a video "
                                f"({', '.join(VIDEO_EXTENSIONS)})")
            inputs.append(item)
        elif _GLOB_CHARS & set(text):
            base = _glob_base(text)
            matched = [Path(m) for m in sorted(glob.glob(text, recursive=True)) if Path(m).is_file()]
            items = [_file_input(m, m.relative_to(base).as_posix() if m.is_relative_to(base) else m.name)
                     for m in matched]
            items = [i for i in items if i is not None]
            if not items:
                raise UserError(f"the pattern {text!r} matches no image or video file")
            inputs += items
        else:
            raise UserError(f"input not found: {path} (pass image files, folders, glob patterns or videos)")
    _check_unique(inputs)
    return inputs


def _check_unique(inputs: Sequence[Input]) -> None:
    seen: dict[str, Path] = {}
    for item in inputs:
        key = item.name if isinstance(item, ImageInput) else item.prefix + "/"
        if key in seen and seen[key] != item.path:
            raise UserError(f"{seen[key]} and {item.path} would both be written as {key!r}: "
                            f"predict them in separate runs (or with different --output folders)")
        seen[key] = item.path


class _ImageFiles(torch.utils.data.Dataset):
    """Decodes image files (in DataLoader workers when ``num_workers`` > 0)."""

    def __init__(self, items: Sequence[ImageInput]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[str, np.ndarray]:
        item = self.items[index]
        return item.name, read_rgb(item.path)


def _unbatched(batch):
    return batch


def iter_images(inputs: Sequence[Input], num_workers: int = 0) -> Iterator[tuple[str, np.ndarray]]:
    """(name, H×W×3 uint8 RGB) for every image and video frame, in input order."""
    k = 0
    while k < len(inputs):
        if isinstance(inputs[k], VideoInput):
            yield from inputs[k].frames()
            k += 1
            continue
        run = []
        while k < len(inputs) and isinstance(inputs[k], ImageInput):
            run.append(inputs[k])
            k += 1
        loader = torch.utils.data.DataLoader(_ImageFiles(run), batch_size=None, num_workers=num_workers,
                                             collate_fn=_unbatched)
        yield from loader


def count_images(inputs: Sequence[Input]) -> int:
    """Images plus the frame count the video containers report (for the progress bar)."""
    return sum(1 if isinstance(i, ImageInput) else i.frame_count() for i in inputs)


# ----------------------------------------------------------------------------- checkpoint
def _file_kind(path: Path) -> str:
    """'safetensors', 'torch' (zip or pickle written by torch.save) or 'other', from the bytes."""
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return "torch"
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < os.path.getsize(path):
        return "safetensors"
    return "other"


def _generator_error(path: Path) -> CheckpointError:
    return CheckpointError(
        f"{path} is an I2I generator (phase b), not a segmenter: it translates images "
        f"(`sci2i translate --checkpoint {path}`) but does not label them. For `sci2i predict` pass "
        f"{CHECKPOINT_KINDS}."
    )


def check_segmenter_path(path: str | Path) -> Path:
    """``path`` if it names a segmenter; a clear :class:`CheckpointError` if it names a
    generator, something that is not a checkpoint, or nothing."""
    path = Path(path)
    if path.is_dir():
        if not (path / WEIGHTS_NAME).is_file() and (path / GENERATOR_WEIGHTS).is_file():
            raise _generator_error(path)
        return path
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}. Pass {CHECKPOINT_KINDS}.")
    kind = _file_kind(path)
    if kind == "other":
        raise CheckpointError(f"{path} is not a checkpoint (neither a safetensors file nor a torch "
                              f"checkpoint). Pass {CHECKPOINT_KINDS}.")
    if kind == "safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except Exception as e:  # noqa: BLE001 (safetensors raises its own error type)
            raise CheckpointError(f"{path} is not a valid safetensors file: {e}") from e
        if meta.get("format") == "sci2i-generator" or (
                META_KEY not in meta and (path.with_name(GENERATOR_CONFIG).is_file() or "generator" in path.name)):
            raise _generator_error(path)
        if META_KEY not in meta:
            raise CheckpointError(f"{path} is a safetensors file but not a sci2i segmenter (no '{META_KEY}' "
                                  f"metadata). Pass {CHECKPOINT_KINDS}.")
        return path
    state = load_state(path)
    if "G" in state and "teacher" not in state:
        raise _generator_error(path)
    if "teacher" not in state or "model_meta" not in state:
        raise CheckpointError(f"{path} is a torch checkpoint but not one of `sci2i train-seg` (no teacher). "
                              f"Pass {CHECKPOINT_KINDS}.")
    return path


def load_predictor(path: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, int]:
    """The segmenter at ``path`` (eval mode, on ``device``) and its ``data.eval_long_side``
    (1024 when no config was stored with it)."""
    path = check_segmenter_path(path)
    model = load_segmenter(path, device)
    trained = segmenter_config(path)
    return model, int(trained.data.eval_long_side) if trained else 1024


# ----------------------------------------------------------------------------- classes
@dataclass(frozen=True)
class ClassPalette:
    """What output channel ``k`` of a model means: its trainId and colour (and labelId)."""

    train_ids: tuple[int, ...]
    colors: tuple[tuple[int, int, int], ...]  # indexed by trainId
    cityscapes: bool  # trainIds are Cityscapes trainIds (labelIds can be written)

    @classmethod
    def for_model(cls, num_classes: int, class_names: Optional[Sequence[str]] = None) -> "ClassPalette":
        """``class_names``: the model's (its checkpoint's); a list other than Cityscapes' (or
        SYNTHIA's 16 of them) is a dataset's own classes, channel k = train id k."""
        own = class_names is not None and tuple(class_names) not in (
            CLASS_NAMES, tuple(CLASS_NAMES[i] for i in SYNTHIA16_TRAIN_IDS))
        if num_classes == NUM_CLASSES and not own:
            return cls(tuple(range(NUM_CLASSES)), CLASS_COLORS, True)
        if num_classes == len(SYNTHIA16_TRAIN_IDS) and not own:  # a SYNTHIA model: channel k -> k-th of the 16
            return cls(SYNTHIA16_TRAIN_IDS, CLASS_COLORS, True)
        rng = np.random.default_rng(0)  # any other class count: fixed distinct colours
        extra = [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(max(0, num_classes - NUM_CLASSES))]
        return cls(tuple(range(num_classes)), tuple(CLASS_COLORS) + tuple(extra), False)

    def lut(self) -> np.ndarray:
        """256×3 uint8: trainId -> colour; every non-class id (255) -> black."""
        lut = np.zeros((256, 3), dtype=np.uint8)
        lut[: len(self.colors)] = np.asarray(self.colors, dtype=np.uint8)[:256]
        return lut


# ----------------------------------------------------------------------------- inference
def _window_starts(size: int, window: int, stride: int) -> list[int]:
    """Window origins covering ``[0, size)``: every ``stride`` px, the last one flush with the end."""
    if size <= window:
        return [0]
    starts = list(range(0, size - window, stride))
    return starts + [size - window]


def _forward(model: torch.nn.Module, x: torch.Tensor, amp_dtype: Optional[torch.dtype]) -> torch.Tensor:
    with torch.autocast(x.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        return model(x).float()


@torch.no_grad()
def class_logits(
    model: torch.nn.Module,
    images: torch.Tensor,
    window: int = 0,
    overlap: float = 1 / 3,
    flip: bool = False,
    batch_size: int = 4,
    amp_dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """Class logits N×C×H×W of equal-size images N×3×H×W (RGB in [0, 1]).

    ``window`` > 0 runs the model on ``window``² crops (clipped to the image) placed every
    ``window·(1 - overlap)`` px, the last one flush with the border, and averages the
    logits where crops overlap. ``flip`` also runs every crop mirrored and averages the
    mirrored-back logits. All crops of all images go through the model in batches of
    ``batch_size``.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images N×3×H×W, got {tuple(images.shape)}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    n, _, h, w = images.shape
    th, tw = (min(window, h), min(window, w)) if window > 0 else (h, w)
    stride_h = max(1, int(th * (1 - overlap)))
    stride_w = max(1, int(tw * (1 - overlap)))
    boxes = [(i, y, x) for i in range(n) for y in _window_starts(h, th, stride_h) for x in _window_starts(w, tw, stride_w)]
    views = [False, True] if flip else [False]
    jobs = [(box, v) for box in boxes for v in views]
    total: Optional[torch.Tensor] = None
    count = images.new_zeros(n, 1, h, w)
    for k in range(0, len(jobs), max(1, batch_size)):
        chunk = jobs[k : k + max(1, batch_size)]
        crops = [images[i, :, y : y + th, x : x + tw] for (i, y, x), _ in chunk]
        logits = _forward(model, torch.stack([c.flip(-1) if v else c for c, (_, v) in zip(crops, chunk)]), amp_dtype)
        if total is None:
            total = images.new_zeros(n, logits.shape[1], h, w)
        for ((i, y, x), mirrored), p in zip(chunk, logits):
            total[i, :, y : y + th, x : x + tw] += p.flip(-1) if mirrored else p
            count[i, :, y : y + th, x : x + tw] += 1
    assert total is not None
    return total / count


def _linear_weights(out_size: int, in_size: int, device: torch.device) -> torch.Tensor:
    """out×in matrix of PyTorch's bilinear (align_corners=False) interpolation along one axis."""
    scale = in_size / out_size
    src = ((torch.arange(out_size, device=device, dtype=torch.float64) + 0.5) * scale - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=in_size - 1)
    i1 = (i0 + 1).clamp(max=in_size - 1)
    frac = (src - i0).float()
    m = torch.zeros(out_size, in_size, device=device)
    rows = torch.arange(out_size, device=device)
    m.index_put_((rows, i0), 1 - frac, accumulate=True)
    m.index_put_((rows, i1), frac, accumulate=True)
    return m


def upsample_argmax(scores: torch.Tensor, size: tuple[int, int], max_elements: int = MAX_UPSAMPLE_ELEMENTS) -> torch.Tensor:
    """argmax over classes of C×h×w ``scores`` (logits) upsampled bilinearly to ``size`` (H, W) -> H×W.

    Equal to ``F.interpolate(..., mode="bilinear", align_corners=False).argmax(0)``; above
    ``max_elements`` C·H·W the upsampling is done in strips of rows (bilinear is separable:
    rows ``Ry[r0:r1] @ P_c @ Rx^T``), so a 24-megapixel photo never holds C full-size maps.
    """
    c, h, w = scores.shape
    H, W = size
    if c * H * W <= max_elements:
        return F.interpolate(scores[None], size=(H, W), mode="bilinear", align_corners=False)[0].argmax(0)
    ry = _linear_weights(H, h, scores.device)
    rx = _linear_weights(W, w, scores.device)
    rows = max(1, max_elements // (c * W))
    out = torch.empty(H, W, dtype=torch.long, device=scores.device)
    for r0 in range(0, H, rows):
        strip = torch.einsum("oh,chw->cow", ry[r0 : r0 + rows], scores) @ rx.T
        out[r0 : r0 + rows] = strip.argmax(0)
    return out


# ----------------------------------------------------------------------------- outputs
def output_paths(out_dir: str | Path, name: str) -> dict[str, Path]:
    """Where the outputs of the image ``name`` go (see the module docstring)."""
    base = Path(out_dir) / name
    return {
        "color": base.with_name(base.name + "_color.png"),
        "overlay": base.with_name(base.name + "_overlay.jpg"),
        "train_ids": base.with_name(base.name + "_trainIds.png"),
        "label_ids": base.with_name(base.name + "_labelIds.png"),
    }


def write_outputs(out_dir: str | Path, name: str, image: np.ndarray, train_ids: np.ndarray, palette: ClassPalette,
                  overlay_alpha: float = 0.5, train_ids_png: bool = False, label_ids_png: bool = False) -> dict[str, Path]:
    """Write the colour PNG and overlay JPEG (and the id PNGs on request) of one prediction."""
    paths = output_paths(out_dir, name)
    paths["color"].parent.mkdir(parents=True, exist_ok=True)
    color = palette.lut()[train_ids]
    Image.fromarray(color).save(paths["color"])
    labelled = (train_ids != IGNORE_INDEX)[..., None]
    blend = image.astype(np.float32) * (1 - overlay_alpha) + color.astype(np.float32) * overlay_alpha
    overlay = np.where(labelled, blend.round(), image).clip(0, 255).astype(np.uint8)
    Image.fromarray(overlay).save(paths["overlay"], quality=90)
    written = {"color": paths["color"], "overlay": paths["overlay"]}
    if train_ids_png:
        Image.fromarray(train_ids).save(paths["train_ids"])
        written["train_ids"] = paths["train_ids"]
    if label_ids_png:
        Image.fromarray(train_ids_to_label_ids(train_ids)).save(paths["label_ids"])
        written["label_ids"] = paths["label_ids"]
    return written


@dataclass
class PredictOptions:
    """How :func:`predict_images` runs (the ``sci2i predict`` options)."""

    long_side: Optional[int] = None  # network scale; None: the model's data.eval_long_side; 0: as is
    window: int = 0  # sliding-window size in px at network scale; 0: the whole image at once
    overlap: float = 1 / 3
    flip: bool = False
    batch_size: int = 4
    train_ids: bool = False
    label_ids: bool = False
    overlay_alpha: float = 0.5
    device: str = "auto"
    num_workers: int = 2
    progress: Optional[bool] = None  # None: a bar only when stderr is a terminal


def _batches(stream: Iterator[tuple[str, np.ndarray]], size: int) -> Iterator[list[tuple[str, np.ndarray]]]:
    batch: list = []
    for item in stream:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict_images(checkpoint: str | Path, inputs: Sequence[str | Path], out_dir: str | Path,
                   options: Optional[PredictOptions] = None) -> dict:
    """Predict every image, folder, glob and video of ``inputs`` with the segmenter at
    ``checkpoint``; write the outputs below ``out_dir``. Returns a summary dict."""

    opts = options or PredictOptions()
    if opts.window < 0 or opts.batch_size < 1 or not 0 <= opts.overlay_alpha <= 1:
        raise UserError("--window must be >= 0, --batch >= 1 and --alpha in [0, 1]")
    items = collect_inputs(inputs)  # input errors before the model is loaded
    device = resolve_device(opts.device)
    model, trained_long_side = load_predictor(checkpoint, device)
    palette = ClassPalette.for_model(model.num_classes, model.class_names)
    if opts.label_ids and not palette.cityscapes:
        raise UserError(f"the model has {model.num_classes} classes, not Cityscapes' 19 (or SYNTHIA's 16): "
                        f"it has no Cityscapes labelIds; write --train-ids instead")
    long_side = trained_long_side if opts.long_side is None else opts.long_side
    dtype = amp_dtype("auto", device)
    lut = torch.as_tensor(palette.train_ids, device=device)
    total = count_images(items)
    show = sys.stderr.isatty() if opts.progress is None else opts.progress
    bar = None
    if show:
        bar = tqdm(total=total, desc="predict", unit="img")
    out_dir = Path(out_dir)
    n = 0
    try:
        for batch in _batches(iter_images(items, opts.num_workers), opts.batch_size):
            # Images of one network size share forward passes; others go in their own group.
            groups: dict[tuple[int, int], list[int]] = {}
            smalls = []
            for k, (_, image) in enumerate(batch):
                h, w = image.shape[:2]
                sh, sw = scaled_size(h, w, long_side) if long_side > 0 else (h, w)
                smalls.append(resize_image(image, sh, sw))
                groups.setdefault((sh, sw), []).append(k)
            for members in groups.values():
                x = torch.stack([torch.from_numpy(smalls[k]).permute(2, 0, 1) for k in members])
                x = x.to(device).float().div_(255)
                logits = class_logits(model, x, window=opts.window, overlap=opts.overlap, flip=opts.flip,
                                            batch_size=opts.batch_size, amp_dtype=dtype)
                for k, p in zip(members, logits):
                    name, image = batch[k]
                    train_ids = lut[upsample_argmax(p, image.shape[:2])].to("cpu", torch.uint8).numpy()
                    write_outputs(out_dir, name, image, train_ids, palette, opts.overlay_alpha,
                                  opts.train_ids, opts.label_ids)
                    n += 1
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    log.info("predicted %d images into %s", n, out_dir)
    return {"images": n, "out_dir": str(out_dir), "long_side": long_side, "window": opts.window,
            "flip": opts.flip, "num_classes": model.num_classes}
