"""Own datasets described by a YAML file (sci2i.data.custom): the same samples as the built-in
readers for data in their layouts, unknown ids ignored and counted, clear errors, and `sci2i
run` on toy-city described by the example files giving the built-in path's result."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from fixtures import write_cityscapes, write_gta5
from sci2i.config import load_config
from sci2i.data.build import build_source_dataset, build_target_dataset, build_translated_dataset
from sci2i.data.custom import CustomDataset, DatasetSpec, dataset_from_file, run_class_names, run_class_set
from sci2i.data.datasets import CityscapesDataset, GTA5Dataset, pseudo_label_path
from sci2i.errors import DataError
from sci2i.labels import CLASS_NAMES

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "datasets"


def _spec_file(tmp_path: Path, example: str, root: Path, **changes) -> Path:
    """The example dataset file ``example`` with its root pointed at ``root``."""
    spec = yaml.safe_load((EXAMPLES / example).read_text())
    spec.update(root=str(root), **changes)
    path = tmp_path / example
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    gta = write_gta5(root / "gta", n=5, size=(40, 24), seed=4, extra_ids=(40, 200))
    cs = write_cityscapes(root / "cs", n_per_split=3, size=(40, 24), seed=5)
    return root, gta, cs


def test_source_file_reads_what_the_gta5_reader_reads_and_counts_unknown_ids(data, tmp_path, caplog):
    root, gta, _ = data
    spec = _spec_file(tmp_path, "toycity-source.yaml", root / "gta")
    caplog.set_level(logging.WARNING, logger="sci2i")
    own, builtin = CustomDataset(spec, "train"), GTA5Dataset(root / "gta")
    assert len(own) == len(builtin) == 5
    for i in range(len(own)):
        assert own.name(i) == Path(builtin.name(i)).relative_to("images").as_posix()
        (a_img, a_lbl), (b_img, b_lbl) = own.read(i), builtin.read(i)
        assert np.array_equal(a_img, b_img) and np.array_equal(a_lbl, b_lbl)
        assert np.array_equal(a_lbl, gta.train_ids[i])
    unknown = own.unknown_ids
    assert set(unknown) == {40, 200} and all(v > 0 for v in unknown.values())
    warnings = [r.getMessage() for r in caplog.records if "in no class of the dataset file" in r.getMessage()]
    assert len(warnings) == 1 and "[40, 200]" in warnings[0], warnings
    own.read(0), own.read(1)
    assert len([r for r in caplog.records if "in no class" in r.getMessage()]) == 1  # once per run


def test_target_file_reads_what_the_cityscapes_reader_reads(data, tmp_path):
    root, _, cs = data
    spec = _spec_file(tmp_path, "toycity-target.yaml", root / "cs")
    for split in ("train", "val"):
        own, builtin = CustomDataset(spec, split), CityscapesDataset(root / "cs", split)
        assert own.names == builtin.names == cs[split].names
        for i in range(len(own)):
            assert all(np.array_equal(a, b) for a, b in zip(own.read(i), builtin.read(i)))
    unlabelled = CustomDataset(spec, "train", with_labels=False)
    assert not unlabelled.has_labels and unlabelled.read(0)[1] is None
    pseudo = tmp_path / "pl"
    for k, name in enumerate(unlabelled.names):
        path = pseudo_label_path(pseudo, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        from PIL import Image

        Image.fromarray(np.full((24, 40), k, np.uint8)).save(path)
    with_pl = CustomDataset(spec, "train", label_dir=pseudo)
    assert [int(with_pl.read(i)[1][0, 0]) for i in range(len(with_pl))] == [0, 1, 2]


def test_build_reads_dataset_files_as_source_target_and_translated_source(data, tmp_path):
    root, _, _ = data
    src = _spec_file(tmp_path, "toycity-source.yaml", root / "gta")
    trg = _spec_file(tmp_path, "toycity-target.yaml", root / "cs")
    cfg = load_config(None, [f"data.source_root={src}", f"data.target_root={trg}", "data.long_side=32",
                             "data.crop_size=16", "data.eval_long_side=32"])
    source = build_source_dataset(cfg.data, train=True)
    assert len(source) == 5 and source[0]["image"].shape == (3, 16, 16)
    val = build_target_dataset(cfg.data, "val", with_labels=True, train=False)
    assert isinstance(val, CustomDataset) and val[0]["label"].shape == (24, 40)
    translated = tmp_path / "translated"
    for name in source.dataset.names if hasattr(source, "dataset") else source.names:
        (translated / name).parent.mkdir(parents=True, exist_ok=True)
        (translated / name).write_bytes((root / "gta" / "images" / name).read_bytes())
    tr = build_translated_dataset(translated, cfg.data, train=False)
    assert len(tr) == 5 and np.array_equal(tr.read(2)[1], CustomDataset(src, "train").read(2)[1])
    assert tr.files(0)[0].parent == translated


def test_dataset_file_errors_name_the_file_and_the_key(tmp_path, data):
    root, _, _ = data
    base = yaml.safe_load((EXAMPLES / "toycity-source.yaml").read_text())
    cases = [({"colour": 1}, "unknown keys"), ({"classes": []}, "'classes' is missing"),
             ({"classes": [{"name": "a", "ids": [1]}, {"name": "b", "ids": [1]}]}, "listed by both"),
             ({"ignore_id": 3}, "ignore_id must be in 19..255"), ({"splits": {"train": {"labels": "x"}}}, "splits.train"),
             ({"ignore_ids": [7]}, "also ids of classes")]
    for change, words in cases:
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump({**base, "root": str(root / "gta"), **change}))
        with pytest.raises(DataError, match=words) as e:
            DatasetSpec.load(path)
        assert str(path) in str(e.value)
    with pytest.raises(DataError, match="no split 'val'"):
        CustomDataset(_spec_file(tmp_path, "toycity-source.yaml", root / "gta"), "val")


def test_source_and_target_with_other_class_lists_are_an_error_naming_both(tmp_path, data):
    root, _, _ = data
    two = [{"name": "road", "color": [128, 64, 128], "ids": [7]}, {"name": "car", "color": [0, 0, 142], "ids": [26]}]
    path = _spec_file(tmp_path, "toycity-source.yaml", root / "gta", classes=two)
    assert dataset_from_file(path, "train").class_names == ("road", "car")  # any classes are read
    cfg = load_config(None, [f"data.source_root={path}", f"data.target_root={root / 'cs'}"])
    with pytest.raises(DataError) as e:  # a 2-class source file with Cityscapes' built-in reader
        run_class_names(cfg.data)
    text = str(e.value)
    assert str(path) in text and "road, car" in text and "sidewalk" in text and "19" in text
    trg = _spec_file(tmp_path, "toycity-target.yaml", root / "cs", classes=two[::-1])
    cfg = load_config(None, [f"data.source_root={path}", f"data.target_root={trg}"])
    with pytest.raises(DataError, match="road, car.*car, road"):  # the same classes, another order
        run_class_names(cfg.data)
    same = _spec_file(tmp_path, "toycity-target.yaml", root / "cs", classes=two)
    cfg = load_config(None, [f"data.source_root={path}", f"data.target_root={same}"])
    assert run_class_names(cfg.data) == ("road", "car") and run_class_set(cfg.data) == "all"
    with pytest.raises(DataError, match="data.class_set=synthia16"):
        run_class_set(load_config(None, [f"data.source_root={path}", f"data.target_root={same}",
                                         "data.class_set=synthia16"]).data)
    builtin = load_config(None, [f"data.source_root={root / 'gta'}", f"data.target_root={root / 'cs'}"])
    assert run_class_names(builtin.data) == CLASS_NAMES and run_class_set(builtin.data) == "cityscapes19"


#: toy-city's label ids grouped into five classes of a dataset of one's own
FIVE = [{"name": "flat", "color": [128, 64, 128], "ids": [7, 8]},
        {"name": "construction", "color": [70, 70, 70], "ids": [11, 12, 13, 17, 19, 20]},
        {"name": "nature", "color": [107, 142, 35], "ids": [21, 22]},
        {"name": "sky", "color": [70, 130, 180], "ids": [23]},
        {"name": "agent", "color": [220, 20, 60], "ids": [24, 25, 26, 27, 28, 31, 32, 33]}]
FIVE_NAMES = tuple(c["name"] for c in FIVE)


@pytest.fixture(scope="module")
def five_class_run(tmp_path_factory):
    """`sci2i run` on toy-city described as a 5-class dataset (source and target files)."""
    from sci2i.cli import main as cli
    from sci2i.toycity import generate

    from test_pipeline import TINY

    root = tmp_path_factory.mktemp("five")
    generate(root / "toy", seed=0, progress=False, width=64, height=32, n_source=4, n_target_train=3,
             n_target_val=2)
    src = _spec_file(root, "toycity-source.yaml", root / "toy" / "source", classes=FIVE, name="five-source")
    trg = _spec_file(root, "toycity-target.yaml", root / "toy" / "target", classes=FIVE, name="five-target")
    preset = root / "tiny.yaml"
    preset.write_text(yaml.safe_dump({**TINY, "pipeline": {"kid_images": 0}}))
    out = root / "run"
    assert cli(["run", str(preset), f"run.out_dir={out}", f"data.source_root={src}", f"data.target_root={trg}",
                "--no-progress"]) == 0
    return root, out, json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_sci2i_run_trains_and_scores_a_dataset_with_five_classes(five_class_run):
    import torch

    from sci2i.infer.segmenter import load_segmenter

    root, out, summary = five_class_run
    for key in ("warmup_eval", "final_eval"):
        ev = summary[key]
        assert tuple(ev["per_class"]) == FIVE_NAMES and ev["class_set"] == "all", key
        assert isinstance(ev["mIoU"], float) and "mIoU19" not in ev, key
    model = load_segmenter(summary["phases"]["final"]["weights"])
    assert model.num_classes == 5 and model.class_names == FIVE_NAMES  # from the checkpoint's metadata
    # D's AC head has one channel per class, the GAN head one more (domain + class-wise)
    (ckpt,) = sorted(Path(summary["phases"]["i2i"]["dir"]).glob("checkpoints/step_*.pt"))[-1:]
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    d_out = {k: tuple(v.shape) for k, v in _flat(state).items() if "head" in k and k.endswith("weight")}
    assert any("ac_head" in k and 5 in s[:2] for k, s in d_out.items()), d_out
    assert not any(19 in s[:2] or 20 in s[:2] for s in d_out.values()), d_out
    report = (out / "report.md").read_text()
    assert "| model | mIoU |" in report and "| method | flat | construction | nature | sky | agent | mIoU |" in report


def _flat(state, prefix=""):
    """A nested checkpoint dict as {dotted key: tensor}."""
    import torch

    out = {}
    for k, v in state.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif isinstance(v, torch.Tensor):
            out[f"{prefix}{k}"] = v
    return out


@pytest.mark.slow
def test_the_summary_time_of_m1_counts_every_phase_it_needed(five_class_run):
    from sci2i.pipeline.report import model_seconds

    _, out, summary = five_class_run
    phases = summary["phases"]
    needed = ("warmup", "pseudo_labels", "i2i", "translate", "final")
    assert all(phases[p]["seconds"] > 0 for p in needed), {p: phases.get(p) for p in needed}
    assert model_seconds(phases, "final") == pytest.approx(sum(phases[p]["seconds"] for p in needed))
    assert model_seconds(phases, "warmup") == phases["warmup"]["seconds"]
    line = next(l for l in (out / "report.md").read_text().splitlines() if l.startswith("Time per phase"))
    assert all(f"{p} " in line for p in needed), line
    assert line.endswith(f"; all {sum(v['seconds'] for v in phases.values() if 'seconds' in v) / 60:.1f}."), line


@pytest.mark.slow
def test_a_checkpoint_evaluated_on_other_classes_is_an_error_naming_both(five_class_run, capsys):
    from sci2i.cli import main as cli
    from sci2i.infer.segmenter import evaluate_checkpoint

    root, _, summary = five_class_run
    weights = summary["phases"]["final"]["weights"]
    cityscapes_classes = _spec_file(root / "toy", "toycity-target.yaml", root / "toy" / "target")
    with pytest.raises(DataError) as e:
        evaluate_checkpoint(weights, cityscapes_classes, device="cpu", num_workers=0, progress=False)
    text = str(e.value)
    assert "flat, construction, nature, sky, agent" in text and "road, sidewalk" in text
    assert str(weights) in text and str(cityscapes_classes) in text
    # nor does a run on other classes start from it (model.init_checkpoint)
    from sci2i.train.mean_teacher import train_segmentation

    source = _spec_file(root / "toy", "toycity-source.yaml", root / "toy" / "source")  # Cityscapes' 19 classes
    cfg = load_config(str(root / "tiny.yaml"), [f"data.source_root={source}", f"data.target_root={cityscapes_classes}",
                                               f"model.init_checkpoint={weights}"])
    with pytest.raises(DataError, match="the classes of the run's data .*road, sidewalk.* are not those of the "
                                        "checkpoint .*flat, construction"):
        train_segmentation(cfg, root / "from-five", progress=False)
    # on its own classes: scored on all five, headline mIoU
    assert cli(["evaluate", "--checkpoint", weights, "--target-root", str(root / "toycity-target.yaml"),
                "--device", "cpu", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| method | flat | construction | nature | sky | agent | mIoU |" in printed and "\nmIoU: " in printed


@pytest.mark.slow
def test_sci2i_run_on_toycity_described_by_the_example_files_equals_the_builtin_path(tmp_path):
    from sci2i.cli import main as cli

    from test_pipeline import TINY

    cfg = dict(TINY)
    cfg["pipeline"] = {"toycity_dir": str(tmp_path / "toy"),
                       "toycity_sizes": {"width": 64, "height": 32, "n_source": 4,
                                         "n_target_train": 3, "n_target_val": 2}}
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump(cfg))
    assert cli(["run", str(preset), f"run.out_dir={tmp_path / 'builtin'}"]) == 0
    src = _spec_file(tmp_path, "toycity-source.yaml", tmp_path / "toy" / "source")
    trg = _spec_file(tmp_path, "toycity-target.yaml", tmp_path / "toy" / "target")
    assert cli(["run", str(preset), f"run.out_dir={tmp_path / 'own'}", f"data.source_root={src}",
                f"data.target_root={trg}"]) == 0
    used = yaml.safe_load((tmp_path / "own" / "config.yaml").read_text())["data"]
    assert (used["source_root"], used["target_root"]) == (str(src), str(trg))  # the files, not toy-city's folders
    builtin = json.loads((tmp_path / "builtin" / "summary.json").read_text())
    own = json.loads((tmp_path / "own" / "summary.json").read_text())
    for key in ("warmup_eval", "final_eval"):
        assert own[key]["mIoU19"] == builtin[key]["mIoU19"], key
        assert own[key]["per_class"] == builtin[key]["per_class"], key
