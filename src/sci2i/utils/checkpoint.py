"""Checkpoints that survive crashes and cannot run code when loaded.

A checkpoint is a folder-free single file written atomically (temporary file in the same
directory, fsync, rename), so a crash during a write leaves the previous file intact. A write
that fails (disk full, I/O error, no permission) removes its temporary file and raises
:class:`CheckpointWriteError`, naming the folder, the space the file needs and the space free.

Every file carries a SHA-256 checksum of its tensors, verified on load, so bit rot or a bad copy
is refused with the file's name instead of silently changing the weights: safetensors files in
their metadata (``sci2i_sha256``, over the data part), training states under the key
``__sha256__`` (over every tensor's dtype, shape and bytes and every other value).

* Model weights meant for sharing are stored as **safetensors** (:func:`save_weights`,
  :func:`load_weights`): a plain tensor container that cannot carry code.
* Full training state (optimiser, RNG state, step, config) uses ``torch.save`` and is only ever
  read with ``torch.load(weights_only=True)``, which refuses arbitrary pickled objects: a file
  crafted to run code when unpickled raises :class:`UntrustedCheckpointError` instead.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import pickle
import re
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load as _st_loads
from safetensors.torch import save as _st_dumps

log = logging.getLogger("sci2i")

#: safetensors metadata key of the data part's SHA-256 (hex).
SHA256_KEY = "sci2i_sha256"
#: training-state key of the SHA-256 over the rest of the state.
STATE_SHA256_KEY = "__sha256__"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated or does not fit the model."""


class UntrustedCheckpointError(CheckpointError):
    """A checkpoint that is not a plain tensor/primitive container (possible code execution)."""


class CheckpointWriteError(CheckpointError, OSError):
    """Writing a checkpoint or weights file failed (disk full, I/O error, no permission).

    The previous file of that name is intact and no temporary file is left. Also an
    :class:`OSError`, so code that handles failed writes as such keeps working.
    """


def _mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB"


def _write_error(path: Path, e: OSError, needed: int) -> CheckpointWriteError:
    """The clean error for a failed write of ``path`` (about ``needed`` bytes)."""
    folder = path.parent
    try:
        free = f", {_mb(shutil.disk_usage(folder).free)} free there"
    except OSError:
        free = ""
    code = errno.errorcode.get(e.errno, "") if e.errno else ""
    reason = (e.strerror or str(e) or type(e).__name__) + (f" ({code})" if code else "")
    hint = {
        errno.ENOSPC: "free some space there (or write the run elsewhere with --out / run.out_dir)",
        errno.EDQUOT: "free some of your quota (or write the run elsewhere with --out / run.out_dir)",
        errno.EACCES: "make the folder writable (or write the run elsewhere with --out / run.out_dir)",
        errno.EPERM: "make the folder writable (or write the run elsewhere with --out / run.out_dir)",
        errno.EROFS: "the file system is read-only: write the run elsewhere with --out / run.out_dir",
    }.get(e.errno, "check the disk and the folder (or write the run elsewhere with --out / run.out_dir)")
    err = CheckpointWriteError(
        f"cannot write {path.name} in {folder}: {reason}. The file needs about {_mb(needed)}"
        f"{free}. Nothing was overwritten (the files already there are intact) and no partial "
        f"file was left; {hint}, then run the same command again (training resumes from its "
        f"last checkpoint)."
    )
    err.errno = e.errno
    return err


def _atomic_write(path: Path, write_fn, needed: int = 0) -> None:
    """Write ``path`` through a temporary file in its folder, fsync, rename; clean up on failure.

    ``needed`` (bytes, an estimate) goes into the error message of a failed write.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        # fsync the directory so the rename itself is durable.
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        # torch.save reports a failed write as RuntimeError("[enforce fail at
        # inline_container.cc…] … unexpected pos …"), with the OSError lost; a RuntimeError from
        # the writer while the folder is full or unwritable is that failure.
        if isinstance(e, RuntimeError) and not isinstance(e, CheckpointError):
            os_err = _os_error_behind(path.parent, e)
            if os_err is not None:
                raise _write_error(path, os_err, needed) from e
        if isinstance(e, OSError) and not isinstance(e, CheckpointWriteError):
            raise _write_error(path, e, needed) from e
        raise


def _os_error_behind(folder: Path, e: RuntimeError) -> OSError | None:
    """The OSError a RuntimeError of torch's zip writer stands for, if the folder explains it."""
    cause: BaseException | None = e
    while cause is not None:  # the OSError of the Python file object, if it is chained
        if isinstance(cause, OSError):
            return cause
        cause = cause.__cause__ or cause.__context__
    text = str(e)
    if "inline_container" not in text and "PytorchStreamWriter" not in text:
        return None
    try:
        if shutil.disk_usage(folder).free < 2**20:
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    except OSError as du:
        return du
    if not os.access(folder, os.W_OK):
        return OSError(errno.EACCES, os.strerror(errno.EACCES))
    return OSError(errno.EIO, f"{os.strerror(errno.EIO)} ({_first_line(e)})")


def _nbytes(obj: Any) -> int:
    """Bytes of the tensors in a nested state (the size of its file, near enough)."""
    if torch.is_tensor(obj):
        return obj.numel() * obj.element_size()
    if isinstance(obj, Mapping):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    return 0


def _state_digest(obj: Any, h=None):
    """SHA-256 over a nested state: every tensor's dtype, shape and bytes, every other value."""
    h = h if h is not None else hashlib.sha256()
    if torch.is_tensor(obj):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(obj.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, Mapping):
        h.update(f"D{len(obj)}".encode())
        for k in sorted(obj, key=repr):
            h.update(repr(k).encode())
            _state_digest(obj[k], h)
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())
        for v in obj:
            _state_digest(v, h)
    else:
        h.update(f"V{obj!r}".encode())
    return h


def save_state(state: Mapping[str, Any], path: str | Path) -> None:
    """Atomically ``torch.save`` a training-state dict (tensors, numbers, strings, dicts, lists).

    The state is stored with its SHA-256 (``__sha256__``), which :func:`load_state` checks.
    """
    state = {k: v for k, v in state.items() if k != STATE_SHA256_KEY}
    state[STATE_SHA256_KEY] = _state_digest(state).hexdigest()
    _atomic_write(Path(path), lambda f: torch.save(state, f), needed=_nbytes(state))


def load_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a training state with ``weights_only=True``; refuse anything that could run code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":  # torch.load would hand it to safetensors unchecked
        return load_weights(path, map_location)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise UntrustedCheckpointError(
            f"refusing to load {path}: it holds Python objects other than tensors and plain "
            f"containers, which could run code when unpickled. Only load checkpoints written by "
            f"sci2i, or share model weights as safetensors."
        ) from e
    except Exception as e:  # EOFError, RuntimeError (zip), OSError, pickle's own errors
        raise CheckpointError(f"checkpoint {path} is unreadable or truncated: {_first_line(e)}") from e
    if isinstance(state, dict) and STATE_SHA256_KEY in state:
        want = state.pop(STATE_SHA256_KEY)
        if _state_digest(state).hexdigest() != want:
            raise CheckpointError(
                f"checkpoint {path} is corrupt: its contents do not match the SHA-256 written with "
                f"it (bit rot or a damaged copy); use another checkpoint or copy it again"
            )
    return state


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _split_safetensors(data: bytes) -> tuple[dict, bytes]:
    """(header JSON, data part) of a serialised safetensors file."""
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def save_weights(tensors: Mapping[str, torch.Tensor], path: str | Path, metadata: dict | None = None) -> None:
    """Atomically write a flat ``name -> tensor`` dict as safetensors, with its data's SHA-256."""
    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {k: str(v) for k, v in (metadata or {}).items() if k != SHA256_KEY}
    # The data part does not depend on the metadata (offsets are relative to it), so the digest
    # of a first serialisation is that of the file written.
    _, body = _split_safetensors(_st_dumps(flat, metadata=meta))
    meta[SHA256_KEY] = hashlib.sha256(body).hexdigest()
    data = _st_dumps(flat, metadata=meta)
    _atomic_write(Path(path), lambda f: f.write(data), needed=len(data))


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a safetensors file, checking its SHA-256 when it carries one (all sci2i files do).

    A missing, malformed or corrupt file is a :class:`CheckpointError` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        data = path.read_bytes()
        header, body = _split_safetensors(data)
        tensors = _st_loads(data)
    except Exception as e:  # safetensors raises its own SafetensorError; a pickle: bad header
        raise CheckpointError(
            f"{path} is not a valid safetensors file: {_first_line(e)} (a PyTorch pickle renamed "
            f"to .safetensors is refused too: convert it with safetensors.torch.save_file)"
        ) from e
    want = (header.get("__metadata__") or {}).get(SHA256_KEY)
    if want is not None and hashlib.sha256(body).hexdigest() != want:
        raise CheckpointError(
            f"{path} is corrupt: its tensor data do not match the SHA-256 in its metadata (bit "
            f"rot or a damaged copy); copy it again or use another file"
        )
    if str(device) != "cpu":
        tensors = {k: v.to(device) for k, v in tensors.items()}
    return tensors


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

    def load_newest(self, map_location: str | torch.device = "cpu",
                    before: int | None = None) -> tuple[dict, Path] | None:
        """``(state, path)`` of the newest checkpoint that loads (step < ``before`` if given).

        Each checkpoint passed over (truncated, corrupt, refused) is named in a warning; ``None``
        when the folder holds none. When it holds some but not one loads, that is an error:
        starting again from step 0 instead would silently throw the run away.
        """
        found = [(s, p) for s, p in self.list() if before is None or s < before]
        refused = []
        for _, path in reversed(found):
            try:
                return load_state(path, map_location), path
            except CheckpointError as e:
                log.warning("skipping checkpoint %s: %s", path, e)
                refused.append(f"{path.name}: {e}")
        if refused:
            raise CheckpointError(
                f"none of the {len(refused)} checkpoints in {self.folder} loads, so the run cannot "
                f"resume: " + "; ".join(refused) + ". Move them away (or delete them) to start "
                f"this run again from step 0."
            )
        return None

    def load_latest(self, map_location: str | torch.device = "cpu") -> dict | None:
        """The newest checkpoint that loads; a truncated newest one falls back to the previous."""
        found = self.load_newest(map_location)
        return found[0] if found else None
