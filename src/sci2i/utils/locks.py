"""Exclusive locks on folders: two processes that would write the same folder take turns.

The lock is ``fcntl.flock`` on a hidden file beside the folder (``.<name>.lock``), so it is
released by the kernel when its holder dies, however it dies: a killed run never leaves a
stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from pathlib import Path

log = logging.getLogger("sci2i")


@contextlib.contextmanager
def folder_lock(folder: Path, enabled: bool = True):
    """Hold an exclusive lock on ``folder`` (waiting, with a log line, while another holds it)."""
    if not enabled:
        yield
        return
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("%s is in use by another run: waiting for it", folder)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
