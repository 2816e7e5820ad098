"""Both trainers, one life cycle (:class:`sci2i.train.loop.Trainer`): an interrupted and resumed
run equals an uninterrupted one bit for bit, and every counter of the checkpoint comes back.

The interruption is the real one: a SIGTERM while a step runs (GracefulStop finishes the step,
puts off the evaluation due at it, writes the checkpoint and returns ``stopped``); a non-finite
step before it is skipped by the guards, whose counters must survive the checkpoint.
"""

from __future__ import annotations

import math
import signal
from pathlib import Path

import pytest
import torch
from fixtures import write_cityscapes, write_gta5

from sci2i.cli import main as cli
from sci2i.config import load_config
from sci2i.train import loop
from sci2i.train.i2i import I2ITrainer, train_i2i
from sci2i.train.mean_teacher import MeanTeacherTrainer, train_segmentation
from sci2i.utils.checkpoint import CheckpointManager, load_state
from sci2i.utils.rundir import RunDir, read_metrics

STEPS, NONFINITE_STEP, STOP_STEP = 4, 1, 2  # the signal comes during step 2: stopped at 3

COMMON = ["data.long_side=64", "data.crop_size=32", "data.eval_long_side=64", "data.num_workers=0",
          "run.checkpoint_every=2", "run.deterministic=true", "run.seed=5", "perf.device=cpu"]
SEG = ["model.backbone=efficientnet_lite0", "model.aspp_rates=[1,2,3,4]", "seg.batch_size=2",
       "seg.lr=1e-3", "seg.con_start=1", "seg.log_every=2", "seg.eval_every=3"]
I2I = ["generator.channels=[8,8,16,16]", "generator.latent_dim=8", "generator.style_dim=8",
       "generator.mapping_layers=2", "discriminator.trunk=efficientnet_lite0",
       "discriminator.trunk_weights=''", "discriminator.channels=16", "i2i.lr=1e-3",
       "i2i.ema_decay=0.9", "i2i.batch_size=2", "i2i.pseudo_labels=online", "i2i.log_every=2",
       "i2i.sample_every=3"]
KINDS = {
    "seg": (MeanTeacherTrainer, lambda cfg, d, resume: train_segmentation(cfg, d, resume=resume, progress=False),
            SEG, "seg.steps"),
    "i2i": (I2ITrainer, lambda cfg, d, resume: train_i2i(cfg, d, resume=resume, progress=False), I2I, "i2i.steps"),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trainers")
    write_gta5(root / "gta", n=6, size=(64, 32), seed=1)
    write_cityscapes(root / "cs", n_per_split=3, size=(64, 32), seed=3)
    return root


def _cfg(kind: str, data: Path):
    _, _, extra, steps_key = KINDS[kind]
    return load_config(None, [f"data.source_root={data / 'gta'}", f"data.target_root={data / 'cs'}",
                              *COMMON, *extra, f"{steps_key}={STEPS}"])


def _nonfinite_at(monkeypatch, step: int) -> None:
    """Every guard sees a non-finite value at ``step`` (the step is skipped, as for a real NaN)."""
    real = loop.NonFiniteGuard.step_ok

    def step_ok(self, at, *values):
        if at == step:
            values = tuple(v * math.nan for v in values)
        return real(self, at, *values)

    monkeypatch.setattr(loop.NonFiniteGuard, "step_ok", step_ok)


def _sigterm_during(monkeypatch, cls, step: int) -> None:
    real = cls.train_step

    def train_step(self):
        if self.step == step:
            signal.raise_signal(signal.SIGTERM)  # GracefulStop's handler: finish the step, then stop
        return real(self)

    monkeypatch.setattr(cls, "train_step", train_step)


def _assert_equal(a, b, where: str = "") -> None:
    """Tensors, containers and plain values equal, bit for bit."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), (where, a.keys(), b.keys())
        for k in a:
            _assert_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal(x, y, f"{where}[{i}]")
    elif hasattr(a, "shape"):  # numpy RNG state
        assert (a == b).all(), where
    else:
        assert a == b, (where, a, b)


def _newest(run: Path) -> tuple[int, dict]:
    step, path = CheckpointManager(run / "checkpoints").list()[-1]
    return step, load_state(path)


@pytest.mark.parametrize("kind", ["seg", "i2i"])
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(kind, data, tmp_path, monkeypatch):
    cls, train, _, _ = KINDS[kind]
    cfg = _cfg(kind, data)
    _nonfinite_at(monkeypatch, NONFINITE_STEP)
    whole = train(cfg, tmp_path / "whole", False)
    assert not whole["stopped"] and whole["step"] == STEPS

    with monkeypatch.context() as m:
        _sigterm_during(m, cls, STOP_STEP)
        cut = train(cfg, tmp_path / "cut", False)
    assert cut["stopped"] and cut["step"] == STOP_STEP + 1
    step, state = _newest(tmp_path / "cut")
    assert step == STOP_STEP + 1 and state["step"] == step
    assert state["eval_due"] is True  # the evaluation/samples of step 3 were put off ...
    assert all(g["skipped_total"] == 1 and g["consecutive"] == 0 for g in state["guard"].values())
    resumed = train(cfg, tmp_path / "cut", True)  # ... and done first by the resumed run
    assert not resumed["stopped"] and resumed["step"] == STEPS
    assert resumed.keys() == whole.keys()

    (step_a, a), (step_b, b) = _newest(tmp_path / "whole"), _newest(tmp_path / "cut")
    assert step_a == step_b == STEPS
    # the same config but for run.out_dir
    assert a.pop("config") == b.pop("config").replace(str(tmp_path / "cut"), str(tmp_path / "whole"))
    _assert_equal(a, b, kind)  # networks, optimisers, guards, log window, RNG states: everything
    # the same rows were logged at the same steps (window means), the resumed run's after the cut
    rows = lambda run: [(r["step"], {k: v for k, v in r.items() if k != "time"})  # noqa: E731
                        for r in read_metrics(run) if any(k.startswith("Loss/") for k in r)]
    assert rows(tmp_path / "whole") == rows(tmp_path / "cut")
    assert [s for s, _ in rows(tmp_path / "whole")] == [2, 4]
    loss_keys = {k for _, r in rows(tmp_path / "whole") for k in r if k.startswith("Loss/")}
    net = {"seg": {"student"}, "i2i": {"G", "D"}}[kind]
    assert {k.split("/")[1] for k in loss_keys} == net and all(k.count("/") == 2 for k in loss_keys)
    assert any(k.endswith("/grad_norm") for k in loss_keys)


def test_an_i2i_run_cut_after_a_nonfinite_step_resumes_with_the_guard_count(data, tmp_path, monkeypatch):
    cfg = _cfg("i2i", data)
    _nonfinite_at(monkeypatch, NONFINITE_STEP)
    with monkeypatch.context() as m:
        _sigterm_during(m, I2ITrainer, STOP_STEP)
        assert train_i2i(cfg, tmp_path / "run", progress=False)["stopped"]
    run = RunDir(cfg, tmp_path / "run", enabled=False)
    trainer = I2ITrainer(cfg, run, "cpu", progress=False)
    assert trainer.guard_G.skipped_total == trainer.guard_D.skipped_total == 0
    assert trainer.resume() and trainer.step == STOP_STEP + 1
    for guard in (trainer.guard_G, trainer.guard_D):
        assert (guard.skipped_total, guard.consecutive, guard.streak_start) == (1, 0, -1)
    # and the count goes on from there: the final checkpoint still says one skipped step each.
    # (`--resume` with no preset: the run's own config.yaml, as for train-seg)
    assert cli(["train-i2i", "--output", str(tmp_path / "run"), "--resume", "--no-progress"]) == 0
    _, state = _newest(tmp_path / "run")
    assert {k: g["skipped_total"] for k, g in state["guard"].items()} == {"G": 1, "D": 1}


def test_a_stopped_command_survives_a_repeat_of_the_stop_while_it_exits(tmp_path):
    """Exit 130 (stopped, checkpoint written) stays 130 when the group's stop comes again during
    the exit, where Python's own handlers are already back to the default (a race that made
    test_faults' group SIGTERM of train-i2i end in -15 on a loaded machine)."""
    import os
    import subprocess
    import sys

    script = tmp_path / "stopped.py"
    script.write_text(
        "import os, signal, sys, time\n"
        "import sci2i.commands.train_i2i as command\n"
        "from sci2i import cli\n"
        "command.main = lambda args: 130  # as a command that was stopped by a signal\n"
        "sys.argv = ['sci2i', 'train-i2i', '--output', 'run']\n"
        "rc = cli.main()\n"
        "os.kill(os.getpid(), signal.SIGTERM)  # the repeat, after the command returned\n"
        "time.sleep(0.5)\n"
        "sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 130, (proc.returncode, proc.stderr[-2000:])
