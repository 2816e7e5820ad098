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
from sci2i.data.custom import run_class_set
from sci2i.eval.metrics import format_iou_rows, headline_metrics
from sci2i.figures.report import per_class_bars, prediction_figure, training_curves
from sci2i.train.i2i import i2i_data_config
from sci2i.utils.rundir import git_revision

log = logging.getLogger("sci2i")

#: The paper's full-method figures (Tables 1, 2, 4) for the summary's reference column.
PAPER = {
    "cityscapes19": {"source only": 30.5, "+SSL (warm-up M0)": 39.2, "full method (M1)": 50.1},
}


def _fmt(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"


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
                  "features, mean ± std over subsets where the sets are larger than a subset; lower = closer "
                  "to the target's look):", "",
                  "| images | KID vs x_t | images per set | subsets of |", "|---|---:|---:|---:|"]
        for name, key in (("source x_s", "source_vs_target"), ("translated G(x_s)", "translated_vs_target")):
            k = kid[key]
            spread = "" if k.get("kid_std") is None else f" ± {k['kid_std']:.4f}"
            lines.append(f"| {name} | {k['kid']:.4f}{spread} | "
                         f"{k['n_x']} vs {k['n_y']} | {k['subset_size']} |")
    return lines


PAPER_I2I_STEPS = 1_000_000  # the paper's I2I iterations (docs/METHOD.md)


def translation_sentence(cfg: Config, summary: dict) -> str:
    """What the translation figure shows, in one sentence: how long G trained against the
    paper's 1M iterations, and whether its translations are closer to the target's look than
    the source images by the KID (when measured)."""
    steps = (summary.get("phases", {}).get("i2i") or {}).get("step")
    if not steps:
        return ""
    crop = i2i_data_config(cfg).crop_size
    text = (f"G trained {steps:,} I2I steps of batch {cfg.i2i.batch_size} on {crop}² crops, "
            f"{steps / PAPER_I2I_STEPS:.2%} of the paper's {PAPER_I2I_STEPS:,} iterations")
    kid = summary.get("kid")
    if kid:
        s, t = kid["source_vs_target"]["kid"], kid["translated_vs_target"]["kid"]
        # the unbiased KID can be ≤ 0 on small sets: then no relative change
        rel = f", {'−' if t < s else '+'}{abs(t - s) / s:.0%}" if s > 0 else ""
        text += (f"; by the KID its translations are {'closer to' if t < s else 'further from'} the "
                 f"target's look than the source images are ({t:.4f} vs {s:.4f}{rel})")
    return text + "."


def write_report(cfg: Config, out: Path, summary: dict, translate: Optional[dict] = None) -> Path:
    """Write ``out/report.md`` (and its figures) from the pipeline summary."""

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
    figs: list[tuple[str, Path, str]] = []  # (caption, path, a sentence below it or "")
    if translate and translate.get("figure") and Path(translate["figure"]).is_file():
        dst = fig_dir / "translated_pairs.png"
        fig_dir.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(Path(translate["figure"]).read_bytes())
        figs.append(("One row per source image: synthetic x_s, its translation G(x_s) and a real target "
                     "image x_t for reference, as in the paper's Fig. 2", dst, translation_sentence(cfg, summary)))
    models = {labels[k]: phases[k]["weights"] for k in ("warmup", "final") if phases.get(k, {}).get("weights")}
    grid = None
    if models:
        try:
            predictions, grid = prediction_figure(cfg, models, fig_dir / "predictions.png")
            figs.append(("One row per target val image: the image, its ground truth, and the predictions of "
                         + " and ".join(models) + " (Cityscapes palette; black: no class)", predictions, ""))
        except Exception as e:  # noqa: BLE001 — a figure must not lose the report
            log.warning("prediction figure skipped: %s", e)
    _tensorboard(out, evals, grid)
    if evals:
        figs.append(("Per-class IoU on target val", per_class_bars(evals, fig_dir / "per_class_iou.png"), ""))
    phase_dirs = {k: Path(v["dir"]) for k, v in phases.items() if isinstance(v, dict) and v.get("dir")}
    curves = training_curves(phase_dirs, fig_dir / "training_curves.png")
    if curves:
        figs.append(("Training curves of each phase: total losses (solid, left axis) and validation mIoU "
                     "(dashed, right axis) against the step", curves, ""))
    if figs:
        lines += ["## Figures", ""]
        for caption, path, note in figs:
            lines += [f"**{caption}**", "", f"![{caption}]({path.relative_to(out).as_posix()})", ""]
            lines += [note, ""] if note else []

    lines += ["## Files", "", "- `checkpoints/`: final weights (safetensors) with their configs",
              "- `phases/`: each phase's run directory (config, log, metrics.jsonl, tb/, checkpoints)",
              "- `summary.json`: every figure above, machine-readable", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def load_summary(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())
