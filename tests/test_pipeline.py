"""End to end: `sci2i run` on a tiny toy-city, every artefact, resumption, shared phases, probe."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from fixtures import TINY_RUN
from sci2i.cli import main as cli
from sci2i.labels import CLASS_NAMES
from sci2i.eval.probe import gap_closed

pytestmark = pytest.mark.slow

TINY = {**TINY_RUN, "probe": {"steps": 2, "batch_size": 1}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    cfg = dict(TINY)
    cfg["pipeline"] = {"toycity_dir": str(root / "toy"),
                       "toycity_sizes": {"width": 64, "height": 32, "n_source": 4,
                                         "n_target_train": 3, "n_target_val": 2}}
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return root, path


def _phase_dirs(out: Path) -> dict[str, Path]:
    return {p.name.split("-")[0]: p for p in (out / "phases").iterdir() if p.is_dir()}


@pytest.fixture(scope="module")
def full_run(tiny):
    """``sci2i run`` of the whole method on the tiny toy-city, once per module.

    First only the warm-up (as Table 4's "+SSL" row), then the full method, which must reuse
    it. Returns the run folder and the warm-up's DONE.json time stamp after the first run; the
    tests that read a finished run take it from here, so each also passes when run alone.
    """
    root, cfg = tiny
    out = root / "run"
    assert cli(["run", str(cfg), f"run.out_dir={out}", "pipeline.i2i=false"]) == 0
    warm_done = (_phase_dirs(out)["warmup"] / "DONE.json").stat().st_mtime_ns
    assert cli(["run", str(cfg), f"run.out_dir={out}"]) == 0
    return out, warm_done


#: The per-class table's header in the paper's layout (Table 1), spelled out.
IOU_HEADER = ("| method | road | sidewalk | building | wall | fence | pole | light | sign | veg | terrain | sky | "
              "person | rider | car | truck | bus | train | mbike | bike | mIoU19 |")


def test_run_writes_every_artefact_and_resumes(tiny, full_run, tmp_path):
    root, cfg = tiny
    out, warm_done = full_run
    phases = _phase_dirs(out)
    summary = json.loads((out / "summary.json").read_text())
    kid = {"kid"} if "kid" in summary["phases"] else set()  # the translation's KID, when measured
    assert set(phases) == {"warmup", "pseudo_labels", "i2i", "translate", "final"} | kid
    assert (phases["warmup"] / "DONE.json").stat().st_mtime_ns == warm_done  # reused, not retrained
    for name in ("config.yaml", "git.txt", "log.txt", "metrics.jsonl", "report.md", "summary.json"):
        assert (out / name).is_file(), name
    assert list((out / "tb").iterdir()), "no TensorBoard events"
    for rel in ("warmup/teacher.safetensors", "i2i/generator_ema.safetensors", "i2i/generator.yaml",
                "final/teacher.safetensors", "final/teacher.yaml"):
        assert (out / "checkpoints" / rel).is_file(), rel
    for fig in ("translated_pairs.png", "per_class_iou.png", "training_curves.png"):
        assert (out / "figures" / fig).stat().st_size > 1000, fig
    # the final mIoU is the exported final model's own score: evaluated again, it is the same
    scores = tmp_path / "final_eval.json"
    assert cli(["evaluate", "--checkpoint", str(out / "checkpoints" / "final" / "teacher.safetensors"),
                "--target-root", str(root / "toy" / "target"), "--device", "cpu", "--no-progress",
                "--json", str(scores)]) == 0
    final = json.loads(scores.read_text())
    assert summary["final_eval"]["mIoU19"] == pytest.approx(final["mIoU19"], abs=1e-9)
    nan_as_none = {k: None if v is None or v != v else v for k, v in summary["final_eval"]["per_class"].items()}
    assert nan_as_none == final["per_class"]
    # the report shows those numbers: the summary rows and the per-class table, paper layout
    report = (out / "report.md").read_text().splitlines()
    assert "## Per-class IoU (paper layout)" in report and IOU_HEADER in report
    cells = [final["per_class"].get(name) for name in CLASS_NAMES] + [final["mIoU19"]]
    row = "| final M1 (phase c) | " + " | ".join("–" if v is None else f"{v:.1f}" for v in cells) + " |"
    assert row in report
    assert any(line.startswith("| warm-up M0 (phase a) | ") for line in report)
    # each phase is a run directory of its own
    for p in ("warmup", "i2i", "final"):
        assert (phases[p] / "config.yaml").is_file() and (phases[p] / "metrics.jsonl").is_file()
        assert list((phases[p] / "checkpoints").glob("step_*.pt"))
    labels = list((phases["pseudo_labels"] / "labels").rglob("*.png"))
    assert len(labels) == 3
    translated = list((phases["translate"] / "data" / "images").glob("*.png"))
    assert len(translated) == 4 and len(list((phases["translate"] / "data" / "labels").glob("*.png"))) == 4

    # A third invocation finds everything complete and changes no phase.
    stamps = {p: (d / "DONE.json").stat().st_mtime_ns for p, d in phases.items()}
    assert cli(["run", str(cfg), f"run.out_dir={out}"]) == 0
    assert {p: (d / "DONE.json").stat().st_mtime_ns for p, d in phases.items()} == stamps


def test_interrupted_phase_resumes_from_its_checkpoint(tiny, monkeypatch):
    """A phase without DONE.json continues from its newest checkpoint instead of restarting."""
    root, cfg = tiny
    out = root / "run2"
    assert cli(["run", str(cfg), f"run.out_dir={out}", "pipeline.i2i=false", "seg.steps=3"]) == 0
    warm = _phase_dirs(out)["warmup"]
    # Pretend the run died after step 2: drop the completion marker and the last checkpoint.
    (warm / "DONE.json").unlink()
    (warm / "teacher.safetensors").unlink()
    final_ckpt = sorted((warm / "checkpoints").glob("step_*.pt"))[-1]
    assert final_ckpt.name.endswith("3.pt")
    final_ckpt.unlink()
    assert cli(["run", str(cfg), f"run.out_dir={out}", "pipeline.i2i=false", "seg.steps=3"]) == 0
    assert (warm / "DONE.json").is_file()
    log = (warm / "log.txt").read_text()
    assert "resumed" in log.lower() or "resuming" in log.lower()


def test_linear_probe_trains_only_the_classifier(tiny, full_run, tmp_path):
    from sci2i.config import load_config
    from sci2i.eval.probe import linear_probe
    from sci2i.infer.segmenter import load_segmenter

    root, cfg_path = tiny
    weights = full_run[0] / "checkpoints" / "final" / "teacher.safetensors"
    cfg = load_config(str(cfg_path), [f"data.source_root={root}/toy/source", f"data.target_root={root}/toy/target"])
    result = linear_probe(weights, cfg, tmp_path, progress=False)
    assert 0.0 <= result["mIoU19"] <= 100.0
    before = load_segmenter(weights)
    after = load_segmenter(tmp_path / "probe_classifier.safetensors")
    for (k, a), (_, b) in zip(before.backbone.state_dict().items(), after.backbone.state_dict().items()):
        assert torch.equal(a, b), f"backbone changed: {k}"
    assert any(not torch.equal(a, b) for a, b in zip(before.classifier.parameters(), after.classifier.parameters()))


def test_probe_of_a_row_is_reused_only_for_the_same_weights_and_settings(tiny, full_run, tmp_path, monkeypatch):
    import shutil

    import sci2i.eval.probe as probe_mod
    from sci2i.config import load_config

    root, cfg_path = tiny
    summary = json.loads((full_run[0] / "summary.json").read_text())
    row = tmp_path / "row"
    row.mkdir()
    (row / "summary.json").write_text(json.dumps(summary))
    cfg = load_config(str(cfg_path), [f"data.source_root={root}/toy/source",
                                      f"data.target_root={root}/toy/target", "probe.steps=2"])
    probed = []
    real = probe_mod.linear_probe
    monkeypatch.setattr(probe_mod, "linear_probe", lambda w, *a, **k: probed.append(str(w)) or real(w, *a, **k))
    first = probe_mod.probe_run(cfg, row, progress=False)
    again = probe_mod.probe_run(cfg, row, progress=False)
    assert again["mIoU19"] == first["mIoU19"] and len(probed) == 1  # cached, not probed again
    # the row's run now ends in another model (e.g. the preset changed): probed again
    other = tmp_path / "other_teacher.safetensors"
    shutil.copy(summary["phases"][summary["final_phase"]]["weights"], other)
    summary["phases"][summary["final_phase"]]["weights"] = str(other)
    (row / "summary.json").write_text(json.dumps(summary))
    assert probe_mod.probe_run(cfg, row, progress=False)["weights"] == str(other)
    assert probed[-1] == str(other)
    cfg.probe.steps = 3  # other probe settings: probed again
    assert probe_mod.probe_run(cfg, row, progress=False)["steps"] == 3 and len(probed) == 3


def test_gap_closed_matches_the_paper_arithmetic():
    assert gap_closed(59.0, 39.6, 68.0) == pytest.approx(0.683, abs=1e-3)


def test_run_list_shows_presets_and_tables(capsys):
    assert cli(["run", "--list"]) == 0
    out = capsys.readouterr().out
    for word in ("gta5-cityscapes", "synthia-cityscapes", "table3", "table4", "table5", "SGAN"):
        assert word in out


def test_gap_closed_is_undefined_when_the_oracle_does_not_beat_source_only():
    from sci2i.eval.probe import format_gap

    assert "68.3 %" in format_gap(59.0, 39.6, 68.0)
    assert "undefined" in format_gap(5.4, 9.3, 4.8)
    assert "undefined" in format_gap(18.9, 23.0, 23.7)  # a 0.7-point margin is within noise


def test_concurrent_runs_sharing_a_phase_wait_for_each_other(tmp_path):
    """The phase lock serialises two workers on one phase folder; the second reuses the result."""
    import threading

    from sci2i.config import load_config
    from sci2i.pipeline.runner import Pipeline

    calls = []

    def work(folder):
        calls.append(folder)
        return {"value": len(calls)}

    pipes = [Pipeline(load_config(None, [f"run.out_dir={tmp_path}/r{i}", f"pipeline.cache_dir={tmp_path}/c"]))
             for i in range(2)]
    out = [None, None]

    def run(i):
        out[i] = pipes[i]._phase("x", "fp", work)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and out[0] == out[1]
    # the work's outputs, and what the runner measured of it
    assert out[0]["value"] == 1 and set(out[0]) == {"value", "seconds", "cpu_seconds", "peak_memory"}
    assert out[0]["peak_memory"]["rss_gb"] > 0


def test_experiment_rows_per_seed_get_their_own_folders_and_seed():
    from sci2i.pipeline.experiments import row_configs

    _, plain = row_configs("table4", "toycity", ["run.out_dir=/tmp/x"])
    assert [str(c.run.out_dir) for _, c in plain][0] == "/tmp/x/table4/source-only"
    _, seeded = row_configs("table4", "toycity", ["run.out_dir=/tmp/x"], seed=3)
    assert {c.run.seed for _, c in seeded} == {3}
    full = next(c for row, c in seeded if row["name"] == "+SSL+I2I (full method)")
    assert str(full.run.out_dir) == "/tmp/x/table4/seed-3/ssl-i2i-full-method"


def test_experiment_table_reports_mean_and_std_over_seeds(tmp_path):
    from sci2i.pipeline.experiments import load_experiments, write_table

    def run(seed, own, probe=None):
        out = {"seed": seed, "summary": {"final_eval": {"mIoU19": own}}}
        if probe is not None:
            out["probe"] = {"mIoU19": probe}
        return out

    spec = load_experiments()["table4"]
    results = [{"row": row, "runs": [run(0, 10.0 + i), run(1, 12.0 + i)]} for i, row in enumerate(spec["rows"])]
    text = write_table("table4", spec, results, tmp_path, "toycity", [], seeds=[0, 1]).read_text()
    assert "--seeds 0,1" in text
    assert "| source only | 11.0 ± 1.4 (10.0, 12.0) | – | 30.5 |" in text  # sample std of (10, 12)
    single = [{"row": row, "runs": [run(0, 16.24)]} for row in spec["rows"]]
    assert "| source only | 16.2 | – | 30.5 |" in write_table("table4", spec, single, tmp_path, "toycity", []).read_text()
    spec5 = load_experiments()["table5"]
    res5 = [{"row": row, "runs": [run(0, 20.0, p), run(1, 22.0, p + 2)]}
            for row, p in zip(spec5["rows"], (40.0, 20.0, 30.0))]
    text5 = write_table("table5", spec5, res5, tmp_path, "toycity", [], seeds=[0, 1]).read_text()
    # gap closed from the means: (31 - 21) / (41 - 21)
    assert "= 50.0 %" in text5


def test_seeds_option_is_parsed_and_needs_an_experiment(capsys):
    from sci2i.commands.run import _seed_list

    assert _seed_list("0,1,2") == [0, 1, 2]
    with pytest.raises(Exception, match="distinct"):
        _seed_list("1,1")
    assert cli(["run", "toycity", "--seeds", "0,1", "seg.steps=3"]) != 0
    assert "--seeds needs --experiment" in capsys.readouterr().err


def test_final_phase_can_start_from_the_source_only_warm_up(tiny):
    """``final_init_ssl=false`` (Table 4's +I2I): phase (c) starts from the warm-up without
    consistency, which is the source-only row's phase, while the pseudo labels still come from M0."""
    root, cfg = tiny
    out = root / "run_so"
    row = ["pipeline.final_init=warmup", "pipeline.final_lambda_con=0", "pipeline.final_init_ssl=false"]
    assert cli(["run", str(cfg), f"run.out_dir={out}", *row]) == 0
    warmups = {json.loads((d / "DONE.json").read_text())["weights"]: yaml.safe_load((d / "config.yaml").read_text())
               for d in (out / "phases").glob("warmup-*")}
    assert len(warmups) == 2
    source_only = next(w for w, c in warmups.items() if c["seg"]["lambda_con"] == 0)
    m0 = next(w for w, c in warmups.items() if c["seg"]["lambda_con"] > 0)
    final = next((out / "phases").glob("final-*"))
    assert f"student initialised from {source_only}" in (final / "log.txt").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["phases"]["warmup"]["weights"] == m0
    assert summary["phases"]["warmup_source_only"]["weights"] == source_only
    assert "source-only warm-up" in (out / "report.md").read_text()
    # the source-only row (Table 4) finds that warm-up complete instead of training it again
    done = {d: (d / "DONE.json").stat().st_mtime_ns for d in (out / "phases").glob("warmup-*")}
    assert cli(["run", str(cfg), f"run.out_dir={out}", "pipeline.i2i=false", "pipeline.warmup_lambda_con=0"]) == 0
    assert {d: (d / "DONE.json").stat().st_mtime_ns for d in (out / "phases").glob("warmup-*")} == done
