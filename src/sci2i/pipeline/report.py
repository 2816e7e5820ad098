"""``report.md``: the run's results in the paper's layout, with figures.

Sections: summary (warm-up M0 vs final M1, next to the paper's figures for the matching
setting), the per-class IoU table (Table 1/2 layout), figures (translated pairs as in Fig. 2,
per-class IoU bars, training curves) and where everything lies.
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
    """Total losses and validation mIoU of every phase against its step."""
    plt = _matplotlib()
    series = {n: read_metrics(d) for n, d in phase_dirs.items() if d and Path(d).is_dir()}
    series = {n: m for n, m in series.items() if m}
    if not series:
        return None
    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.2), squeeze=False)
    for ax, (name, rows) in zip(axes[0], series.items()):
        keys = sorted({k for r in rows for k in r if k not in ("phase", "step", "time")
                       and (k.lower().endswith("total") or "miou" in k.lower())})
        for k in keys[:6]:
            pts = [(r["step"], r[k]) for r in rows if k in r and isinstance(r[k], (int, float))]
            if pts:
                ax.plot(*zip(*pts), label=k, marker="." if len(pts) < 20 else None)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def write_report(cfg: Config, out: Path, summary: dict, translate: Optional[dict] = None) -> Path:
    """Write ``out/report.md`` (and its figures) from the pipeline summary."""
    class_set = cfg.data.class_set
    metrics = headline_metrics(class_set)
    phases = summary["phases"]
    labels = {"warmup": "warm-up M0 (phase a)",
              "warmup_source_only": "source-only warm-up (phase c's start)",  # final_init_ssl=false
              "final": "final M1 (phase c)"}
    evals = {labels[k]: phases[k]["eval"] for k in labels if phases.get(k, {}).get("eval")}
    minutes = {labels[k]: phases[k].get("seconds", float("nan")) / 60 for k in labels if k in phases}

    lines = [f"# sci2i report: {cfg.name}", ""]
    lines += [f"- code revision: `{git_revision()}`", f"- configuration: `config.yaml`",
              f"- source: `{cfg.data.source_root}` ({cfg.data.source_format}), target: `{cfg.data.target_root}`",
              f"- segmentation backbone: {cfg.model.backbone}; discriminator trunk: {cfg.discriminator.trunk}", ""]

    lines += ["## Summary (target val)", ""]
    head = "| model | " + " | ".join(metrics) + " | time (min) |"
    lines += [head, "|" + "---|" * (len(metrics) + 2)]
    for name, ev in evals.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(ev.get(m)) for m in metrics) + f" | {_fmt(minutes[name])} |")
    ea, eb = evals.get(labels["warmup"]), evals.get(labels["final"])
    if ea and eb:
        deltas = ", ".join(f"{m} {eb[m] - ea[m]:+.1f}" for m in metrics if m in ea and m in eb)
        lines += ["", f"Final vs warm-up: {deltas} points."]
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
        figs.append(("Source images (top) and their translations G(x_s) (bottom), as in the paper's Fig. 2", dst))
    if evals:
        figs.append(("Per-class IoU on target val", per_class_bars(evals, fig_dir / "per_class_iou.png")))
    phase_dirs = {k: Path(v["dir"]) for k, v in phases.items() if isinstance(v, dict) and v.get("dir")}
    curves = training_curves(phase_dirs, fig_dir / "training_curves.png")
    if curves:
        figs.append(("Training curves (losses, validation mIoU)", curves))
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
