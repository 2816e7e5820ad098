"""Translate synthetic images with a trained generator: ``G(x_s)`` for phase (c) and for sharing.

* :func:`load_generator` rebuilds G from ``generator_ema.safetensors`` and the
  ``generator.yaml`` beside it (or from a run directory holding both).
* :func:`translate_dataset` translates a plain image folder (``fmt="folder"``), or a GTA5 /
  SYNTHIA root keeping its layout, through the reader training uses (the same skip list) (``images/`` + ``labels/``; ``RGB/`` + ``GT/LABELS/``), so
  the output is itself a source dataset that
  :func:`sci2i.data.build.build_translated_dataset` and :class:`~sci2i.data.GTA5Dataset`
  read. Labels are hard-linked (copied where linking fails); when ``long_side`` changes the
  image size they are resized with nearest neighbour in their own format instead, so image
  and label always have the same size.

Latent code (the paper does not say how translations are sampled at inference):

* ``z_seed=S`` (default 0): one fixed ``z`` for every image — a single, consistent "target
  style"; the per-pixel noise is seeded per image from ``(S, image name)``.
* ``sample_z=True``: a different ``z`` per image, reproducible from ``(seed, image name)``:
  more diverse translations.

Both are deterministic and independent of the order in which images are processed.
"""

from __future__ import annotations

import logging
import os
import shutil
import zlib
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import torch
import yaml
from PIL import Image
from tqdm import tqdm

from sci2i.config.schema import GeneratorConfig
from sci2i.data.build import source_reader
from sci2i.data.robust import BadFileLedger
from sci2i.data.transforms import resize_image, scaled_size
from sci2i.errors import DataError, UserError
from sci2i.models.generator import Generator
from sci2i.utils.progress import on_terminal
from sci2i.utils.checkpoint import load_state_dict_strict, load_weights

log = logging.getLogger("sci2i")

#: The exported generator (phase (b)): G's EMA weights and its config beside them; train/i2i.py
#: writes these names, sci2i translate / predict read them.
GENERATOR_WEIGHTS = "generator_ema.safetensors"
GENERATOR_CONFIG = "generator.yaml"
FORMATS = {
    # fmt: (image folder, label folder) relative to the dataset root
    "folder": ("", None),
    "gta5": ("images", "labels"),
    "synthia": ("RGB", "GT/LABELS"),
}


def load_generator(ckpt: str | Path, device: torch.device | str = "cpu") -> tuple[Generator, dict]:
    """G in eval mode from a ``.safetensors`` file (``generator.yaml`` beside it) or a run dir."""
    path = Path(ckpt)
    if path.is_dir():
        path = path / GENERATOR_WEIGHTS
    if not path.is_file():
        raise UserError(f"generator weights not found: {path} (pass generator_ema.safetensors or its run directory)")
    cfg_path = path.with_name(GENERATOR_CONFIG)
    if not cfg_path.is_file():
        raise UserError(f"{cfg_path} is missing: it holds the generator's widths needed to rebuild it")
    meta = yaml.safe_load(cfg_path.read_text()) or {}
    gcfg = GeneratorConfig(**meta.get("generator", {}))
    G = Generator(gcfg)
    load_state_dict_strict(G, load_weights(path), str(path))
    return G.to(device).eval().requires_grad_(False), meta


def _name_seed(seed: int, name: str) -> int:
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode())]).generate_state(1)[0])


@torch.no_grad()
def translate_image(G: Generator, image: np.ndarray, z: Optional[torch.Tensor], noise_seed: int,
                    device: torch.device | str = "cpu") -> np.ndarray:
    """One H×W×3 uint8 image -> translated H×W×3 uint8 (z=None: drawn from ``noise_seed``)."""
    device = torch.device(device)
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255).unsqueeze(0).to(device)
    gen = torch.Generator(device=device).manual_seed(noise_seed)
    if z is None:
        z = G.sample_z(1, device, gen)[0]
    y = G(x, z.to(device), generator=gen)[0]
    return (y.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy())


def _place_label(src: Path, dst: Path, size_hw: Optional[tuple[int, int]], fmt: str) -> None:
    """Link/copy a label; resize it (nearest, same format) when the image size changed."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    if size_hw is None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
        return
    h, w = size_hw
    if fmt == "gta5":  # palette PNG: keep indices and palette
        with Image.open(src) as im:
            im.load()
            im.resize((w, h), Image.NEAREST).save(dst)
    else:  # SYNTHIA: 16-bit multi-channel PNG
        raw = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise UserError(f"cannot read label {src}")
        cv2.imwrite(str(dst), cv2.resize(raw, (w, h), interpolation=cv2.INTER_NEAREST_EXACT))


def translate_dataset(
    G: Generator,
    input_dir: str | Path,
    output_dir: str | Path,
    fmt: str = "folder",
    z_seed: int = 0,
    sample_z: bool = False,
    long_side: int = 0,
    device: torch.device | str = "cpu",
    max_images: int = 0,
    progress: bool = True,
    max_bad_files: int = 20,
) -> dict:
    """Translate every sample of the ``fmt`` reader of ``input_dir`` into ``output_dir``.

    The samples are those training reads (:func:`sci2i.data.build.source_reader`, the same
    reader classes): a GTA5 pair whose image and label sizes differ, or whose label is
    missing or unreadable, is not translated; an image that cannot be decoded is named in the
    log, counted against ``max_bad_files`` and skipped. ``long_side`` > 0 rescales each image so
    its longer side is ``long_side`` before translation (0 keeps the size). Returns
    ``{"images": n, "labels": n, "skipped": n, "output": path, "format": fmt}``.
    """
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    in_root, out_root = Path(input_dir), Path(output_dir)
    img_sub, lbl_sub = FORMATS[fmt]
    img_dir = in_root / img_sub if img_sub else in_root
    if not img_dir.is_dir():
        raise UserError(f"input folder not found: {img_dir} (format {fmt!r} expects "
                        f"{'<root>/' + img_sub if img_sub else 'a folder of images'})")
    if out_root.resolve() == in_root.resolve():
        raise UserError("--output must differ from --input (translations would overwrite the sources)")
    reader = source_reader(in_root, fmt, max_images=max_images)
    device = torch.device(device)
    G = G.to(device).eval()
    fixed_z = None if sample_z else G.sample_z(1, device, torch.Generator(device=device).manual_seed(z_seed))[0]
    ledger = BadFileLedger(max_bad_files)
    n_images = n_labels = 0
    for index in tqdm(range(len(reader)), desc="translate", disable=not on_terminal(progress), dynamic_ncols=True):
        rel = Path(reader.name(index)).relative_to(img_sub) if img_sub else Path(reader.name(index))
        try:
            image, _ = reader.read(index)  # the label too: training reads it, so must we
        except DataError as e:
            ledger.report(str(e))
            continue
        size_hw = None
        if long_side > 0:
            h, w = scaled_size(image.shape[0], image.shape[1], long_side)
            if (h, w) != image.shape[:2]:
                image, size_hw = resize_image(image, h, w), (h, w)
        out = translate_image(G, image, fixed_z, _name_seed(z_seed, rel.as_posix()), device)
        dst = (out_root / img_sub / rel).with_suffix(".png")
        dst.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(dst), cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
        n_images += 1
        _, label = reader.files(index)
        if lbl_sub is not None and label is not None:
            _place_label(label, out_root / lbl_sub / rel.with_suffix(".png"), size_hw, fmt)
            n_labels += 1
    log.info("translated %d images (%d labels) into %s", n_images, n_labels, out_root)
    return {"images": n_images, "labels": n_labels, "skipped": len(ledger), "output": str(out_root),
            "format": fmt}
