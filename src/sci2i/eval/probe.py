"""Domain-gap analysis by linear probe (paper Sec. 4.4, Table 5).

A trained segmentation model's features are judged by how well a *linear* classifier on top
of them can segment the target domain when it is given target labels: the backbone (and
fc6/fc7 with ``model.head=fc_aspp``) is frozen, the last classification layer (DeepLab-v2's
ASPP, linear in its input ``DeepLabV2.features``) is re-initialised
and trained alone on target train labels, and the result is scored on target val.

With three probes — an oracle trained on target labels, a source-only model, and ours —
the share of the domain gap our features close is::

    gap closed = (ours − source) / (oracle − source)          (paper: 68.3 %)

The features are computed without gradient (and the frozen BatchNorms use their running
statistics), so each probe step costs one forward of the frozen layers and one classifier step.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from sci2i.config import Config
from sci2i.data.build import build_target_dataset
from sci2i.data.stream import infinite_loader
from sci2i.eval.evaluator import evaluate_segmenter
from sci2i.labels import IGNORE_INDEX
from sci2i.infer.segmenter import load_segmenter, predict_logits, save_segmenter
from sci2i.train.loop import clip_grad_norm, make_optimizer
from sci2i.utils.progress import TrainingLog
from sci2i.utils.runtime import amp_dtype, resolve_device, seed_everything

log = logging.getLogger("sci2i")


def gap_closed(ours: float, source: float, oracle: float) -> float:
    """(ours − source) / (oracle − source), as a fraction; NaN when oracle == source."""
    denom = oracle - source
    return (ours - source) / denom if denom != 0 else float("nan")


#: Below this oracle − source margin (mIoU points) the gap closed is not reported: one seed of a
#: short run moves a probe by about ±1 point (docs/RESULTS.md), so the ratio would be noise.
MIN_GAP_POINTS = 2.0


def format_gap(ours: float, source: float, oracle: float) -> str:
    """The gap-closed sentence of Table 5; undefined when the oracle does not clearly beat source only."""
    if oracle - source < MIN_GAP_POINTS:
        return (f"Domain gap closed: undefined — the oracle's probe ({oracle:.1f}) is not at least "
                f"{MIN_GAP_POINTS:.0f} points above the source-only probe ({source:.1f}), so the ratio "
                f"would be noise (paper: 68.3 %).")
    g = gap_closed(ours, source, oracle)
    return f"Domain gap closed: (ours − source) / (oracle − source) = {100 * g:.1f} % (paper: 68.3 %)."


def linear_probe(weights: str | Path, cfg: Config, out_dir: str | Path, progress: bool = True) -> dict:
    """Retrain only the classifier of the segmenter at ``weights`` on target train labels.

    Returns the evaluation summary on target val (``mIoU19`` etc.) and writes
    ``out_dir/probe.json`` and ``out_dir/probe_classifier.safetensors``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.perf.device)
    seed_everything(cfg.run.seed)
    model = load_segmenter(weights, device)
    model.reset_classifier()
    model.freeze_backbone()
    model.classifier.requires_grad_(True)
    model.train()  # BatchNorms stay frozen (freeze_bn); only the classifier is trainable
    opt = make_optimizer(model.classifier.parameters(), cfg.probe.lr, (0.9, 0.99), 0.0, cfg.perf, device)
    train_set = build_target_dataset(cfg.data, cfg.data.target_train_split, with_labels=True, train=True)
    batches = infinite_loader(train_set, cfg.probe.batch_size, cfg.data.num_workers, cfg.run.seed,
                              pin_memory=device.type == "cuda")
    bar = TrainingLog("probe", cfg.probe.steps, 0, progress, device)
    loss = torch.zeros(())
    for step in range(cfg.probe.steps):
        batch = next(batches)
        images = batch["image"].to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        with torch.no_grad():
            feats = model.features(images)  # backbone (and fc6/fc7): frozen
        logits = F.interpolate(model.classifier(feats), size=images.shape[-2:], mode="bilinear",
                               align_corners=False)
        loss = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_grad_norm(model.classifier.parameters(), cfg.seg.grad_clip)
        opt.step()
        bar.update(1)
        if (step + 1) % max(1, cfg.seg.log_every) == 0 or step + 1 == cfg.probe.steps:
            bar.report(step + 1, {"ce": loss.detach()})
    bar.close()
    model.eval()
    val_set = build_target_dataset(cfg.data, cfg.data.target_val_split, with_labels=True, train=False)
    dtype = amp_dtype(cfg.perf.amp, device)
    results = evaluate_segmenter(lambda x: predict_logits(model, x, dtype), val_set, device,
                                 progress=progress, class_set=cfg.data.class_set)
    save_segmenter(model, out / "probe_classifier.safetensors")
    summary = {k: results[k] for k in ("per_class", "mIoU19", "mIoU16", "mIoU13") if k in results}
    summary.update(weights=str(weights), steps=cfg.probe.steps, probe=dataclasses.asdict(cfg.probe),
                   final_loss=float(loss.detach()))
    (out / "probe.json").write_text(json.dumps(summary, indent=2))
    log.info("linear probe of %s: mIoU19 %.1f", weights, summary["mIoU19"])
    return summary


def probe_run(cfg: Config, run_dir: Path, progress: bool = True) -> dict:
    """Probe the final model of a finished ``sci2i run`` directory (cached in ``run_dir/probe``).

    The cached result is reused only if it probed the same weights (phase folders are named by
    a content fingerprint, so the path identifies them) with the same probe settings; a row
    directory whose run now ends in another model is probed again. ``cfg`` has its dataset
    roots (the caller resolves toy-city: :func:`sci2i.pipeline.steps.ensure_toycity`).
    """
    out = Path(run_dir) / "probe"
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    weights = summary["phases"][summary["final_phase"]]["weights"]
    cached = out / "probe.json"
    if cached.is_file():
        previous = json.loads(cached.read_text())
        if previous.get("weights") == str(weights) and previous.get("probe") == dataclasses.asdict(cfg.probe):
            return previous
        log.info("probe in %s is of other weights or settings; probing %s again", out, weights)
    return linear_probe(weights, cfg, out, progress)


def probe_table(results: dict[str, dict], metric: str = "mIoU19") -> str:
    """Markdown table of probe results keyed oracle / source / ours, with the gap closed."""
    lines = [f"| model | {metric} (linear probe) |", "|---|---:|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r[metric]:.1f} |")
    if {"oracle", "source", "ours"} <= set(results):
        lines += ["", format_gap(results["ours"][metric], results["source"][metric], results["oracle"][metric])]
    return "\n".join(lines)


def run_probes(cfg: Config, checkpoints: dict[str, Optional[str]], out_dir: str | Path,
               progress: bool = True) -> dict:
    """Probe each named checkpoint (``ours``, and optionally ``source``, ``oracle``)."""
    out = Path(out_dir)
    results = {}
    for name, ckpt in checkpoints.items():
        if ckpt:
            results[name] = linear_probe(ckpt, cfg, out / name, progress)
    table = probe_table(results, "mIoU19" if cfg.data.class_set == "cityscapes19" else "mIoU16")
    (out / "probe.md").write_text(table + "\n")
    record = {k: {m: v[m] for m in ("mIoU19", "mIoU16", "mIoU13") if m in v} for k, v in results.items()}
    if {"oracle", "source", "ours"} <= set(results):
        record["gap_closed"] = gap_closed(results["ours"]["mIoU19"], results["source"]["mIoU19"],
                                          results["oracle"]["mIoU19"])
    (out / "probe_summary.json").write_text(json.dumps(record, indent=2))
    print(table)
    return record


def with_target(cfg: Config, target_root: str) -> Config:
    if not target_root:
        return cfg
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, target_root=target_root))
