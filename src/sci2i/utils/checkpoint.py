"""Checkpoints that survive crashes and cannot run code when loaded.

A checkpoint is a folder-free single file written atomically (temporary file in the same
directory, fsync, rename), so a crash during a write leaves the previous file intact.

* Model weights meant for sharing are stored as **safetensors** (:func:`save_weights`,
  :func:`load_weights`): a plain tensor container that cannot carry code.
* Full training state (optimiser, RNG state, step, config) uses ``torch.save`` and is only ever
  read with ``torch.load(weights_only=True)``, which refuses arbitrary pickled objects: a file
  crafted to run code when unpickled raises :class:`UntrustedCheckpointError` instead.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file as _st_load
from safetensors.torch import save as _st_dumps


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated or does not fit the model."""


class UntrustedCheckpointError(CheckpointError):
    """A checkpoint that is not a plain tensor/primitive container (possible code execution)."""


def _atomic_write(path: Path, write_fn) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        # fsync the directory so the rename itself is durable.
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_state(state: Mapping[str, Any], path: str | Path) -> None:
    """Atomically ``torch.save`` a training-state dict (tensors, numbers, strings, dicts, lists)."""
    _atomic_write(Path(path), lambda f: torch.save(dict(state), f))


def load_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a training state with ``weights_only=True``; refuse anything that could run code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise UntrustedCheckpointError(
            f"refusing to load {path}: it holds Python objects other than tensors and plain "
            f"containers, which could run code when unpickled. Only load checkpoints written by "
            f"sci2i, or share model weights as safetensors."
        ) from e
    except (EOFError, RuntimeError, OSError) as e:
        raise CheckpointError(f"checkpoint {path} is unreadable or truncated: {_first_line(e)}") from e


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def save_weights(tensors: Mapping[str, torch.Tensor], path: str | Path, metadata: dict | None = None) -> None:
    """Atomically write a flat ``name -> tensor`` dict as safetensors."""
    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {k: str(v) for k, v in (metadata or {}).items()}

    data = _st_dumps(flat, metadata=meta)
    _atomic_write(Path(path), lambda f: f.write(data))


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a safetensors file; a missing or corrupt file is a :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        return _st_load(str(path), device=str(device))
    except Exception as e:  # safetensors raises its own SafetensorError
        raise CheckpointError(f"{path} is not a valid safetensors file: {_first_line(e)}") from e


def load_state_dict_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that lists missing/unexpected/mismatched keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:8]}{' …' if len(missing) > 8 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:8]}{' …' if len(unexpected) > 8 else ''}")
        if mismatched:
            parts.append(f"shape mismatches {mismatched[:8]}")
        raise CheckpointError(f"weights in {source} do not fit {type(module).__name__}: " + "; ".join(parts))
    module.load_state_dict(state, strict=True)


_STEP_RE = re.compile(r"step_(\d+)\.pt$")


class CheckpointManager:
    """Numbered training-state checkpoints in a folder, keeping the newest ``keep``."""

    def __init__(self, folder: str | Path, keep: int = 3) -> None:
        self.folder = Path(folder)
        self.keep = keep

    def path_for(self, step: int) -> Path:
        return self.folder / f"step_{step:08d}.pt"

    def list(self) -> list[tuple[int, Path]]:
        if not self.folder.is_dir():
            return []
        found = []
        for p in self.folder.iterdir():
            m = _STEP_RE.search(p.name)
            if m and not p.name.startswith("."):
                found.append((int(m.group(1)), p))
        return sorted(found)

    def save(self, state: Mapping[str, Any], step: int) -> Path:
        path = self.path_for(step)
        save_state(state, path)
        for _, old in self.list()[: -self.keep]:
            old.unlink(missing_ok=True)
        # A process killed mid-write (kill -9, OOM) leaves its temporary file behind; it is never
        # read as a checkpoint (hidden name), and the next successful save removes it.
        for stale in self.folder.glob(".step_*.pt.*.tmp"):
            stale.unlink(missing_ok=True)
        return path

    def latest(self) -> Path | None:
        found = self.list()
        return found[-1][1] if found else None

    def load_latest(self, map_location: str | torch.device = "cpu") -> dict | None:
        """The newest checkpoint that loads; a truncated newest one falls back to the previous."""
        for _, path in reversed(self.list()):
            try:
                return load_state(path, map_location)
            except CheckpointError:
                continue
        return None
