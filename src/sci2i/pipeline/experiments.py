"""The paper's tables as named lists of config overrides (``config/experiments.yaml``).

``run_experiment(table, preset, overrides)`` runs every row as a full pipeline in
``<out_dir>/<table>/<row>/``. All rows share the phase cache ``<out_dir>/phases`` of a plain
``sci2i run`` with the same preset, so identical phases run once: the warm-up of every Table 3
row, and everything a previous ``sci2i run`` (the full method) already trained. It then writes
``<out_dir>/<table>/table.md``.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import yaml

from sci2i.config import ConfigError, load_config

log = logging.getLogger("sci2i")

EXPERIMENTS_FILE = Path(__file__).resolve().parents[1] / "config" / "experiments.yaml"


def load_experiments() -> dict[str, Any]:
    return yaml.safe_load(EXPERIMENTS_FILE.read_text())


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "row"


def row_configs(table: str, preset: str | None, overrides: list[str]):
    """[(row dict, Config)] for a table; unknown table names list the known ones."""
    tables = load_experiments()
    if table not in tables:
        raise ConfigError(f"unknown experiment '{table}'; known: {', '.join(tables)}")
    base = load_config(preset, overrides)
    out = []
    for row in tables[table]["rows"]:
        row_dir = Path(base.run.out_dir) / table / slug(row["name"])
        cfg = load_config(preset, list(overrides) + list(row["overrides"]) +
                          [f"run.out_dir={row_dir}", "name=" + json.dumps(f"{base.name}: {row['name']}")])
        out.append((row, cfg))
    return tables[table], out


def run_experiment(table: str, preset: str | None, overrides: list[str]) -> Path:
    from sci2i.pipeline.runner import run_pipeline

    spec, rows = row_configs(table, preset, overrides)
    run_out = Path(load_config(preset, overrides).run.out_dir)
    base_out = run_out / table
    cache = run_out / "phases"
    results = []
    for row, cfg in rows:
        log.info("experiment %s: row '%s'", table, row["name"])
        summary = run_pipeline(cfg, cache_dir=cache)
        entry = {"row": row, "summary": summary, "out_dir": cfg.run.out_dir}
        if spec.get("probe"):
            from sci2i.probe import probe_run

            entry["probe"] = probe_run(cfg, Path(cfg.run.out_dir))
        results.append(entry)
    path = write_table(table, spec, results, base_out, preset, overrides)
    (base_out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return path


def write_table(table: str, spec: dict, results: list[dict], out: Path, preset, overrides) -> Path:
    metric = spec.get("metric", "mIoU19")
    cmd = "sci2i run " + " ".join([preset or ""] + [f"--experiment {table}"] + list(overrides)).strip()
    lines = [f"# {spec['title']}", "", f"Command: `{cmd}`", ""]
    if spec.get("probe"):
        lines += [f"| model | {metric} (own head) | {metric} (linear probe) | paper (probe) |", "|---|---:|---:|---:|"]
        by_role = {}
        for r in results:
            own = (r["summary"].get("final_eval") or {}).get(metric)
            probe = r["probe"][metric]
            by_role[r["row"].get("role")] = probe
            lines.append(f"| {r['row']['name']} | {own:.1f} | {probe:.1f} | {r['row'].get('paper', '–')} |")
        if {"oracle", "source", "ours"} <= set(by_role):
            from sci2i.probe import format_gap

            lines += ["", format_gap(by_role["ours"], by_role["source"], by_role["oracle"])]
    else:
        lines += [f"| setting | {metric} | paper |", "|---|---:|---:|"]
        for r in results:
            v = (r["summary"].get("final_eval") or {}).get(metric)
            lines.append(f"| {r['row']['name']} | {v:.1f} | {r['row'].get('paper', '–')} |")
    lines.append("")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "table.md"
    path.write_text("\n".join(lines))
    print("\n".join(lines))
    return path
