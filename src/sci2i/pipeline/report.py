"""``report.md``: the run's results in the paper's layout, with figures.

Sections: summary (warm-up M0 vs final M1, next to the paper's figures for the matching
setting; each model's time counts every phase it needed), the per-class IoU table (Table 1/2
layout), figures (translated pairs as in Fig. 2, predictions of M0 and M1 on target val images
next to the ground truth, per-class IoU bars, training curves) and where everything lies. The
prediction grid, the per-class IoU and mIoU19/16/13 of each model also go to TensorBoard
(``tb/``, tags ``report/…``).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Optional

from sci2i.config import Config
from sci2i.eval.metrics import format_iou_rows, headline_metrics
from sci2i.labels import CLASS_NAMES
from sci2i.utils.rundir import git_revision, read_metrics

log = logging.getLogger("sci2i")

#: The paper's full-method figures (Tables 1, 2, 4) for the summary's reference column.
PAPER = {
    "cityscapes19": {"source only": 30.5, "+SSL (warm-up M0)": 39.2, "full method (M1)": 50.1},
}


def _fmt(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"


def _matplotlib():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def per_class_bars(evals: dict[str, dict], out_png: Path) -> Path:
    """Grouped bars of per-class IoU, one colour per model."""
    plt = _matplotlib()
    import numpy as np

    fig, ax = plt.subplots(figsize=(12, 3.6))
    names = list(evals)
    width = 0.8 / max(1, len(names))
    x = np.arange(len(CLASS_NAMES))
    for i, n in enumerate(names):
        vals = [evals[n]["per_class"].get(c, float("nan")) for c in CLASS_NAMES]
        ax.bar(x + i * width - 0.4 + width / 2, [0 if math.isnan(v) else v for v in vals], width, label=n)
    ax.set_xticks(x, CLASS_NAMES, rotation=45, ha="right")
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def training_curves(phase_dirs: dict[str, Path], out_png: Path) -> Optional[Path]:
    """Total losses (left axis) and validation mIoU in % (right axis) of every phase against
    its step: two units, two axes."""
    plt = _matplotlib()
    series = {n: read_metrics(d) for n, d in phase_dirs.items() if d and Path(d).is_dir()}
    series = {n: m for n, m in series.items() if m}
    if not series:
        return None
    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.2), squeeze=False)
    for ax, (name, rows) in zip(axes[0], series.items()):
        keys = sorted({k for r in rows for k in r if k not in ("phase", "step", "time")
                       and (k.lower().endswith("total") or "miou" in k.lower())})
        miou_ax = None
        handles = []
        for k in keys[:6]:
            pts = [(r["step"], r[k]) for r in rows if k in r and isinstance(r[k], (int, float))]
            if not pts:
                continue
            target = ax
            if "miou" in k.lower():
                miou_ax = miou_ax or ax.twinx()
                target = miou_ax
            style = dict(marker="." if len(pts) < 20 else None, linestyle="--" if target is miou_ax else "-")
            handles += target.plot(*zip(*pts), label=k, color=f"C{len(handles)}", **style)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        if miou_ax is not None:
            miou_ax.set_ylabel("mIoU (%)")
        ax.legend(handles=handles, fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


#: The phases each model of the summary needed, in run order (a model's time is their sum).
MODEL_PHASES = {
    "warmup": ("warmup",),
    "warmup_source_only": ("warmup_source_only",),
    "final": ("warmup", "warmup_source_only", "pseudo_labels", "i2i", "translate", "final"),
}


def model_seconds(phases: dict, model: str) -> float:
    """Seconds of every phase ``model`` needed (M1: warm-up, pseudo labels, I2I, translation and
    phase (c)); NaN when none of them recorded its time."""
    spent = [phases[p]["seconds"] for p in MODEL_PHASES.get(model, (model,))
             if isinstance(phases.get(p), dict) and "seconds" in phases[p]]
    return float(sum(spent)) if spent else float("nan")


def prediction_figure(cfg: Config, models: dict[str, str], out_png: Path, n: int = 4):
    """Rows = the first ``n`` target val images; columns = image, ground truth, each model's
    prediction (at the evaluation scale, upsampled to the label's resolution as in evaluation).
    Returns the PNG and the same grid as a 3×H×W float tensor for TensorBoard."""
    import cv2
    import numpy as np
    import torch

    from sci2i.data.build import build_target_dataset
    from sci2i.data.transforms import resize_image, scaled_size
    from sci2i.labels import colorize
    from sci2i.predict import ClassPalette, class_logits, load_predictor, upsample_argmax
    from sci2i.utils.runtime import resolve_device

    device = resolve_device(cfg.perf.device)
    dataset = build_target_dataset(cfg.data, cfg.data.target_val_split, with_labels=True, train=False)
    rows, size = [], None
    loaded = {name: load_predictor(w, device)[0] for name, w in models.items()}
    for i in range(min(n, len(dataset))):
        image, label = dataset.read(i)
        h, w = scaled_size(*image.shape[:2], cfg.data.eval_long_side)
        x = torch.from_numpy(resize_image(image, h, w)).permute(2, 0, 1)[None].float().div(255).to(device)
        cells = [image, colorize(label)]
        for model in loaded.values():
            lut = torch.as_tensor(ClassPalette.for_model(model.num_classes, model.class_names).train_ids, device=device)
            pred = lut[upsample_argmax(class_logits(model, x)[0], label.shape)]
            cells.append(colorize(pred.to("cpu", torch.uint8).numpy()))
        size = size or label.shape  # every cell gets the size of the first image's label
        rows.append(np.concatenate([cv2.resize(c, size[::-1], interpolation=cv2.INTER_NEAREST)
                                    if c.shape[:2] != size else c for c in cells], axis=1))
    if not rows:
        raise ValueError("no target val images")
    grid = np.concatenate(rows, axis=0)
    plt = _matplotlib()
    titles = ["image", "ground truth", *models]
    cell_h, cell_w = size
    fig, axes = plt.subplots(len(rows), len(titles), squeeze=False,
                             figsize=(2.6 * len(titles), 2.6 * len(rows) * cell_h / cell_w + 0.4))
    for r in range(len(rows)):
        for c, title in enumerate(titles):
            ax = axes[r][c]
            ax.imshow(grid[r * cell_h:(r + 1) * cell_h, c * cell_w:(c + 1) * cell_w], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png, torch.from_numpy(grid).permute(2, 0, 1).float().div(255)


def _tensorboard(out: Path, evals: dict[str, dict], grid) -> None:
    """The report's numbers and the prediction grid as TensorBoard data under ``report/``."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency; a broken install must not lose the report
        return
    writer = SummaryWriter(str(out / "tb"))
    try:
        for name, ev in evals.items():
            tag = name.split(" (")[0].replace(" ", "_")
            for cls, iou in (ev.get("per_class") or {}).items():
                if isinstance(iou, (int, float)) and not math.isnan(iou):
                    writer.add_scalar(f"report/{tag}/IoU/{cls}", iou, 0)
            for key in ("mIoU19", "mIoU16", "mIoU13", "mIoU"):  # mIoU: a dataset file's own classes
                if isinstance(ev.get(key), (int, float)) and not math.isnan(ev[key]):
                    writer.add_scalar(f"report/{tag}/{key}", ev[key], 0)
        if grid is not None:
            writer.add_image("report/predictions", grid, 0)
    finally:
        writer.close()


#: How the report names each segmentation phase.
SEG_PHASE_NAMES = {"warmup": "warm-up", "warmup_source_only": "source-only warm-up", "final": "phase (c)"}


def describe_seg_steps(seg_steps: Optional[dict]) -> str:
    """``"600 (warm-up) + 600 (phase (c)) = 1,200"`` from a summary's ``seg_steps``; "" if absent."""
    phases = (seg_steps or {}).get("phases") or {}
    if not phases:
        return ""
    parts = " + ".join(f"{n:,} ({SEG_PHASE_NAMES.get(k, k)})" for k, n in phases.items())
    return parts if len(phases) == 1 else f"{parts} = {seg_steps['total']:,}"


def _steps_and_kid_lines(summary: dict) -> list[str]:
    """The final model's segmentation steps, and the KID of x_s and G(x_s) against x_t."""
    lines = []
    steps = describe_seg_steps(summary.get("seg_steps"))
    if steps:
        lines += ["", f"Segmentation steps of the final model: {steps}."]
    kid = summary.get("kid")
    if kid:
        lines += ["", f"Translation quality: KID against the target train images ({kid['features']} "
                  "features, mean ± std over subsets; lower = closer to the target's look):", "",
                  "| images | KID vs x_t | images per set | subsets of |", "|---|---:|---:|---:|"]
        for name, key in (("source x_s", "source_vs_target"), ("translated G(x_s)", "translated_vs_target")):
            k = kid[key]
            lines.append(f"| {name} | {k['kid']:.4f} ± {k['kid_std']:.4f} | "
                         f"{k['n_x']} vs {k['n_y']} | {k['subset_size']} |")
    return lines


def write_report(cfg: Config, out: Path, summary: dict, translate: Optional[dict] = None) -> Path:
    """Write ``out/report.md`` (and its figures) from the pipeline summary."""
    from sci2i.data.custom import run_class_set

    class_set = run_class_set(cfg.data)  # "all" for a dataset file with classes of its own
    metrics = headline_metrics(class_set)
    phases = summary["phases"]
    labels = {"warmup": "warm-up M0 (phase a)",
              "warmup_source_only": "source-only warm-up (phase c's start)",  # final_init_ssl=false
              "final": "final M1 (phase c)"}
    evals = {labels[k]: phases[k]["eval"] for k in labels if phases.get(k, {}).get("eval")}
    minutes = {labels[k]: model_seconds(phases, k) / 60 for k in labels if k in phases}

    lines = [f"# sci2i report: {cfg.name}", ""]
    lines += [f"- code revision: `{git_revision()}`", f"- configuration: `config.yaml`",
              f"- source: `{cfg.data.source_root}` ({cfg.data.source_format}), target: `{cfg.data.target_root}`",
              f"- segmentation backbone: {cfg.model.backbone}; discriminator trunk: {cfg.discriminator.trunk}", ""]

    lines += ["## Summary (target val)", ""]
    head = "| model | " + " | ".join(metrics) + " | time (min, every phase it needed) |"
    lines += [head, "|" + "---|" * (len(metrics) + 2)]
    for name, ev in evals.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(ev.get(m)) for m in metrics) + f" | {_fmt(minutes[name])} |")
    ea, eb = evals.get(labels["warmup"]), evals.get(labels["final"])
    if ea and eb:
        deltas = ", ".join(f"{m} {eb[m] - ea[m]:+.1f}" for m in metrics if m in ea and m in eb)
        lines += ["", f"Final vs warm-up: {deltas} points."]
    spent = {k: v["seconds"] / 60 for k, v in phases.items() if isinstance(v, dict) and "seconds" in v}
    if spent:
        lines += ["", "Time per phase (min): " + ", ".join(f"{k} {v:.1f}" for k, v in spent.items())
                  + f"; all {sum(spent.values()):.1f}."]
    lines += _steps_and_kid_lines(summary)
    if class_set == "cityscapes19" and "toycity" not in cfg.name:
        lines += ["", "Paper (GTA5→Cityscapes, VGG16): source only 30.5, +SSL 39.2, full method 50.1 mIoU19."]
    lines.append("")

    if evals:
        lines += ["## Per-class IoU (paper layout)", "", format_iou_rows(evals, class_set), ""]

    fig_dir = out / "figures"
    figs: list[tuple[str, Path]] = []
    if translate and translate.get("figure") and Path(translate["figure"]).is_file():
        dst = fig_dir / "translated_pairs.png"
        fig_dir.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(Path(translate["figure"]).read_bytes())
        figs.append(("One row per source image: synthetic x_s, its translation G(x_s) and a real target "
                     "image x_t for reference, as in the paper's Fig. 2", dst))
    models = {labels[k]: phases[k]["weights"] for k in ("warmup", "final") if phases.get(k, {}).get("weights")}
    grid = None
    if models:
        try:
            predictions, grid = prediction_figure(cfg, models, fig_dir / "predictions.png")
            figs.append(("One row per target val image: the image, its ground truth, and the predictions of "
                         + " and ".join(models) + " (Cityscapes palette; black: no class)", predictions))
        except Exception as e:  # noqa: BLE001 — a figure must not lose the report
            log.warning("prediction figure skipped: %s", e)
    _tensorboard(out, evals, grid)
    if evals:
        figs.append(("Per-class IoU on target val", per_class_bars(evals, fig_dir / "per_class_iou.png")))
    phase_dirs = {k: Path(v["dir"]) for k, v in phases.items() if isinstance(v, dict) and v.get("dir")}
    curves = training_curves(phase_dirs, fig_dir / "training_curves.png")
    if curves:
        figs.append(("Training curves of each phase: total losses (solid, left axis) and validation mIoU "
                     "(dashed, right axis) against the step", curves))
    if figs:
        lines += ["## Figures", ""]
        for caption, path in figs:
            lines += [f"**{caption}**", "", f"![{caption}]({path.relative_to(out).as_posix()})", ""]

    lines += ["## Files", "", "- `checkpoints/`: final weights (safetensors) with their configs",
              "- `phases/`: each phase's run directory (config, log, metrics.jsonl, tb/, checkpoints)",
              "- `summary.json`: every figure above, machine-readable", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def load_summary(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())
