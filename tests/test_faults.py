"""Faults of cluster life (issue 21): group stop signals, kills during evaluation, full disks,
divergence, silent skips, two writers of one folder, user mistakes that used to be tracebacks.

Each test provokes one fault the way it happens on a cluster (a real ``setsid`` process group
with DataLoader workers for the stop signal) and checks what the user sees: the exit code, the
message, the files left, and — where a run is resumed — the same weights, bit for bit, as a run
that was never interrupted. docs/RELIABILITY.md lists them.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from fixtures import write_cityscapes, write_gta5
from sci2i.cli import main as cli
from sci2i.utils.checkpoint import CheckpointError, CheckpointManager, load_state, load_weights

SEG = {
    "data": {"long_side": 64, "crop_size": 32, "eval_long_side": 64, "num_workers": 1},
    "model": {"backbone": "efficientnet_lite0", "weights": ""},
    "seg": {"steps": 16, "con_start": 1, "eval_every": 0, "log_every": 1},
    "run": {"checkpoint_every": 2, "keep_checkpoints": 3, "deterministic": True},
}
I2I = {
    "discriminator": {"trunk": "efficientnet_lite0", "trunk_weights": "", "channels": 16},
    "generator": {"channels": [8, 8, 16, 16], "latent_dim": 8, "style_dim": 8, "mapping_layers": 2},
    "i2i": {"steps": 16, "batch_size": 2, "log_every": 1, "sample_every": 1000, "lr": 1e-3,
            "pseudo_labels": "online"},
}
HANG = 240  # seconds: only ever a guard against a hang, never a speed assertion


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    write_gta5(root / "gta5", n=4, size=(64, 32))
    write_cityscapes(root / "cs", splits=("train", "val"), n_per_split=2, size=(64, 32))
    roots = {"source_root": str(root / "gta5"), "target_root": str(root / "cs")}
    seg = dict(SEG, data={**SEG["data"], **roots})
    (root / "seg.yaml").write_text(yaml.safe_dump(seg))
    (root / "i2i.yaml").write_text(yaml.safe_dump({**seg, **I2I}))
    pipe = {**seg, **I2I, "name": "faults",
            "seg": {**SEG["seg"], "steps": 3}, "i2i": {**I2I["i2i"], "steps": 12, "pseudo_labels": "precomputed"}}
    (root / "pipe.yaml").write_text(yaml.safe_dump(pipe))
    return root


def _popen(*args: str) -> subprocess.Popen:
    """``sci2i ARGS`` in a new session: its own process group, as a batch job's step is."""
    return subprocess.Popen([sys.executable, "-m", "sci2i.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_for(glob_root: Path, pattern: str, proc: subprocess.Popen) -> None:
    deadline = time.time() + HANG
    while time.time() < deadline:
        if list(glob_root.glob(pattern)):
            return
        if proc.poll() is not None:
            pytest.fail(f"exited before {pattern} appeared:\n{proc.stdout.read()}")
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"{pattern} did not appear")


def _stop_group(proc: subprocess.Popen) -> str:
    """SIGTERM to the whole process group (scancel, a time limit, ``kill -- -PGID``), twice, as
    torchrun's forwarding also delivers it; the stop must still write its checkpoint."""
    os.killpg(proc.pid, signal.SIGTERM)
    time.sleep(0.3)
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        out, _ = proc.communicate(timeout=HANG)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return out


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_weights(a), load_weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs between the resumed and the uninterrupted run"


# ----------------------------------------------------------------------------- 1. group SIGTERM
@pytest.mark.slow
def test_group_sigterm_train_seg_stops_with_a_checkpoint_and_resumes_exactly(data, tmp_path):
    cfg = str(data / "seg.yaml")
    proc = _popen("train-seg", cfg, "--out", str(tmp_path / "cut"), "--no-progress")
    _wait_for(tmp_path / "cut" / "checkpoints", "step_*.pt", proc)
    out = _stop_group(proc)
    assert proc.returncode == 130, out
    assert "killed by signal" not in out and "Traceback" not in out, out
    stopped = int(re.search(r"stopped at step (\d+)", out).group(1))
    assert CheckpointManager(tmp_path / "cut" / "checkpoints").list()[-1][0] == stopped, out
    assert stopped < SEG["seg"]["steps"]

    assert cli(["train-seg", "--out", str(tmp_path / "cut"), "--resume", "--no-progress"]) == 0
    assert cli(["train-seg", cfg, "--out", str(tmp_path / "whole"), "--no-progress"]) == 0
    _assert_same_weights(tmp_path / "cut" / "teacher.safetensors", tmp_path / "whole" / "teacher.safetensors")


@pytest.mark.slow
def test_group_sigterm_train_i2i_stops_with_a_checkpoint_and_resumes_exactly(data, tmp_path):
    cfg = str(data / "i2i.yaml")
    proc = _popen("train-i2i", cfg, "--out", str(tmp_path / "cut"))
    _wait_for(tmp_path / "cut" / "checkpoints", "step_*.pt", proc)
    out = _stop_group(proc)
    assert proc.returncode == 130, out
    assert "killed by signal" not in out and "Traceback" not in out, out
    stopped = int(re.search(r"stopped at step (\d+)", out).group(1))
    assert CheckpointManager(tmp_path / "cut" / "checkpoints").list()[-1][0] == stopped < I2I["i2i"]["steps"]

    assert cli(["train-i2i", cfg, "--out", str(tmp_path / "cut"), "--resume"]) == 0
    assert cli(["train-i2i", cfg, "--out", str(tmp_path / "whole")]) == 0
    _assert_same_weights(tmp_path / "cut" / "generator_ema.safetensors",
                         tmp_path / "whole" / "generator_ema.safetensors")


@pytest.mark.slow
def test_group_sigterm_sci2i_run_stops_a_phase_with_a_checkpoint_and_resumes_exactly(data, tmp_path):
    cfg = str(data / "pipe.yaml")
    cut, whole = tmp_path / "cut", tmp_path / "whole"
    proc = _popen("run", cfg, f"run.out_dir={cut}")
    _wait_for(cut / "phases", "i2i-*/checkpoints/step_*.pt", proc)  # in the middle phase
    out = _stop_group(proc)
    assert proc.returncode == 130, out
    assert "killed by signal" not in out and "Traceback" not in out, out
    i2i = next((cut / "phases").glob("i2i-*"))
    assert not (i2i / "DONE.json").exists()
    stopped = int(re.search(r"stopped at step (\d+)", out).group(1))
    assert CheckpointManager(i2i / "checkpoints").list()[-1][0] == stopped

    assert cli(["run", cfg, f"run.out_dir={cut}"]) == 0  # the same command again
    assert "train-i2i: resumed from step" in (i2i / "log.txt").read_text()
    assert cli(["run", cfg, f"run.out_dir={whole}"]) == 0
    _assert_same_weights(cut / "checkpoints" / "final" / "teacher.safetensors",
                         whole / "checkpoints" / "final" / "teacher.safetensors")


# ----------------------------------------------------------------------------- 2. one checkpoint per step
class _Killed(BaseException):
    """Stands for kill -9 / a full disk during the evaluation of a checkpoint step."""


def test_a_kill_during_the_evaluation_of_a_checkpoint_step_still_resumes_exactly(data, tmp_path, monkeypatch):
    from sci2i.config import load_config
    from sci2i.train import mean_teacher
    from sci2i.train.mean_teacher import train_segmentation

    cfg = load_config(str(data / "seg.yaml"), ["seg.steps=6", "seg.eval_every=2", "run.checkpoint_every=2",
                                               "data.num_workers=0"])
    whole = train_segmentation(cfg, tmp_path / "whole", progress=False)

    real = mean_teacher.MeanTeacherTrainer.evaluate

    def evaluate(self, final=False):
        if self.step == 4 and not final:
            raise _Killed  # the process dies in the middle of step 4's evaluation
        return real(self, final)

    monkeypatch.setattr(mean_teacher.MeanTeacherTrainer, "evaluate", evaluate)
    with pytest.raises(_Killed):
        train_segmentation(cfg, tmp_path / "cut", progress=False)
    monkeypatch.undo()
    # the state of step 4 depends on its evaluation: no checkpoint of step 4 exists before it
    assert [s for s, _ in CheckpointManager(tmp_path / "cut" / "checkpoints").list()] == [2]
    assert "guard" in load_state(tmp_path / "cut" / "checkpoints" / "step_00000002.pt")
    resumed = train_segmentation(cfg, tmp_path / "cut", resume=True, progress=False)
    _assert_same_weights(resumed["weights"], whole["weights"])


# ----------------------------------------------------------------------------- 3. disk full
def test_disk_full_while_checkpointing_is_a_clean_error_and_keeps_the_previous_one(data, tmp_path, monkeypatch, capsys):
    real_save, calls = torch.save, []

    def save(obj, f, *a, **k):
        calls.append(1)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)
    out = tmp_path / "full"
    rc = cli(["train-seg", str(data / "seg.yaml"), "seg.steps=6", "data.num_workers=0", "--out", str(out),
              "--no-progress"])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "No space left on device (ENOSPC)" in err and str(out / "checkpoints") in err
    assert re.search(r"needs about [\d.]+ MB, [\d.]+ MB free", err), err
    assert "Traceback" not in err
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_00000002.pt"]  # intact, no temporary
    assert load_state(out / "checkpoints" / "step_00000002.pt")["step"] == 2


def test_a_failed_weights_write_leaves_the_previous_file_and_no_temporary(tmp_path, monkeypatch):
    from sci2i.utils import checkpoint
    from sci2i.utils.checkpoint import CheckpointWriteError, save_weights

    path = tmp_path / "teacher.safetensors"
    save_weights({"w": torch.ones(3)}, path)

    def fsync(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(checkpoint.os, "fsync", fsync)
    with pytest.raises(CheckpointWriteError, match=r"cannot write teacher\.safetensors in .*EIO"):
        save_weights({"w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(load_weights(path)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["teacher.safetensors"]


# ----------------------------------------------------------------------------- 4. divergence
def test_divergence_writes_no_checkpoint_of_bad_weights_and_resume_refuses_to_repeat_it(data, tmp_path, capsys):
    out = tmp_path / "div"
    args = ["train-seg", str(data / "seg.yaml"), "seg.steps=8", "seg.lr=1e30", "seg.grad_clip=1e30",
            "run.max_nonfinite_steps=2", "run.checkpoint_every=1", "data.num_workers=0", "--no-progress"]
    assert cli([*args, "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert "diverged" in err and "Traceback" not in err
    record = json.loads((out / "DIVERGED.json").read_text())
    start = record["streak_start"]
    for step, path in CheckpointManager(out / "checkpoints").list():  # none from the streak
        assert step < start and load_state(path)["guard"]["consecutive"] == 0

    # Following the advice with the same setting: refused, not a run that skips every step
    assert cli([*args, "--out", str(out), "--resume"]) == 3
    err = capsys.readouterr().err
    assert "diverged" in err and "refused" in err and "Traceback" not in err
    assert not (out / "teacher.safetensors").exists()
    # with a lower learning rate it goes on, from before the non-finite steps
    assert cli([*args, "seg.lr=1e-3", "--out", str(out), "--resume"]) == 0
    assert "diverged earlier" in (out / "log.txt").read_text()
    assert not (out / "DIVERGED.json").exists()


def test_the_non_finite_streak_survives_a_checkpoint():
    from sci2i.train.loop import DivergenceError, NonFiniteGuard

    nan, ok = torch.tensor(float("nan")), torch.tensor(1.0)
    guard = NonFiniteGuard(max_consecutive=2)
    guard.step_ok(0, ok)
    guard.step_ok(1, nan)
    guard.step_ok(2, nan)
    resumed = NonFiniteGuard(max_consecutive=2)
    resumed.load_state_dict(guard.state_dict())
    assert resumed.in_streak and resumed.streak_start == 1
    with pytest.raises(DivergenceError, match="from step 1 to step 3"):
        resumed.step_ok(3, nan)  # the third in a row, counted across the resume


# ----------------------------------------------------------------------------- 6. silent skips
def test_resume_names_each_checkpoint_it_passes_over_and_fails_when_none_loads(data, tmp_path, caplog, capsys):
    mgr = CheckpointManager(tmp_path / "run" / "checkpoints", keep=3)
    for step in (2, 4):
        mgr.save({"step": step}, step)
    newest = mgr.latest()
    newest.write_bytes(newest.read_bytes()[:40])
    with caplog.at_level("WARNING", logger="sci2i"):
        state, path = mgr.load_newest()
    assert state["step"] == 2 and f"skipping checkpoint {newest}" in caplog.text

    # every checkpoint bad: an error that says so, not "starting from step 0"
    first = mgr.list()[0][1]
    first.write_bytes(b"\0" * 10)
    rc = cli(["train-seg", str(data / "seg.yaml"), "data.num_workers=0", "--out", str(tmp_path / "run"),
              "--resume", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "none of the 2 checkpoints" in err and first.name in err and newest.name in err
    assert "starting from step 0" not in (tmp_path / "run" / "log.txt").read_text()


def test_a_truncated_done_json_is_an_error_naming_the_file(tmp_path):
    from sci2i.config import load_config
    from sci2i.errors import UserError
    from sci2i.pipeline.runner import Pipeline

    pipe = Pipeline(load_config(None, [f"run.out_dir={tmp_path}/r", f"pipeline.cache_dir={tmp_path}/c"]))
    done = tmp_path / "c" / "x-fp" / "DONE.json"
    done.parent.mkdir(parents=True)
    done.write_text('{"weights": "/some/where/teach')
    with pytest.raises(UserError, match=re.escape(str(done)) + ".*delete it"):
        pipe._phase("x", "fp", lambda folder: {"never": "run"})


def _flip_a_data_byte(path: Path, at_end: int = 7) -> None:
    data = bytearray(path.read_bytes())
    data[-at_end] ^= 0x10  # the tensor data sit at the end of the file
    path.write_bytes(bytes(data))


def test_bit_flips_in_weights_and_checkpoints_are_refused_naming_the_file(tmp_path):
    from sci2i.utils.checkpoint import save_state, save_weights

    w = tmp_path / "teacher.safetensors"
    save_weights({"a": torch.randn(64), "b": torch.randn(8, 8)}, w, metadata={"arch": "x"})
    _flip_a_data_byte(w)
    with pytest.raises(CheckpointError, match=r"teacher\.safetensors is corrupt"):
        load_weights(w)

    c = tmp_path / "step_00000002.pt"
    save_state({"step": 2, "student": {"w": torch.randn(256)}}, c)
    raw = bytearray(c.read_bytes())
    i = raw.find(b"data/0") + 200  # inside the stored tensor (a zip entry stored, not deflated)
    raw[i] ^= 0x10
    c.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"step_00000002\.pt is corrupt"):
        load_state(c)


# ----------------------------------------------------------------------------- 7. one writer per folder
@pytest.mark.slow
def test_a_second_train_seg_on_one_folder_fails_clearly(data, tmp_path, capsys):
    out = tmp_path / "shared"
    first = _popen("train-seg", str(data / "seg.yaml"), "seg.steps=400", "--out", str(out), "--no-progress")
    try:
        _wait_for(out / "checkpoints", "step_*.pt", first)
        config = (out / "config.yaml").read_text()
        rc = cli(["train-seg", str(data / "seg.yaml"), "seg.lr=1e-2", "--out", str(out), "--resume", "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 2 and "in use by another sci2i process" in err and f"pid {first.pid}" in err, err
        assert (out / "config.yaml").read_text() == config  # nothing of the second was written
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=HANG)


# ----------------------------------------------------------------------------- 8. user mistakes
class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_WEIGHTS",))


@pytest.mark.parametrize("command,key", [("train-seg", "model.weights"), ("train-i2i", "discriminator.trunk_weights")])
def test_a_pickle_named_safetensors_is_a_clean_error_and_does_not_run(data, tmp_path, monkeypatch, capsys, command, key):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "weights.safetensors"
    torch.save({"conv": _Exploit()}, evil)
    rc = cli([command, str(data / "i2i.yaml"), f"{key}={evil}", "data.num_workers=0", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and f"{evil} is not a valid safetensors file" in err, err
    assert not (tmp_path / "PWNED_BY_WEIGHTS").exists()


@pytest.mark.parametrize("override,message", [
    ("seg.betas=[0.9]", "'seg.betas' must be Adam's two betas"),
    ("i2i.betas=[0.5,0.9,0.99]", "'i2i.betas' must be Adam's two betas"),
    ("seg=[1,2]", "'seg' in command-line overrides must be a mapping"),
    ("perf.device=tpu", "'perf.device' must be auto, cpu, cuda or cuda:N"),
])
def test_config_values_of_the_wrong_shape_are_config_errors_before_any_work(data, tmp_path, capsys, override, message):
    rc = cli(["train-seg", str(data / "seg.yaml"), override, "--out", str(tmp_path / "o")])
    assert rc == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_a_config_error(data, tmp_path, capsys):
    rc = cli(["train-seg", str(data / "seg.yaml"), "perf.device=cuda", "--out", str(tmp_path / "o")])
    assert rc == 2 and "no CUDA device is available" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_yaml_section_that_is_not_a_mapping_is_a_config_error(data, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"base: {data / 'seg.yaml'}\nseg: [1, 2]\n")
    rc = cli(["train-seg", str(bad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and f"'seg' in {bad} must be a mapping" in err and "got list [1, 2]" in err
    assert not (tmp_path / "o").exists()


def test_torchs_own_enforce_fail_on_a_full_disk_is_translated(tmp_path, monkeypatch):
    """torch.save reports ENOSPC as ``RuntimeError: [enforce fail at inline_container.cc:672] …``
    with the OSError of the file object chained to it (as on a real full tmpfs)."""
    from sci2i.utils.checkpoint import CheckpointWriteError, save_state

    def save(obj, f, *a, **k):
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 832 vs 726")

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(CheckpointWriteError, match=r"cannot write c\.pt in .*\(ENOSPC\)\. The file needs about"):
        save_state({"w": torch.zeros(4)}, tmp_path / "c.pt")
    assert list(tmp_path.iterdir()) == []
