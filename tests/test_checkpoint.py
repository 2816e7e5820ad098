"""Checkpoints: atomic writes, safetensors weights, refusing pickles that run code."""

import os
import pickle

import pytest
import torch

from sci2i.utils.checkpoint import (
    CheckpointError,
    CheckpointManager,
    UntrustedCheckpointError,
    load_state,
    load_weights,
    save_state,
    save_weights,
)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_CHECKPOINT",))


def test_state_round_trip(tmp_path):
    state = {"step": 3, "model": {"w": torch.arange(4.0)}, "config": "a: 1", "list": [1, 2.5]}
    save_state(state, tmp_path / "c.pt")
    back = load_state(tmp_path / "c.pt")
    assert back["step"] == 3 and torch.equal(back["model"]["w"], torch.arange(4.0))
    assert back["list"] == [1, 2.5]


def test_crafted_pickle_is_refused_without_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"model": _Exploit()}, path)
    with pytest.raises(UntrustedCheckpointError, match="evil.pt"):
        load_state(path)
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises((UntrustedCheckpointError, CheckpointError)):
        load_state(raw)
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()


def test_truncated_and_missing_checkpoints_are_clear_errors(tmp_path):
    save_state({"w": torch.randn(100)}, tmp_path / "c.pt")
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "t.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="t.pt"):
        load_state(tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_state(tmp_path / "missing.pt")


def test_safetensors_weights_round_trip_and_corruption(tmp_path):
    w = {"a.weight": torch.randn(3, 2), "b": torch.arange(5)}
    save_weights(w, tmp_path / "m.safetensors", metadata={"arch": "x"})
    back = load_weights(tmp_path / "m.safetensors")
    assert all(torch.equal(w[k], back[k]) for k in w)
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_weights(tmp_path / "bad.safetensors")


def test_failed_write_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_state({"v": torch.tensor(1)}, path)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_state({"v": torch.tensor(2)}, path)
    monkeypatch.undo()
    assert load_state(path)["v"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary left behind


def test_manager_keeps_last_k_and_skips_a_truncated_newest(tmp_path):
    mgr = CheckpointManager(tmp_path, keep=2)
    for step in (10, 20, 30):
        mgr.save({"step": step}, step)
    assert [s for s, _ in mgr.list()] == [20, 30]
    newest = mgr.latest()
    newest.write_bytes(newest.read_bytes()[:10])
    assert mgr.load_latest()["step"] == 20


def test_a_write_cut_by_kill_leaves_only_a_hidden_temporary_that_the_next_save_removes(tmp_path):
    mgr = CheckpointManager(tmp_path, keep=2)
    mgr.save({"step": 1}, 1)
    stale = tmp_path / ".step_00000002.pt.x1y2z3.tmp"
    stale.write_bytes(b"half a checkpoint")
    assert [s for s, _ in mgr.list()] == [1]  # never taken for a checkpoint
    mgr.save({"step": 3}, 3)
    assert not stale.exists()
