"""One writer per run folder.

A run folder is written by one process at a time (:func:`lock_run_folder`, used by
:class:`sci2i.utils.rundir.RunDir`): a second command given the same folder fails at once with
an error naming the process that holds it — two trainings in one folder would resume each
other's checkpoints and mix their weights. ``sci2i run``, whose phase folders may be shared
(experiment rows, a second terminal), waits for the first instead (``wait=True``). The lock is
an ``flock`` on ``<folder>/.sci2i.lock``: it goes with the process, so a killed run leaves no
stale lock behind.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("sci2i")

LOCK_NAME = ".sci2i.lock"


class FolderLock:
    """A held run-folder lock; :meth:`close` releases it (once every holder in this process has)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        entry = _HELD[self.key]
        entry[1] -= 1
        if entry[1] == 0:
            del _HELD[self.key]
            entry[0].close()  # closing the file releases the flock


#: Folders this process holds: resolved path -> [open lock file, holders]. The lock is per
#: process (a second RunDir of the same folder in one process, as in a resumed in-process
#: run, shares it); other processes are kept out.
_HELD: dict[str, list] = {}


def lock_run_folder(path: str | Path, wait: bool = False) -> FolderLock:
    """Lock the run folder ``path`` (created if needed) for this process.

    If another process holds it: :class:`~sci2i.errors.UserError` naming that process, or with
    ``wait`` block until it is released.
    """
    from sci2i.errors import UserError

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        return FolderLock(key)
    handle = open(path / LOCK_NAME, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        if not wait:
            handle.close()
            raise UserError(
                f"the run folder {path} is in use by another sci2i process ({holder}); two runs "
                f"writing one folder would mix their checkpoints and weights. Wait for it to "
                f"finish (or stop it), or give this run another folder (--out / run.out_dir)."
            ) from None
        log.info("run folder %s is in use by %s: waiting for it", path, holder)
        fcntl.flock(handle, fcntl.LOCK_EX)
    handle.seek(0)
    handle.truncate()
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:3]]) if sys.argv else "python"
    handle.write(f"pid {os.getpid()}, {command}\n")
    handle.flush()
    _HELD[key] = [handle, 1]
    return FolderLock(key)
