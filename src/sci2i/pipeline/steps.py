"""The work of each pipeline phase, as calls into the library (one function per phase).

Each returns a JSON-serialisable dict of its outputs, which the runner stores in the phase's
``DONE.json``. A phase interrupted by SIGINT/SIGTERM raises :class:`PhaseInterrupted` after its
trainer has written a checkpoint, so the next ``sci2i run`` resumes it.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from sci2i.config import Config, ConfigError
from sci2i.data.build import build_source_dataset, build_target_dataset, build_translated_dataset
from sci2i.data.custom import is_dataset_file, run_class_set, source_images
from sci2i.data.io import verify_image_file
from sci2i.errors import UserError
from sci2i.eval.kid import KIDFeatures
from sci2i.eval.kid import translation_kid as kid_of_sets
from sci2i.infer.segmenter import load_segmenter
from sci2i.infer.segmenter import write_pseudo_labels as write_labels
from sci2i.infer.translate import load_generator, translate_dataset
from sci2i.models.backbones import build_backbone, build_trunk
from sci2i.toycity import generate, read_manifest
from sci2i.train.i2i import train_i2i as i2i_training
from sci2i.train.mean_teacher import train_segmentation as seg_training
from sci2i.utils.locks import folder_lock
from sci2i.utils.runtime import amp_dtype, resolve_device

log = logging.getLogger("sci2i")


class PhaseInterrupted(UserError):
    """A phase stopped on a signal; its checkpoint is on disk and ``sci2i run`` resumes it."""


def ensure_toycity(cfg: Config, progress: bool = True) -> Config:
    """The dataset roots of a run: the configured ones, or toy-city (the demo).

    toy-city is generated (once) and used only when neither root is set and the preset asks
    for it (``pipeline.toycity_dir``, set by the toy-city presets); any other run without both
    roots is a config error naming the two variables.
    """
    d = cfg.data
    if d.source_root and d.target_root:
        return cfg
    if d.source_root or d.target_root or not cfg.pipeline.toycity_dir:
        missing = [f"data.{k} (or {env})" for k, env in
                   (("source_root", "SCI2I_SOURCE_ROOT"), ("target_root", "SCI2I_TARGET_ROOT"))
                   if not getattr(d, k)]
        raise ConfigError(
            f"{' and '.join(missing)} not set: preset '{cfg.name}' needs both dataset roots, e.g. "
            f"export SCI2I_SOURCE_ROOT=/data/gta5 SCI2I_TARGET_ROOT=/data/cityscapes (README "
            f"\"Reproducing the paper\"; `sci2i run` with no preset runs the toy-city demo)")
    root = toycity_root(cfg)
    seed = cfg.pipeline.toycity_seed
    log.info("no dataset roots given: using toy-city (generation seed %d) in %s", seed, root)
    # A toy-city of other sizes or an older generator version is replaced; any other
    # non-empty folder is an error (generate refuses to overwrite what it did not write).
    with folder_lock(root):  # two runs starting together generate it once
        generate(root, seed=seed, overwrite=read_manifest(root) is not None, progress=progress,
                 **dict(cfg.pipeline.toycity_sizes))
    data = dataclasses.replace(cfg.data, source_format="gta5", source_root=str(root / "source"),
                               target_root=str(root / "target"))
    return dataclasses.replace(cfg, data=data)


def toycity_root(cfg: Config) -> Path:
    """The toy-city folder of ``pipeline.toycity_seed``: ``toycity_dir`` for seed 0 (the demo's),
    ``<toycity_dir>-seed<N>`` for another, so that each seed's dataset roots (and so every phase
    fingerprint) are its own and no seed's folder is ever regenerated for another."""
    root = Path(cfg.pipeline.toycity_dir)
    seed = cfg.pipeline.toycity_seed
    return root if seed == 0 else root.with_name(f"{root.name}-seed{seed}")


def check_data(cfg: Config) -> None:
    """Open every dataset and weights file the pipeline will read, so that a wrong root, a bad
    validation image or a bad weights file fails before the first phase, not hours into the run."""
    run_class_set(cfg.data)  # source and target list the same classes (dataset files)
    build_source_dataset(cfg.data, train=False)
    build_target_dataset(cfg.data, cfg.data.target_train_split, with_labels=False, train=False)
    verify_files(build_target_dataset(cfg.data, cfg.data.target_val_split, with_labels=True, train=False))
    check_weights(cfg)


def verify_files(dataset) -> None:
    """Every image and label file of an evaluation ``dataset`` is whole (a bad validation file
    would otherwise stop the first evaluation, after training)."""
    for i in range(len(dataset)):
        for path in dataset.files(i):
            if path is not None:
                verify_image_file(path)


def check_weights(cfg: Config) -> None:
    """Build each network a phase will build from pretrained weights: every weights file and
    its sidecar is read, and loaded strictly, now."""
    if cfg.model.weights:
        build_backbone(cfg.model.backbone, cfg.model.weights, cfg.model.output_stride)
    if cfg.pipeline.i2i and cfg.discriminator.trunk_weights:
        build_trunk(cfg.discriminator.trunk, cfg.discriminator.trunk_weights)
    if cfg.model.init_checkpoint:
        load_segmenter(cfg.model.init_checkpoint)


def _eval_summary(results: dict | None) -> dict | None:
    if not results:
        return None
    keep = ("per_class", "mIoU19", "mIoU16", "mIoU13", "mIoU", "pixel_accuracy", "num_images", "class_set")
    return {k: results[k] for k in keep if k in results}


def train_segmentation(cfg: Config, folder: Path, init_weights: str = "", progress: bool = True) -> dict:
    """Phase (a) or (c): a mean-teacher run in ``folder``; resumes from its checkpoints."""
    out = seg_training(cfg, out_dir=folder, resume=True, init_weights=init_weights or None, progress=progress)
    if out.get("stopped"):
        raise PhaseInterrupted(f"segmentation stopped at step {out['step']}; run the same command again to resume")
    return {"dir": str(folder), "weights": str(out["weights"]), "step": out["step"],
            "eval": _eval_summary(out.get("eval"))}


def write_pseudo_labels(weights: str, cfg: Config, folder: Path, progress: bool = True) -> dict:
    """ŷ_t: M0's teacher on every unlabelled target image of the I2I phase."""
    device = resolve_device(cfg.perf.device)
    model = load_segmenter(weights, device)
    dataset = build_target_dataset(cfg.data, cfg.data.target_train_split, with_labels=False, train=False)
    label_dir = folder / "labels"
    n = write_labels(model, dataset, label_dir, device, cfg.data.eval_long_side, num_workers=cfg.data.num_workers,
                     amp_dtype=amp_dtype(cfg.perf.amp, device), max_bad_files=cfg.data.max_bad_files,
                     progress=progress)
    return {"dir": str(folder), "label_dir": str(label_dir), "images": n}


def train_i2i(cfg: Config, folder: Path, progress: bool = True) -> dict:
    """Phase (b): G and D in ``folder``; resumes from its checkpoints."""
    out = i2i_training(cfg, folder, resume=True, progress=progress)
    if out.get("stopped"):
        raise PhaseInterrupted(f"I2I training stopped at step {out['step']}; run the same command again to resume")
    return {"dir": str(folder), "generator": out["generator"], "figure": out["figure"], "step": out["step"]}


def translate_source(generator: str, cfg: Config, folder: Path, progress: bool = True) -> dict:
    """G(x_s) for the whole source set, in the source's own layout (a source dataset itself)."""
    device = resolve_device(cfg.perf.device)
    G, _ = load_generator(generator, device)
    root = folder / "data"
    source, fmt = cfg.data.source_root, cfg.data.source_format
    if is_dataset_file(source):  # a dataset file: its training images, into a folder of the same names
        source, fmt = source_images(source), "folder"
    out = translate_dataset(G, source, root, fmt=fmt, z_seed=cfg.run.seed,
                            sample_z=cfg.pipeline.translate_z == "sample", long_side=cfg.data.long_side,
                            device=device, max_images=cfg.data.max_images,
                            max_bad_files=cfg.data.max_bad_files, progress=progress)
    figure = Path(generator).parent / "figures" / "i2i_pairs.png"
    return {"dir": str(folder), "root": str(root), "images": out["images"],
            "figure": str(figure) if figure.is_file() else None}


def translation_kid(translated_root: str, cfg: Config, folder: Path) -> dict:
    """KID of x_s and of G(x_s) against the target train images (sci2i.eval.kid), features of
    the discriminator's ImageNet trunk, every image at ``data.eval_long_side``."""

    device = resolve_device(cfg.perf.device)
    extractor = KIDFeatures(cfg.discriminator.trunk, cfg.discriminator.trunk_weights).to(device)
    result = kid_of_sets(build_source_dataset(cfg.data, train=False),
                         build_translated_dataset(translated_root, cfg.data, train=False),
                         build_target_dataset(cfg.data, cfg.data.target_train_split, with_labels=False, train=False),
                         extractor, device, max_images=cfg.pipeline.kid_images, long_side=cfg.data.eval_long_side)
    log.info("KID (%s features): x_s vs x_t %.4f, G(x_s) vs x_t %.4f", result["features"],
             result["source_vs_target"]["kid"], result["translated_vs_target"]["kid"])
    return {"dir": str(folder), **result}
