"""Faults a long run meets: kill -9, SIGTERM, non-finite steps, bad files during training."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from fixtures import write_cityscapes, write_gta5
from sci2i.train.loop import DivergenceError, GracefulStop, NonFiniteGuard
from sci2i.utils.checkpoint import CheckpointManager, load_state

SEG = {
    "data": {"long_side": 64, "crop_size": 32, "eval_long_side": 64, "num_workers": 0},
    "model": {"backbone": "efficientnet_lite0", "weights": ""},
    "seg": {"steps": 400, "con_start": 1, "eval_every": 0, "log_every": 1},
    "run": {"checkpoint_every": 2, "keep_checkpoints": 2, "deterministic": True},
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("rel")
    write_gta5(root / "gta5", n=4, size=(64, 32))
    write_cityscapes(root / "cs", splits=("train", "val"), n_per_split=2, size=(64, 32))
    cfg = dict(SEG, data={**SEG["data"], "source_root": str(root / "gta5"), "target_root": str(root / "cs")})
    path = root / "seg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return root, path


def _start(cfg: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sci2i.cli", "train-seg", str(cfg), *extra, "--out", str(out), "--no-progress"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


#: seconds: only a guard against a hang, never a speed assertion (the machine may be shared)
HANG = 900


def _wait_for_checkpoint(out: Path, at_least: int, proc: subprocess.Popen, timeout: float = HANG) -> None:
    mgr = CheckpointManager(out / "checkpoints")
    deadline = time.time() + timeout
    while time.time() < deadline:
        if mgr.list() and mgr.list()[-1][0] >= at_least:
            return
        if proc.poll() is not None:
            pytest.fail(f"training exited early:\n{proc.stdout.read()}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"no checkpoint appeared within {timeout:.0f} s: training hangs")


@pytest.mark.slow
def test_kill_9_then_resume_loses_at_most_the_steps_since_the_last_checkpoint(data):
    root, cfg = data
    out = root / "killed"
    proc = _start(cfg, out)
    _wait_for_checkpoint(out, 4, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    mgr = CheckpointManager(out / "checkpoints")
    assert mgr.list()
    last_step = mgr.list()[-1][0]
    # every checkpoint left on disk is complete and loadable (atomic writes); a write cut by the
    # kill can only leave a hidden temporary file, which is never listed as a checkpoint
    for _, path in mgr.list():
        assert "student" in load_state(path)
    assert all(not p.name.startswith(".") for _, p in mgr.list())
    # resume and run to a step shortly after the last checkpoint
    stop_at = last_step + 2
    done = subprocess.run(
        [sys.executable, "-m", "sci2i.cli", "train-seg", str(cfg), f"seg.steps={stop_at}", "--out", str(out),
         "--resume", "--no-progress"], capture_output=True, text=True, timeout=HANG)
    assert done.returncode == 0, done.stdout + done.stderr
    log = (out / "log.txt").read_text()
    assert f"resumed from step {last_step}" in log
    assert (out / "teacher.safetensors").is_file()
    assert not list((out / "checkpoints").glob(".*.tmp"))  # stale temporaries cleaned up


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_exits_cleanly(data):
    root, cfg = data
    out = root / "termed"
    proc = _start(cfg, out)
    _wait_for_checkpoint(out, 2, proc)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=HANG)
    assert proc.returncode == 130, output  # "stopped early, resumable"
    import re

    stopped_at = int(re.search(r"stopped at step (\d+)", output).group(1))
    mgr = CheckpointManager(out / "checkpoints")
    assert mgr.list()[-1][0] == stopped_at  # a checkpoint at the step it stopped, not the last interval
    assert "--resume" in output
    assert not (out / "teacher.safetensors").exists()  # stopped early: no final export


def test_graceful_stop_turns_signals_into_a_flag():
    before = signal.getsignal(signal.SIGTERM)
    try:
        with GracefulStop() as quiet:  # no signal: the previous handler comes back
            assert signal.getsignal(signal.SIGTERM) == quiet._handler
        assert signal.getsignal(signal.SIGTERM) is before and not quiet.requested
        with GracefulStop() as stop:
            assert not stop.requested
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            assert stop.requested
        # a stop under way keeps its handler after the block (the checkpoint is written after
        # the loop): a repeat within the grace period is only logged, the process lives on
        assert signal.getsignal(signal.SIGTERM) == stop._handler
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert stop.requested
    finally:
        signal.signal(signal.SIGTERM, before)


def test_non_finite_steps_are_skipped_then_the_run_stops(caplog):
    guard = NonFiniteGuard(max_consecutive=2, name="t")
    ok = torch.tensor(1.0)
    assert guard.step_ok(0, ok, ok)
    assert not guard.step_ok(1, torch.tensor(float("nan")), ok)
    assert "non-finite" in caplog.text
    assert not guard.step_ok(2, ok, torch.tensor(float("inf")))
    assert guard.step_ok(3, ok, ok) and guard.consecutive == 0  # a good step resets the count
    guard.step_ok(4, torch.tensor(float("nan")), ok)
    guard.step_ok(5, torch.tensor(float("nan")), ok)
    with pytest.raises(DivergenceError, match="last good checkpoint"):
        guard.step_ok(6, torch.tensor(float("nan")), ok)
    assert guard.skipped_total == 5


def test_nan_learning_rate_run_stops_with_divergence_and_keeps_checkpoints(data, tmp_path, monkeypatch):
    """An exploding configuration ends in DivergenceError; checkpoints before it stay loadable."""
    import sci2i.train.mean_teacher as mean_teacher
    from sci2i.config import load_config
    from sci2i.train.mean_teacher import train_segmentation

    _, cfg_path = data
    # two good steps (and their checkpoints) first, then a learning rate that explodes
    monkeypatch.setattr(mean_teacher, "exponential_lr", lambda step, lr, gamma: lr if step < 2 else 1e30)
    cfg = load_config(str(cfg_path), ["seg.steps=30", "seg.grad_clip=1e30",
                                      "run.max_nonfinite_steps=3", "run.checkpoint_every=1"])
    with pytest.raises(DivergenceError):
        train_segmentation(cfg, out_dir=tmp_path, resume=False, progress=False)
    mgr = CheckpointManager(tmp_path / "checkpoints")
    assert mgr.list(), "no checkpoint was written before the divergence"
    # step 2's checkpoint holds the last good weights; step 3's (after the 1e30 update) is set aside
    assert mgr.list()[-1][0] == 2
    for _, path in mgr.list():
        state = load_state(path)
        assert all(torch.isfinite(t).all() for t in state["student"].values() if t.is_floating_point())
