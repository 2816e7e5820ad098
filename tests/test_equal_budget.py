"""Issue 17 in the pipeline: every row's final model at the same budget, the control rows,
KID of the translations, the toy-city generation seed, and the tables that report them."""

import json
from pathlib import Path

import pytest
import yaml

from fixtures import TINY_RUN
from sci2i.cli import main as cli

pytestmark = pytest.mark.slow

TINY = {**TINY_RUN, "pipeline": {"final_init": "warmup"}}
SIZES = {"width": 64, "height": 32, "n_source": 4, "n_target_train": 3, "n_target_val": 2}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("budget")
    cfg = json.loads(json.dumps(TINY))
    cfg["pipeline"].update(toycity_dir=str(root / "toy"), toycity_sizes=SIZES)
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return root, path


def _phases(out: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for p in sorted((out / "phases").iterdir()):
        if (p / "DONE.json").is_file():
            found.setdefault(p.name.rsplit("-", 1)[0], []).append(p)
    return found


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_rows_without_i2i_continue_in_phase_c_for_the_same_steps(tiny):
    root, cfg = tiny
    out = root / "source_only"
    assert cli(["run", str(cfg), f"run.out_dir={out}", "pipeline.i2i=false", "pipeline.warmup_lambda_con=0",
                "pipeline.final_lambda_con=0"]) == 0
    phases = _phases(out)
    assert set(phases) == {"warmup", "final"}  # no pseudo labels, I2I nor translation
    final = phases["final"][0]
    final_cfg = yaml.safe_load((final / "config.yaml").read_text())["seg"]
    assert final_cfg["translated_root"] == "" and final_cfg["lambda_con"] == 0
    warm = json.loads((phases["warmup"][0] / "DONE.json").read_text())["weights"]
    assert f"student initialised from {warm}" in (final / "log.txt").read_text()
    summary = _summary(out)
    assert summary["final_phase"] == "final"
    assert summary["seg_steps"] == {"phases": {"warmup": 2, "final": 2}, "total": 4}
    assert "Segmentation steps of the final model: 2 (warm-up) + 2 (phase (c)) = 4." in (out / "report.md").read_text()
    # pipeline.final_steps=0: the warm-up is the model, as before equal budgets
    short = root / "warmup_only"
    assert cli(["run", str(cfg), f"run.out_dir={short}", "pipeline.i2i=false", "pipeline.warmup_lambda_con=0",
                "pipeline.final_steps=0", f"pipeline.cache_dir={out / 'phases'}"]) == 0
    assert _summary(short)["final_phase"] == "warmup"
    assert _summary(short)["seg_steps"] == {"phases": {"warmup": 2}, "total": 2}


@pytest.mark.parametrize("second", ["plain_aug", "source"])
def test_control_rows_need_no_generator(tiny, second):
    root, cfg = tiny
    out = root / f"control_{second}"
    assert cli(["run", str(cfg), f"run.out_dir={out}", "pipeline.final_lambda_con=0",
                "pipeline.final_init_ssl=false", f"seg.second_source={second}"]) == 0
    phases = _phases(out)
    assert set(phases) == {"warmup", "final"} and len(phases["warmup"]) == 2  # M0 and source-only
    warm_cfgs = [yaml.safe_load((d / "config.yaml").read_text())["seg"] for d in phases["warmup"]]
    assert all(c["second_source"] == "translated" and c["translated_root"] == "" for c in warm_cfgs)
    final_cfg = yaml.safe_load((phases["final"][0] / "config.yaml").read_text())["seg"]
    assert final_cfg["second_source"] == second and final_cfg["translated_root"] == ""
    assert _summary(out)["seg_steps"]["phases"] == {"warmup_source_only": 2, "final": 2}


def test_full_run_measures_kid_in_the_report_and_over_the_i2i_steps(tiny):
    root, cfg = tiny
    out = root / "full"
    assert cli(["run", str(cfg), f"run.out_dir={out}", "i2i.kid_images=3"]) == 0
    phases = _phases(out)
    assert {"warmup", "pseudo_labels", "i2i", "translate", "kid", "final"} <= set(phases)
    kid = _summary(out)["kid"]
    for key in ("source_vs_target", "translated_vs_target"):
        assert kid[key]["n_x"] == 4 and kid[key]["n_y"] == 3 and isinstance(kid[key]["kid"], float)
    assert kid["features"].startswith("efficientnet_lite0")
    report = (out / "report.md").read_text()
    assert "| translated G(x_s) | " in report and "KID vs x_t" in report
    logged = [json.loads(line) for line in (phases["i2i"][0] / "metrics.jsonl").read_text().splitlines()]
    kid_steps = [r["step"] for r in logged if "KID/translated_vs_target" in r]
    assert kid_steps == [1, 2]  # at every sample_every (1) and the last step
    # a later run with another number of KID images measures again, the translation is kept
    translate_done = (phases["translate"][0] / "DONE.json").stat().st_mtime_ns
    assert cli(["run", str(cfg), f"run.out_dir={out}", "pipeline.kid_images=2"]) == 0
    assert len(_phases(out)["kid"]) == 2
    assert (phases["translate"][0] / "DONE.json").stat().st_mtime_ns == translate_done
    assert _summary(out)["kid"]["source_vs_target"]["n_x"] == 2


def test_toycity_generation_seed_has_its_own_folder(tiny):
    from sci2i.config import load_config
    from sci2i.pipeline.steps import ensure_toycity
    from sci2i.toycity import read_manifest

    root, cfg = tiny
    zero = ensure_toycity(load_config(str(cfg), []))
    stamp = (root / "toy" / "toycity.json").stat().st_mtime_ns
    one = ensure_toycity(load_config(str(cfg), ["pipeline.toycity_seed=1"]))
    assert Path(one.data.source_root) == root / "toy-seed1" / "source"
    assert Path(zero.data.source_root) == root / "toy" / "source"
    assert read_manifest(root / "toy-seed1")["seed"] == 1 and read_manifest(root / "toy")["seed"] == 0
    assert (root / "toy" / "toycity.json").stat().st_mtime_ns == stamp  # seed 0 left alone
    a = (root / "toy" / "source" / "images" / "00001.png").read_bytes()
    assert a != (root / "toy-seed1" / "source" / "images" / "00001.png").read_bytes()
    with pytest.raises(Exception, match="toycity_seed"):
        load_config(str(cfg), ["pipeline.toycity_seed=-1"])


def test_table_rows_over_training_seeds_on_another_toycity(tiny):
    from sci2i.pipeline.experiments import row_configs

    root, cfg = tiny
    spec, rows = row_configs("table4", str(cfg), [f"run.out_dir={root}/exp", "pipeline.toycity_seed=1"], seed=2)
    names = [row["name"] for row, _ in rows]
    assert "+plain augmentation (control)" in names and "+source twice (control)" in names
    assert "Cityscapes-supervised (oracle)" in names
    for row, c in rows:
        assert c.run.seed == 2 and c.pipeline.toycity_seed == 1
        assert Path(c.run.out_dir).parent == root / "exp" / "table4" / "toycity-seed1" / "seed-2"
    by_name = {row["name"]: c for row, c in rows}
    assert by_name["+plain augmentation (control)"].seg.second_source == "plain_aug"
    assert by_name["source only"].pipeline.final_lambda_con == 0


def test_table4_reports_steps_paired_differences_and_the_gap(tmp_path):
    from sci2i.pipeline.experiments import load_experiments, write_table

    spec = load_experiments()["table4"]
    values = {"source": (16.0, 18.0), "ssl": (17.0, 18.5), "source_twice": (19.0, 19.5),
              "plain_aug": (20.0, 21.5), "i2i": (21.0, 21.0), "full": (22.0, 22.4), "oracle": (36.0, 38.0)}
    steps = {"phases": {"warmup": 600, "final": 600}, "total": 1200}
    results = [{"row": row, "runs": [{"seed": s, "summary": {"final_eval": {"mIoU19": v}, "seg_steps": steps}}
                                     for s, v in enumerate(values[row["role"]])]}
               for row in spec["rows"]]
    text = write_table("table4", spec, results, tmp_path, "toycity", [], seeds=[0, 1]).read_text()
    assert "| source only | 17.0 ± 1.4 (16.0, 18.0) | 600 (warm-up) + 600 (phase (c)) = 1,200 | 30.5 |" in text
    # +I2I - plain augmentation: +1.0 and -0.5 -> +0.25 ± 1.06, ahead on 1 of 2 seeds
    assert "| +I2I − +plain augmentation (control) | +0.25 ± 1.06 | +1.00, -0.50 | 1 of 2 seeds |" in text
    # gap: (22.2 - 17.0) / (37.0 - 17.0) = 26 %; paper (50.1 - 30.5) / (68.0 - 30.5) = 52 %
    assert "= 26.0 % (paper: 52 %)" in text
    single = [{"row": r["row"], "runs": r["runs"][:1]} for r in results]
    text1 = write_table("table4", spec, single, tmp_path, "toycity", []).read_text()
    assert "| +I2I − +plain augmentation (control) | +1.00 | +1.00 | 1 of 1 seeds |" in text1


def test_table5_says_how_many_steps_each_model_trained(tmp_path):
    from sci2i.pipeline.experiments import load_experiments, write_table

    spec = load_experiments()["table5"]
    steps = {"phases": {"warmup": 600, "final": 600}, "total": 1200}
    results = [{"row": row, "runs": [{"seed": 0, "summary": {"final_eval": {"mIoU19": 20.0 + i}, "seg_steps": steps},
                                      "probe": {"mIoU19": 25.0 + i}}]}
               for i, row in enumerate(spec["rows"])]
    text = write_table("table5", spec, results, tmp_path, "toycity", []).read_text()
    assert "| model | mIoU19 (own head) | mIoU19 (linear probe) | seg steps | paper (probe) |" in text
    assert "| source only | 21.0 | 26.0 | 600 (warm-up) + 600 (phase (c)) = 1,200 | 39.6 |" in text
