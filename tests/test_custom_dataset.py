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
from sci2i.data.custom import CustomDataset, DatasetSpec, dataset_from_file
from sci2i.data.datasets import CityscapesDataset, GTA5Dataset, pseudo_label_path
from sci2i.errors import DataError

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


def test_a_class_list_other_than_the_models_is_an_error_naming_both(tmp_path, data):
    root, _, _ = data
    two = [{"name": "road", "color": [128, 64, 128], "ids": [7]}, {"name": "car", "color": [0, 0, 142], "ids": [26]}]
    path = _spec_file(tmp_path, "toycity-source.yaml", root / "gta", classes=two)
    cfg = load_config(None, [f"data.source_root={path}"])
    with pytest.raises(DataError) as e:
        build_source_dataset(cfg.data, train=False)
    text = str(e.value)
    assert str(path) in text and "road, car" in text and "sidewalk" in text and "19" in text
    with pytest.raises(DataError, match="road, car"):
        dataset_from_file(path, "train")


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
