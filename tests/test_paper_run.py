"""The paper's own run as README "Reproducing the paper" documents it, end to end.

`sci2i run gta5-cityscapes` and `sci2i run synthia-cityscapes` with the dataset roots and the
VGG16 weights given by the documented environment variables, on data in the real layouts the
tests write (GTA5 palette PNGs, SYNTHIA 16-bit labels, Cityscapes with gtFine and
``leftImg8bit_sequence/train``). Images are smaller than the real ones (GTA5 1914×1052,
Cityscapes 2048×1024) but every path the real size takes is taken: images are rescaled to the
long side (``data.long_side`` < image size), cropped, evaluated with logits upsampled to the full
label size, and the sequence frames (of which the train images are frame 19) are the I2I target
set. Every phase runs one step, with the preset's batch size and worker count.

The GTA5 folder holds the defects real GTA5 has (a pair whose image and label sizes differ) and
those a download can add (a truncated image, a zero-byte label): none is trained on or
translated, each is named once in the log, and the run finishes.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fixtures import corrupt, write_cityscapes, write_gta5, write_synthia
from sci2i.bench.paper_run import write_vgg16_like
from sci2i.cli import main as cli

pytestmark = pytest.mark.slow

GTA5_SIZE = (160, 88)  # the aspect of GTA5's 1914×1052
CS_SIZE = (128, 64)  # Cityscapes' 2:1
#: one step per phase at a reduced scale: long side 96 < every image's, 48² crops
STEPS = ["seg.steps=1", "seg.con_start=0", "i2i.steps=1", "data.long_side=96", "data.crop_size=48",
         "data.eval_long_side=96"]

@pytest.fixture(scope="module")
def paper_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper-data")
    gta = write_gta5(root / "gta5", n=7, size=GTA5_SIZE, seed=1)
    bad = {}
    # a pair whose sizes differ (GTA5 has a few): the label of 00005 is cut narrower
    Image.open(gta.label_paths[4]).crop((0, 0, GTA5_SIZE[0] - 10, GTA5_SIZE[1])).save(gta.label_paths[4])
    bad["size"] = gta.names[4]
    corrupt(gta.image_paths[5], "truncate")  # header intact: found only when the image is read
    bad["truncated"] = gta.names[5]
    corrupt(gta.label_paths[6], "empty")
    bad["empty_label"] = gta.names[6]
    write_synthia(root / "synthia", n=4, size=GTA5_SIZE, seed=2)
    cs = write_cityscapes(root / "cityscapes", n_per_split=2, size=CS_SIZE, seed=3, with_sequence=True)
    weights = write_vgg16_like(root / "vgg16-397923af.pth")  # torchvision's key names and shapes
    return {"root": root, "gta5": gta, "bad": bad, "cs": cs, "weights": weights}


def _env(monkeypatch, data, source: str) -> None:
    monkeypatch.setenv("SCI2I_SOURCE_ROOT", str(data["root"] / source))
    monkeypatch.setenv("SCI2I_TARGET_ROOT", str(data["root"] / "cityscapes"))
    monkeypatch.setenv("SCI2I_VGG16_WEIGHTS", str(data["weights"]))


def _phases(out: Path) -> dict[str, Path]:
    return {p.name.rsplit("-", 1)[0]: p for p in (out / "phases").iterdir() if p.is_dir()}


def _stamps(out: Path) -> dict[str, tuple[str, int]]:
    return {name: (d.name, (d / "DONE.json").stat().st_mtime_ns) for name, d in _phases(out).items()}


def _assert_report(out: Path, phases: set[str]) -> dict:
    assert set(_phases(out)) == phases
    for name in ("config.yaml", "report.md", "summary.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_phase"] == "final"
    return summary


def test_gta5_cityscapes_end_to_end_skips_bad_files_and_keeps_finished_phases(paper_data, monkeypatch, caplog,
                                                                               tmp_path):
    _env(monkeypatch, paper_data, "gta5")
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="sci2i"):
        assert cli(["run", "gta5-cityscapes", f"run.out_dir={out}", *STEPS]) == 0
    summary = _assert_report(out, {"warmup", "pseudo_labels", "i2i", "translate", "kid", "final"})
    ev = summary["final_eval"]
    assert ev["num_images"] == 2 and ev["class_set"] == "cityscapes19"
    phases = _phases(out)

    # the I2I target set: the sequence frames, each once (the train images are frame 19)
    labels = sorted(p.relative_to(phases["pseudo_labels"] / "labels").as_posix()
                    for p in (phases["pseudo_labels"] / "labels").rglob("*.png"))
    seq = paper_data["cs"]["sequence"].names
    assert labels == sorted(n.replace("_leftImg8bit.png", ".png") for n in seq)

    # G(x_s): the four good pairs only, each image with its label at the same size
    gta, bad = paper_data["gta5"], paper_data["bad"]
    data = phases["translate"] / "data"
    translated = sorted(p.relative_to(data).as_posix() for p in (data / "images").glob("*.png"))
    assert translated == [n for n in gta.names if n not in bad.values()]
    for name in translated:
        with Image.open(data / name) as im, Image.open(data / name.replace("images/", "labels/")) as lb:
            assert im.size == lb.size == (96, 53)  # rescaled to the long side, aspect kept

    # each bad file named once in the whole run's log
    messages = [r.getMessage() for r in caplog.records]
    for kind, name in bad.items():
        stem = Path(name).name
        hits = [m for m in messages if stem in m]
        assert len(hits) == 1, (kind, hits)
    assert not [m for m in messages if "Traceback" in m]

    # speed and logging settings keep every finished phase ...
    before = _stamps(out)
    assert cli(["run", "gta5-cityscapes", f"run.out_dir={out}", *STEPS, f"data.cache_dir={tmp_path / 'cache'}",
                "data.num_workers=1", "seg.log_every=7", "i2i.log_every=7", "data.max_bad_files=5"]) == 0
    assert _stamps(out) == before
    # ... a method setting reruns phase (b) and what depends on it, nothing else
    assert cli(["run", "gta5-cityscapes", f"run.out_dir={out}", *STEPS, "i2i.lambda_cgan=0.5"]) == 0
    after = {p.name.rsplit("-", 1)[0] + "/" + p.name for p in (out / "phases").iterdir() if p.is_dir()}
    new = {k.split("/")[0] for k in after if k.split("/")[1] not in {d for d, _ in before.values()}}
    assert new == {"i2i", "translate", "kid", "final"}


def test_synthia_cityscapes_end_to_end(paper_data, monkeypatch, tmp_path):
    _env(monkeypatch, paper_data, "synthia")
    out = tmp_path / "run"
    assert cli(["run", "synthia-cityscapes", f"run.out_dir={out}", *STEPS]) == 0
    summary = _assert_report(out, {"warmup", "pseudo_labels", "i2i", "translate", "kid", "final"})
    assert summary["final_eval"]["class_set"] == "synthia16"
    assert {"mIoU16", "mIoU13"} <= set(summary["final_eval"])
    report = (out / "report.md").read_text()
    assert "mIoU16" in report


def test_gta5_cityscapes_under_torchrun_two_ranks(paper_data, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "SCI2I_SOURCE_ROOT": str(paper_data["root"] / "gta5"),
           "SCI2I_TARGET_ROOT": str(paper_data["root"] / "cityscapes"),
           "SCI2I_VGG16_WEIGHTS": str(paper_data["weights"])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "sci2i.cli", "run", "gta5-cityscapes", f"run.out_dir={out}", *STEPS]
    # a generous limit for hangs only (a rank waiting at a barrier the other never reaches)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-6000:]
    assert "Traceback" not in text
    _assert_report(out, {"warmup", "pseudo_labels", "i2i", "translate", "kid", "final"})
    # rank 0 alone logs and prints the summary
    assert proc.stdout.count("done: ") == 1
    assert text.count("phase final: running") == 1
    # every rank trained the same final model: the report is rank 0's, the weights are shared
    final = torch.load(sorted((_phases(out)["final"] / "checkpoints").glob("step_*.pt"))[-1], weights_only=True)
    assert final["step"] == 1


def test_paper_preset_without_roots_is_a_config_error_naming_both(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("SCI2I_SOURCE_ROOT", raising=False)
    monkeypatch.delenv("SCI2I_TARGET_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    assert cli(["run", "gta5-cityscapes", f"run.out_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert "SCI2I_SOURCE_ROOT" in err and "SCI2I_TARGET_ROOT" in err and "config error" in err
    assert not (tmp_path / "toycity").exists() and not (tmp_path / "run").exists()


def test_missing_weights_are_found_before_the_first_phase(paper_data, monkeypatch, tmp_path, capsys):
    _env(monkeypatch, paper_data, "gta5")
    missing = tmp_path / "nowhere" / "vgg16.pth"
    rc = cli(["run", "gta5-cityscapes", f"run.out_dir={tmp_path / 'run'}", *STEPS,
              f"discriminator.trunk_weights={missing}"])
    err = capsys.readouterr().err
    assert rc == 2 and f"weights file not found: {missing}" in err and "sidecar" not in err
    assert not (tmp_path / "run" / "phases").exists()  # no phase started
    # a file without its sidecar: the sidecar is asked for, still before any phase
    bare = tmp_path / "bare.pth"
    bare.write_bytes(paper_data["weights"].read_bytes()[:100])
    rc = cli(["run", "gta5-cityscapes", f"run.out_dir={tmp_path / 'run'}", *STEPS, f"discriminator.trunk_weights={bare}"])
    assert rc == 2 and f"{bare}.json" in capsys.readouterr().err
    assert not (tmp_path / "run" / "phases").exists()


def test_bad_validation_image_is_found_before_the_first_phase(paper_data, monkeypatch, tmp_path, capsys):
    import shutil

    cs = tmp_path / "cityscapes"
    shutil.copytree(paper_data["root"] / "cityscapes", cs)
    corrupt(cs / "leftImg8bit" / "val" / paper_data["cs"]["val"].names[1], "truncate")
    _env(monkeypatch, paper_data, "gta5")
    monkeypatch.setenv("SCI2I_TARGET_ROOT", str(cs))
    rc = cli(["run", "gta5-cityscapes", f"run.out_dir={tmp_path / 'run'}", *STEPS])
    err = capsys.readouterr().err
    assert rc == 2 and paper_data["cs"]["val"].names[1] in err and "damaged image file" in err
    assert not (tmp_path / "run" / "phases").exists()
