"""The paper's tables as named lists of config overrides (``config/experiments.yaml``).

``run_experiment(table, preset, overrides)`` runs every row as a full pipeline in
``<out_dir>/<table>/<row>/``. All rows share the phase cache ``<out_dir>/phases`` of a plain
``sci2i run`` with the same preset, so identical phases run once: the warm-up of every Table 3
row, and everything a previous ``sci2i run`` (the full method) already trained. It then writes
``<out_dir>/<table>/table.md``. With ``seeds``, the table is run once per seed (rows in
``<out_dir>/<table>/seed-<s>/<row>/``) and reports the mean ± sample standard deviation: on
toy-city one seed moves mIoU19 by a few points (docs/RESULTS.md), more than most differences
between rows. On toy-city with ``pipeline.toycity_seed=N`` (another generated benchmark) the
table lives in ``<out_dir>/<table>/toycity-seed<N>/``, so tables of several toy-cities share
one phase cache and never overwrite each other.

Every row's final model trains for the same number of segmentation steps from the same start
(the ``seg steps`` column; rows without I2I continue on x_s alone in phase c). A table's
``comparisons`` are paired by seed (row a − row b on each seed, then their mean ± std), and
its ``gap`` is the share of the oracle − source-only gap the method closes.
"""

from __future__ import annotations

import json
import logging
import re
import statistics
from pathlib import Path
from typing import Any

import yaml

from sci2i.config import ConfigError, load_config
from sci2i.pipeline.report import describe_seg_steps
from sci2i.pipeline.runner import run_pipeline
from sci2i.pipeline.steps import ensure_toycity
from sci2i.eval.probe import MIN_GAP_POINTS, format_gap, gap_closed, probe_run

log = logging.getLogger("sci2i")

EXPERIMENTS_FILE = Path(__file__).resolve().parents[1] / "config" / "experiments.yaml"


def load_experiments() -> dict[str, Any]:
    return yaml.safe_load(EXPERIMENTS_FILE.read_text())


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "row"


def row_configs(table: str, preset: str | None, overrides: list[str], seed: int | None = None):
    """[(row dict, Config)] for a table; unknown table names list the known ones.

    With ``seed``, every row runs with ``run.seed=seed`` in ``<out_dir>/<table>/seed-<seed>/``.
    """
    tables = load_experiments()
    if table not in tables:
        raise ConfigError(f"unknown experiment '{table}'; known: {', '.join(tables)}")
    base = load_config(preset, overrides)
    table_dir = table_folder(base, table)
    seed_overrides = []
    if seed is not None:
        table_dir = table_dir / f"seed-{seed}"
        seed_overrides = [f"run.seed={seed}"]
    out = []
    for row in tables[table]["rows"]:
        row_dir = table_dir / slug(row["name"])
        cfg = load_config(preset, list(overrides) + seed_overrides + list(row["overrides"]) +
                          [f"run.out_dir={row_dir}", "name=" + json.dumps(f"{base.name}: {row['name']}")])
        out.append((row, cfg))
    return tables[table], out


def table_folder(cfg, table: str) -> Path:
    """``<out_dir>/<table>``, or ``<out_dir>/<table>/toycity-seed<N>`` on another generated toy-city."""
    out = Path(cfg.run.out_dir) / table
    if cfg.pipeline.toycity_dir and cfg.pipeline.toycity_seed and not (cfg.data.source_root and cfg.data.target_root):
        out = out / f"toycity-seed{cfg.pipeline.toycity_seed}"
    return out


def run_experiment(table: str, preset: str | None, overrides: list[str],
                   seeds: list[int] | None = None, progress: bool = True) -> Path:
    """Every row of ``table`` (once per seed of ``seeds``, if given); writes ``table.md``."""

    base = load_config(preset, overrides)
    run_out = Path(base.run.out_dir)
    base_out = table_folder(base, table)
    cache = run_out / "phases"
    spec, results = None, []
    for seed in seeds or [None]:
        spec, rows = row_configs(table, preset, overrides, seed)
        for i, (row, cfg) in enumerate(rows):
            log.info("experiment %s: row '%s'%s", table, row["name"],
                     "" if seed is None else f" (seed {seed})")
            summary = run_pipeline(cfg, cache_dir=cache, progress=progress)
            run = {"seed": cfg.run.seed, "summary": summary, "out_dir": cfg.run.out_dir}
            if spec.get("probe"):
                run["probe"] = probe_run(ensure_toycity(cfg), Path(cfg.run.out_dir))
            if len(results) <= i:
                results.append({"row": row, "runs": []})
            results[i]["runs"].append(run)
    path = write_table(table, spec, results, base_out, preset, overrides, seeds)
    (base_out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return path


def _cell(values: list[float]) -> str:
    """``16.2`` for one run; ``16.9 ± 1.5 (16.2, 19.2, 15.4)`` (mean ± sample std) over seeds."""
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return (f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f} "
            f"({', '.join(f'{v:.1f}' for v in values)})")


def _by_role(results: list[dict], own) -> dict[str, dict[int, float]]:
    """``{role: {seed: metric}}`` of the rows that have a role."""
    return {r["row"]["role"]: {run["seed"]: own(run) for run in r["runs"]}
            for r in results if r["row"].get("role")}


def comparison_lines(spec: dict, results: list[dict], own) -> list[str]:
    """The table's paired differences (``comparisons``) and the gap closed (``gap``), in words
    that say where a comparison does not favour the first row."""
    roles = _by_role(results, own)
    names = {r["row"]["role"]: r["row"]["name"] for r in results if r["row"].get("role")}
    lines: list[str] = []
    pairs = [(a, b) for a, b in spec.get("comparisons", []) if a in roles and b in roles]
    if pairs:
        lines += ["", "Paired by seed (row − row on each seed; mean ± sample std over seeds):", "",
                  "| comparison | difference | per seed | first row ahead on |", "|---|---:|---|---:|"]
    for a, b in pairs:
        seeds = sorted(set(roles[a]) & set(roles[b]))
        diffs = [roles[a][s] - roles[b][s] for s in seeds]
        if not diffs:
            continue
        mean = statistics.fmean(diffs)
        spread = f" ± {statistics.stdev(diffs):.2f}" if len(diffs) > 1 else ""
        ahead = sum(d > 0 for d in diffs)
        lines.append(f"| {names[a]} − {names[b]} | {mean:+.2f}{spread} | "
                     f"{', '.join(f'{d:+.2f}' for d in diffs)} | {ahead} of {len(diffs)} seeds |")
    gap = spec.get("gap") or {}
    if gap and all(gap.get(k) in roles for k in ("ours", "source", "oracle")):
        mean = {k: statistics.fmean(roles[gap[k]].values()) for k in ("ours", "source", "oracle")}
        paper = {k: next((r["row"].get("paper") for r in results if r["row"].get("role") == gap[k]), None)
                 for k in mean}
        ref = (f" (paper: {100 * gap_closed(paper['ours'], paper['source'], paper['oracle']):.0f} %)"
               if None not in paper.values() else "")
        what = f"Share of the oracle − source-only gap that {names[gap['ours']]} closes (means)"
        if mean["oracle"] - mean["source"] < MIN_GAP_POINTS:
            lines += ["", f"{what}: undefined — the oracle ({mean['oracle']:.1f}) is not at least "
                          f"{MIN_GAP_POINTS:.0f} points above source only ({mean['source']:.1f}){ref}."]
        else:
            share = gap_closed(mean["ours"], mean["source"], mean["oracle"])
            lines += ["", f"{what}: ({mean['ours']:.1f} − {mean['source']:.1f}) / ({mean['oracle']:.1f} − "
                          f"{mean['source']:.1f}) = {100 * share:.1f} %{ref}."]
    return lines


def write_table(table: str, spec: dict, results: list[dict], out: Path, preset, overrides,
                seeds: list[int] | None = None) -> Path:
    """``out/table.md``: one line per row; over several seeds, mean ± sample std and the values.

    ``results``: ``[{"row": row spec, "runs": [{"seed", "summary", "probe"?}, ...]}, ...]``.
    """
    metric = spec.get("metric", "mIoU19")
    seed_opt = ["--seeds " + ",".join(str(s) for s in seeds)] if seeds else []
    cmd = "sci2i run " + " ".join([preset or ""] + [f"--experiment {table}"] + seed_opt + list(overrides)).strip()
    lines = [f"# {spec['title']}", "", f"Command: `{cmd}`", ""]
    base = load_config(preset, overrides)
    if base.pipeline.toycity_dir and not (base.data.source_root and base.data.target_root):
        lines += [f"toy-city generation seed {base.pipeline.toycity_seed}.", ""]
    if seeds and len(seeds) > 1:
        lines += [f"Seeds {', '.join(str(s) for s in seeds)}: mean ± sample standard deviation "
                  f"(the values of the seeds in order).", ""]

    def own(run: dict) -> float:
        return (run["summary"].get("final_eval") or {})[metric]

    def steps(r: dict) -> str:
        seen = {describe_seg_steps(run["summary"].get("seg_steps")) for run in r["runs"]}
        return " / ".join(sorted(seen)) or "–"

    if spec.get("probe"):
        lines += [f"| model | {metric} (own head) | {metric} (linear probe) | seg steps | paper (probe) |",
                  "|---|---:|---:|---|---:|"]
        by_role = {}
        for r in results:
            probes = [run["probe"][metric] for run in r["runs"]]
            by_role[r["row"].get("role")] = statistics.fmean(probes)
            lines.append(f"| {r['row']['name']} | {_cell([own(run) for run in r['runs']])} | "
                         f"{_cell(probes)} | {steps(r)} | {r['row'].get('paper', '–')} |")
        if {"oracle", "source", "ours"} <= set(by_role):
            lines += ["", format_gap(by_role["ours"], by_role["source"], by_role["oracle"])]
    else:
        lines += [f"| setting | {metric} | seg steps | paper |", "|---|---:|---|---:|"]
        for r in results:
            lines.append(f"| {r['row']['name']} | {_cell([own(run) for run in r['runs']])} | {steps(r)} | "
                         f"{r['row'].get('paper', '–')} |")
        lines += comparison_lines(spec, results, own)
    lines.append("")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "table.md"
    path.write_text("\n".join(lines))
    print("\n".join(lines))
    return path
