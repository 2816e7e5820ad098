"""Trained segmenters on disk: save, load, predict, write pseudo labels.

* :func:`save_segmenter` writes a :class:`~sci2i.models.deeplab.DeepLabV2` (normally the
  teacher F_T) as ``<name>.safetensors``; the architecture and the backbone's input convention
  travel in the file's metadata (``sci2i_model``), the full config as a YAML file beside it.
* :func:`load_segmenter` reads such a file, a training checkpoint (``step_*.pt``, its teacher)
  or a run directory (its ``teacher.safetensors``, else its newest checkpoint) and returns the
  model in eval mode. No ImageNet weights are needed to load.
* :func:`predict_logits` is the ``predict_fn`` of :func:`sci2i.eval.evaluator.evaluate_segmenter`.
* :func:`write_pseudo_labels`: the teacher's argmax ŷ_t on target images as trainId PNGs at the
  image's full resolution, named by :func:`sci2i.data.datasets.pseudo_label_path` so that
  ``CityscapesDataset(label_dir=...)`` reads them back; optionally the confidence max softmax
  as a uint8 PNG (0-255) beside each, ``<stem>_confidence.png``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from sci2i.config import config_from_yaml_text, load_config
from sci2i.config.schema import DataConfig
from sci2i.data.build import build_target_dataset
from sci2i.data.custom import check_class_names
from sci2i.data.datasets import pseudo_label_path, to_tensors
from sci2i.data.robust import BadFileLedger
from sci2i.data.transforms import EvalTransform
from sci2i.data.workers import worker_count, worker_init
from sci2i.errors import DataError
from sci2i.eval.evaluator import evaluate_segmenter
from sci2i.labels import ALL_CLASSES, CLASS_NAMES
from sci2i.models.deeplab import DeepLabV2
from sci2i.models.input_norm import InputNorm
from sci2i.utils.checkpoint import (
    CheckpointError,
    CheckpointManager,
    load_state,
    load_state_dict_strict,
    load_weights,
    save_weights,
)
from sci2i.utils.distributed import unwrap
from sci2i.utils.progress import on_terminal
from sci2i.utils.runtime import amp_dtype, resolve_device

log = logging.getLogger("sci2i")

META_KEY = "sci2i_model"
WEIGHTS_NAME = "teacher.safetensors"


def model_meta(model: DeepLabV2) -> dict:
    """What is needed to rebuild ``model`` without its pretrained weights."""
    meta = {
        "arch": "deeplabv2",
        "backbone": model.backbone_name,
        "num_classes": model.num_classes,
        "class_names": list(model.class_names),
        "aspp_rates": list(model.classifier.rates),
        "input_norm": model.input_norm,
        "output_stride": model.backbone.stride,
        "head": model.head_name,
    }
    if model.backbone.variant:  # ResNet-101: stride placement of its weights' layout
        meta["backbone_variant"] = model.backbone.variant
    return meta


def build_from_meta(meta: dict) -> DeepLabV2:
    model = DeepLabV2(meta["backbone"], "", num_classes=int(meta["num_classes"]),
                      class_names=meta.get("class_names"),  # absent in older checkpoints
                      aspp_rates=tuple(meta["aspp_rates"]), freeze_bn=True,
                      head=meta.get("head", "aspp"), output_stride=int(meta.get("output_stride", 8)),
                      backbone_variant=meta.get("backbone_variant", ""))
    model.backbone.norm = InputNorm(meta["input_norm"])
    return model


def save_segmenter(model: DeepLabV2, path: str | Path, config_yaml: str = "") -> Path:
    """``path`` (.safetensors) with the architecture in its metadata; config YAML beside it."""

    model = unwrap(model)  # type: ignore[assignment]
    path = Path(path)
    save_weights(model.state_dict(), path, metadata={META_KEY: json.dumps(model_meta(model))})
    if config_yaml:
        path.with_suffix(".yaml").write_text(config_yaml)
    return path


def _safetensors_meta(path: Path) -> dict:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # noqa: BLE001 (safetensors raises its own error type)
        raise CheckpointError(f"{path} is not a valid safetensors file: {e}") from e
    if META_KEY not in meta:
        raise CheckpointError(
            f"{path} has no '{META_KEY}' metadata: it was not written by sci2i's segmentation "
            f"training (expected teacher.safetensors from `sci2i train-seg`)"
        )
    return json.loads(meta[META_KEY])


def _resolve(path: Path) -> Path:
    if path.is_dir():
        if (path / WEIGHTS_NAME).is_file():
            return path / WEIGHTS_NAME
        latest = CheckpointManager(path / "checkpoints").latest()
        if latest is None:
            raise CheckpointError(f"{path} holds neither {WEIGHTS_NAME} nor checkpoints/step_*.pt")
        return latest
    if not path.is_file():
        raise CheckpointError(f"segmenter checkpoint not found: {path}")
    return path


def load_segmenter(path: str | Path, device: str | torch.device = "cpu") -> DeepLabV2:
    """The segmenter (teacher) stored at ``path``, on ``device``, in eval mode."""
    path = _resolve(Path(path))
    if path.suffix == ".safetensors":
        meta = _safetensors_meta(path)
        state = load_weights(path)
    else:
        ckpt = load_state(path)
        if "teacher" not in ckpt or "model_meta" not in ckpt:
            raise CheckpointError(f"{path} is not a segmentation training checkpoint (no teacher)")
        meta, state = ckpt["model_meta"], ckpt["teacher"]
    model = build_from_meta(meta)
    load_state_dict_strict(model, state, str(path))
    model.requires_grad_(False)
    return model.to(device).eval()


def predict_logits(model: torch.nn.Module, images: torch.Tensor, amp_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """Float logits of ``model`` (eval mode, no grad) on RGB [0, 1] images, at input size."""
    with torch.no_grad(), torch.autocast(images.device.type, dtype=amp_dtype or torch.float32,
                                         enabled=amp_dtype is not None):
        return model(images).float()


class _FullSizeItems(Dataset):
    """Images rescaled to ``long_side`` for the network, with their original size and name.

    Reads any dataset of the reader interface (sci2i.data.datasets), a concatenation included;
    an unreadable image yields ``{"name", "error"}`` instead, for the writer to report and skip.
    """

    def __init__(self, dataset: Dataset, long_side: int) -> None:
        self.dataset = dataset
        self.transform = EvalTransform(long_side)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        name = self.dataset.name(index)
        try:
            image, _ = self.dataset.read(index)
        except DataError as e:
            return {"name": name, "error": str(e)}
        small, _ = self.transform(image)
        tensor, _ = to_tensors(small, None)
        return {"image": tensor, "name": name, "size": torch.tensor(image.shape[:2])}


def confidence_path(label_dir: str | Path, name: str) -> Path:
    """``<label_dir>/<city>/<stem>_confidence.png`` beside the pseudo label of ``name``."""
    p = pseudo_label_path(label_dir, name)
    return p.with_name(p.stem + "_confidence.png")


@torch.no_grad()
def write_pseudo_labels(
    model: torch.nn.Module,
    dataset: Dataset,
    out_dir: str | Path,
    device: torch.device | str,
    long_side: int,
    confidence: bool = False,
    num_workers: int = 0,
    amp_dtype: Optional[torch.dtype] = None,
    progress: bool = True,
    max_bad_files: int = 20,
) -> int:
    """ŷ_t = argmax F_T(x_t) for every image of ``dataset`` as trainId PNGs; returns the count.

    The network sees the image rescaled to ``long_side`` (as in evaluation); its logits are
    upsampled bilinearly to the original image size before the argmax. Unreadable images are
    named in the log, counted against ``max_bad_files`` and get no pseudo label, so the I2I
    phase leaves them out (:func:`sci2i.data.datasets.with_pseudo_labels`).
    """
    device = torch.device(device)
    out_dir = Path(out_dir)
    ledger = BadFileLedger(max_bad_files)
    workers = worker_count(num_workers)
    loader = DataLoader(_FullSizeItems(dataset, long_side), batch_size=1, num_workers=workers,
                        worker_init_fn=worker_init if workers > 0 else None)
    items = loader

    if on_terminal(progress):  # a bar on a terminal only, never in a log file
        items = tqdm(loader, total=len(dataset), desc="pseudo-label", leave=False)
    n = 0
    for item in items:
        if "error" in item:
            ledger.report(item["error"][0])
            continue
        logits = predict_logits(model, item["image"].to(device), amp_dtype)
        h, w = (int(v) for v in item["size"][0])
        logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        prob, label = logits.softmax(dim=1).max(dim=1)
        name = item["name"][0]
        path = pseudo_label_path(out_dir, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(label[0].to("cpu", torch.uint8).numpy()).save(path)
        if confidence:
            conf = (prob[0] * 255).round().clamp(0, 255).to("cpu", torch.uint8).numpy()
            Image.fromarray(np.ascontiguousarray(conf)).save(confidence_path(out_dir, name))
        n += 1
    log.info("wrote %d pseudo labels to %s", n, out_dir)
    return n


def segmenter_config(path: str | Path):
    """The training :class:`~sci2i.config.Config` stored with a segmenter, or ``None``.

    ``teacher.yaml`` beside ``teacher.safetensors``, or the ``config`` of a checkpoint.
    """
    path = _resolve(Path(path))
    try:
        if path.suffix == ".safetensors":
            side = path.with_suffix(".yaml")
            return load_config(str(side)) if side.is_file() else None
        text = load_state(path).get("config", "")
        return config_from_yaml_text(text, f"the config stored in {path}") if text else None
    except Exception as e:  # noqa: BLE001 — a stale config must not block evaluation
        log.warning("could not read the config stored with %s (%s); using defaults", path, e)
        return None


def evaluate_checkpoint(
    checkpoint: str | Path,
    target_root: str | Path,
    split: str = "val",
    class_set: str = "cityscapes19",
    export_dir: str | Path | None = None,
    max_images: int = 0,
    long_side: Optional[int] = None,
    device: str = "auto",
    num_workers: int = 2,
    progress: bool = True,
) -> dict:
    """``sci2i evaluate --checkpoint``: a stored segmenter scored on a labelled target split.

    The input scale is ``long_side``, else the ``data.eval_long_side`` the model was trained
    with, else 1024; logits are upsampled to the full label resolution by the evaluator.
    """

    dev = resolve_device(device)
    model = load_segmenter(checkpoint, dev)
    trained = segmenter_config(checkpoint)
    eval_long_side = long_side or (trained.data.eval_long_side if trained else 1024)
    data = DataConfig(target_root=str(target_root), eval_long_side=eval_long_side, max_images=max_images)
    dataset = build_target_dataset(data, split, with_labels=True, train=False)
    # the checkpoint's classes (its metadata) against the dataset's: an error naming both lists
    names = tuple(getattr(dataset, "class_names", None) or CLASS_NAMES)
    check_class_names(names, f"the dataset {target_root}", model.class_names, f"the checkpoint {checkpoint}")
    if names != CLASS_NAMES and class_set == "cityscapes19":  # the default: every class of the dataset
        class_set = ALL_CLASSES
    dtype = amp_dtype("auto", dev)
    return evaluate_segmenter(lambda x: predict_logits(model, x, dtype), dataset, dev,
                              export_dir=export_dir, progress=progress, class_set=class_set,
                              num_workers=num_workers, class_names=names)
