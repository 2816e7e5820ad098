"""Write the toy-city benchmark to disk: ``generate`` and the cheap ``is_complete`` check.

Every image has its own random generator, seeded by ``(seed, split code, index)``, so the
result does not depend on the number of worker processes or the order they finish in: the
same seed and sizes give the same bytes. A manifest (``toycity.json``) is written last; its
presence with matching settings (and file counts) means the folder is complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from sci2i.errors import UserError
from sci2i.labels import CLASS_NAMES, label_ids_to_train_ids
from sci2i.toycity import writer
from sci2i.toycity.domains import SOURCE, TARGET
from sci2i.toycity.render_source import render_labels, render_source
from sci2i.toycity.render_target import render_target
from sci2i.toycity.scene import RARE_CLASSES, build_scene
from sci2i.toycity.shapes import rasterize

log = logging.getLogger("sci2i.toycity")

MANIFEST = "toycity.json"
_INCOMPLETE = ".toycity-incomplete"
_OWN_ENTRIES = {"source", "target", MANIFEST, _INCOMPLETE}
#: Bump when the generator's output changes, so stale folders are regenerated.
GENERATOR_VERSION = 2
_SPLIT_CODE = {"source": 0, "train": 1, "val": 2}


@dataclass(frozen=True)
class ToyCitySizes:
    """Image size and image counts (defaults: the CPU demo's benchmark)."""

    width: int = 256
    height: int = 128
    n_source: int = 600
    n_target_train: int = 400
    n_target_val: int = 150

    def __post_init__(self) -> None:
        if self.width < 32 or self.height < 16:
            raise UserError(f"toy-city images must be at least 32x16 px, got {self.width}x{self.height}")
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise UserError(f"toy-city {f.name} must be >= 0, got {getattr(self, f.name)}")


def render_image(split: str, seed: int, index: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Render one image without writing it: ``(rgb [H, W, 3] uint8, labelIds [H, W] uint8)``.

    ``split`` is ``"source"`` or a target split (``"train"``, ``"val"``).
    """
    rng = np.random.default_rng([seed, _SPLIT_CODE[split], index])
    if split == "source":
        scene = build_scene(rng, SOURCE, width, height, RARE_CLASSES[index % len(RARE_CLASSES)])
        part_map, parts = rasterize(scene)
        return render_source(part_map, parts), render_labels(part_map, parts)
    scene = build_scene(rng, TARGET, width, height)
    part_map, parts = rasterize(scene)
    return render_target(rng, scene, part_map, parts), render_labels(part_map, parts)


def _job(args: tuple[str, int, int, int, int, str]) -> np.ndarray:
    """Render and write one image; returns its trainId histogram (256 bins)."""
    split, seed, index, width, height, out = args
    rgb, label_ids = render_image(split, seed, index, width, height)
    if split == "source":
        writer.write_source_pair(Path(out) / "source", index, rgb, label_ids)
    else:
        writer.write_target_pair(Path(out) / "target", split, index, rgb, label_ids)
    return np.bincount(label_ids_to_train_ids(label_ids).ravel(), minlength=256)


def read_manifest(out_dir: str | os.PathLike) -> dict | None:
    """The manifest of a toy-city folder, or None if there is none (or it is unreadable)."""
    try:
        return json.loads((Path(out_dir) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _count(folder: Path, suffix: str) -> int:
    return sum(1 for _ in folder.rglob(f"*{suffix}")) if folder.is_dir() else 0


def is_complete(out_dir: str | os.PathLike, seed: int | None = None, **sizes: int) -> bool:
    """True if ``out_dir`` holds a finished toy-city (with this seed and sizes, if given)."""
    root = Path(out_dir)
    m = read_manifest(root)
    if not m or m.get("generator_version") != GENERATOR_VERSION or (root / _INCOMPLETE).exists():
        return False
    if seed is not None and m.get("seed") != seed:
        return False
    if sizes and m.get("sizes") != asdict(ToyCitySizes(**{**m.get("sizes", {}), **sizes})):
        return False
    s = m["sizes"]
    return (_count(root / "source" / "labels", ".png") == s["n_source"]
            and _count(root / "target" / "gtFine" / "train", "_labelIds.png") == s["n_target_train"]
            and _count(root / "target" / "leftImg8bit" / "val", "_leftImg8bit.png") == s["n_target_val"])


def _prepare(root: Path, overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise UserError(f"toy-city output {root} exists and is not a directory")
    entries = set(os.listdir(root)) if root.exists() else set()
    interrupted = _INCOMPLETE in entries and entries <= _OWN_ENTRIES
    if entries and not (overwrite or interrupted):
        raise UserError(
            f"toy-city output folder {root} is not empty and is not a complete toy-city with these "
            "settings; choose another --output, or pass --overwrite (overwrite=True) to replace its "
            "source/, target/ and manifest")
    for name in entries & _OWN_ENTRIES:
        path = root / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    root.mkdir(parents=True, exist_ok=True)
    (root / _INCOMPLETE).write_text("generation in progress or interrupted\n")


def generate(out_dir: str | os.PathLike, seed: int = 0, *, overwrite: bool = False, workers: int | None = None,
             progress: bool = True, **sizes: int) -> dict:
    """Write the toy-city benchmark to ``out_dir`` and return its manifest.

    ``sizes``: any ``ToyCitySizes`` field (``width``, ``height``, ``n_source``,
    ``n_target_train``, ``n_target_val``). If the folder already holds a complete toy-city with
    the same seed and sizes, nothing is written. A folder with other content is an error unless
    ``overwrite`` (then ``source/``, ``target/`` and the manifest are replaced; other files are
    left alone). ``workers``: processes (default: up to 2, one per CPU core); the output does not
    depend on it.
    """
    cfg = ToyCitySizes(**sizes)
    root = Path(out_dir)
    if is_complete(root, seed, **asdict(cfg)):
        log.info("toy-city in %s is complete (seed %d); nothing to do", root, seed)
        return read_manifest(root)  # type: ignore[return-value]
    _prepare(root, overwrite)
    jobs = [("source", seed, i, cfg.width, cfg.height, str(root)) for i in range(cfg.n_source)]
    jobs += [("train", seed, i, cfg.width, cfg.height, str(root)) for i in range(cfg.n_target_train)]
    jobs += [("val", seed, i, cfg.width, cfg.height, str(root)) for i in range(cfg.n_target_val)]
    workers = workers or max(1, min(2, os.cpu_count() or 1))
    hist = {k: np.zeros(256, np.int64) for k in _SPLIT_CODE}
    from tqdm import tqdm

    from sci2i.utils.progress import on_terminal

    bar = tqdm(total=len(jobs), desc=f"toy-city -> {root}", unit="img", disable=not on_terminal(progress))
    if workers == 1:
        results = map(_job, jobs)
    else:
        pool = ProcessPoolExecutor(max_workers=workers)
        results = pool.map(_job, jobs, chunksize=8)
    try:
        for job, h in zip(jobs, results):
            hist[job[0]] += h
            bar.update()
    finally:
        bar.close()
        if workers != 1:
            pool.shutdown(cancel_futures=True)
    manifest = {
        "dataset": "sci2i-toycity",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "sizes": asdict(cfg),
        "source": {"layout": "gta5", "root": "source", "n_images": cfg.n_source},
        "target": {"layout": "cityscapes", "root": "target",
                   "splits": {"train": cfg.n_target_train, "val": cfg.n_target_val},
                   "cities": {k: list(v) for k, v in writer.CITIES.items()}},
        # Share of labelled pixels per class (trainId order), to document the content shift.
        "class_pixel_share": {k: {name: round(float(h[i]) / max(1, int(h[:19].sum())), 5)
                                  for i, name in enumerate(CLASS_NAMES)} for k, h in hist.items()},
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    (root / _INCOMPLETE).unlink()
    log.info("toy-city written to %s", root)
    return manifest
