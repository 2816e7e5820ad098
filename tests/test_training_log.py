"""Training logs a person can read: one plain line per interval in log.txt and on stdout off a
terminal, no bar off a terminal, and each run directory's log.txt holding only its own lines."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import torch

from fixtures import write_cityscapes, write_gta5
from sci2i.config import load_config
from sci2i.utils.progress import TrainingLog, format_duration
from sci2i.utils.rundir import RunDir, setup_logging

LINE = re.compile(r"^(?P<phase>[\w-]+) step (?P<step>\d+)/(?P<total>\d+) \(\d+%\) \| .* \| "
                  r"(?P<sps>[\d.]+) s/step \| ETA \w+ \| peak (mem|RSS) [\d.]+ GB$")


def test_line_has_step_losses_schedules_pace_eta_and_memory(capsys):
    tlog = TrainingLog("i2i", total=10, start=0, progress=True)
    assert tlog.bar is None  # pytest's stderr is no terminal: no bar
    text = tlog.report(4, {"Loss/D/total": torch.tensor(0.5), "Loss/G/total": 1.25, "Schedule/lambda_pl": 0.3,
                           "lr": 1e-5})
    m = LINE.match(text)
    assert m and (m["phase"], m["step"], m["total"]) == ("i2i", "4", "10"), text
    assert "D/total 0.5000 G/total 1.2500 | lambda_pl 0.3000 lr 1.00e-05" in text
    out = capsys.readouterr()
    assert out.out.strip() == text  # stdout is not a terminal: the line is printed
    assert "\r" not in out.err
    assert TrainingLog("x", 5, enabled=False).report(1, {"a": 1.0}) is None
    assert capsys.readouterr().out == ""
    assert [format_duration(s) for s in (5, 65, 3725)] == ["5s", "1m05s", "1h02m"]


def test_each_run_directory_log_holds_only_its_own_lines(tmp_path):
    cfg = load_config(None, [])
    log = logging.getLogger("sci2i")
    outer = RunDir(cfg, tmp_path / "run")  # the pipeline's run directory, open throughout
    log.info("line of the run")
    first = RunDir(cfg, tmp_path / "run" / "phases" / "warmup")
    log.info("line of the warm-up")
    TrainingLog("train-seg", 2, enabled=True, progress=False).report(2, {"total": 1.0})
    first.close()
    second = RunDir(cfg, tmp_path / "run" / "phases" / "final")
    log.info("line of the final phase")
    second.close()
    log.info("report line of the run")
    outer.close()
    log.info("after everything")
    warmup = (tmp_path / "run" / "phases" / "warmup" / "log.txt").read_text()
    final = (tmp_path / "run" / "phases" / "final" / "log.txt").read_text()
    run = (tmp_path / "run" / "log.txt").read_text()
    assert "line of the warm-up" in warmup and "train-seg step 2/2" in warmup
    assert "final phase" not in warmup and "report line" not in warmup and "line of the run" not in warmup
    assert "line of the final phase" in final and "warm-up" not in final
    assert all(s in run for s in ("line of the run", "warm-up", "final phase", "report line of the run"))
    assert "after everything" not in run


def test_interval_lines_are_not_repeated_on_the_console(capsys):
    setup_logging()
    TrainingLog("probe", 3, enabled=True, progress=False).report(3, {"ce": 0.5})
    out = capsys.readouterr()
    assert out.out.count("probe step 3/3") == 1 and "probe step" not in out.err


@pytest.mark.slow
def test_train_seg_off_a_terminal_writes_plain_lines_to_stdout_and_log_txt(tmp_path, capfd):
    from sci2i.cli import main as cli_main

    write_gta5(tmp_path / "gta", n=4, size=(64, 32), seed=1)
    write_cityscapes(tmp_path / "cs", n_per_split=2, size=(64, 32), seed=3)
    out = tmp_path / "run"
    rc = cli_main(["train-seg", "model.backbone=efficientnet_lite0", "model.weights=", "model.aspp_rates=[1,2,3,4]",
                   f"data.source_root={tmp_path / 'gta'}", f"data.target_root={tmp_path / 'cs'}",
                   "data.long_side=64", "data.crop_size=32", "data.eval_long_side=64", "data.num_workers=0",
                   "seg.batch_size=2", "seg.steps=4", "seg.log_every=2", "seg.con_start=1", "seg.eval_every=0",
                   "run.checkpoint_every=100", "perf.device=cpu", "--output", str(out)])
    assert rc == 0
    captured = capfd.readouterr()
    printed = [line for line in captured.out.splitlines() if line.startswith("train-seg step")]
    assert [LINE.match(line)["step"] for line in printed] == ["2", "4"], captured.out
    assert all("total " in line and "lr " in line and "lambda_con " in line for line in printed)
    assert "\r" not in captured.err and "train-seg step" not in captured.err
    logged = [line for line in (out / "log.txt").read_text().splitlines() if "train-seg step" in line]
    assert len(logged) == 2 and logged[1].endswith(printed[1])


def test_no_bar_off_a_terminal_for_toycity_translation_and_pseudo_labels(tmp_path, capfd):
    """tqdm draws nothing when stderr is a log file, whatever the caller's progress flag."""
    from sci2i.toycity import generate

    generate(tmp_path / "toy", seed=0, workers=1, progress=True, width=32, height=16, n_source=1,
             n_target_train=1, n_target_val=1)
    assert "\r" not in capfd.readouterr().err
