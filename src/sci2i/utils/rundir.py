"""The run directory: resolved config, git revision, log, metrics (JSONL + TensorBoard).

Layout of ``run.out_dir``::

    config.yaml      resolved configuration (written first)
    git.txt          git revision and dirty flag of the code that ran
    log.txt          human-readable log
    metrics.jsonl    one JSON object per logged step: {"phase", "step", "Loss/G/total", ...}
    tb/              TensorBoard event files
    checkpoints/     training states (see utils/checkpoint.py)
    .sci2i.lock      locked by the one process writing the folder (utils/runlock.py)
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Mapping

from sci2i.config import Config, save_config
from sci2i.utils.runlock import lock_run_folder

log = logging.getLogger("sci2i")


def git_revision() -> str:
    root = Path(__file__).resolve().parents[3]
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        return f"{rev or 'unknown'}{' (dirty)' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"


def _on_console(record: logging.LogRecord) -> bool:
    """Records logged with ``extra={"console": False}`` (the training loops' interval lines,
    :mod:`sci2i.utils.progress`) go to log files only: the console has the bar or stdout."""
    return getattr(record, "console", True)


def setup_logging(log_file: Path | None = None, level: int = logging.INFO) -> logging.Handler | None:
    """Log lines to stderr (and ``log_file``). Under torchrun only rank 0 logs below ERROR:
    the ranks run the same code, so their lines would only repeat rank 0's. Returns the file
    handler it added for ``log_file`` (None if there was one already), for
    :meth:`RunDir.close` to remove, so that a phase's log.txt holds only that phase's lines."""
    logger = logging.getLogger("sci2i")
    logger.setLevel(level if int(os.environ.get("RANK", "0")) == 0 else max(level, logging.ERROR))
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) for h in logger.handlers):
        sh = logging.StreamHandler()
        sh.setFormatter(fmt)
        sh.addFilter(_on_console)
        logger.addHandler(sh)
    if log_file is not None:
        log_file = Path(log_file).resolve()
        if not any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == log_file for h in logger.handlers):
            log_file.parent.mkdir(parents=True, exist_ok=True)
            fh = logging.FileHandler(log_file)
            fh.setFormatter(fmt)
            logger.addHandler(fh)
            return fh
    return None


class RunDir:
    """Creates the run directory and records metrics; only rank 0 writes (``enabled``).

    The folder is locked while the RunDir is open (:func:`~sci2i.utils.runlock.lock_run_folder`:
    another process writing it is an error, or with ``wait`` is waited for) until :meth:`close`.
    """

    def __init__(self, cfg: Config, path: str | Path | None = None, enabled: bool = True,
                 wait: bool = False) -> None:
        self.path = Path(path or cfg.run.out_dir)
        self.enabled = enabled
        self._tb = None
        self._lock = None
        self._log_handler: logging.Handler | None = None
        if enabled:
            self._lock = lock_run_folder(self.path, wait=wait)  # before anything is written
            save_config(cfg, self.path / "config.yaml")
            (self.path / "git.txt").write_text(git_revision() + "\n")
            self._log_handler = setup_logging(self.path / "log.txt")

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def tensorboard(self):
        if self._tb is None and self.enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.path / "tb"))
        return self._tb

    def log_metrics(self, phase: str, step: int, values: Mapping[str, Any]) -> None:
        """Append to metrics.jsonl and TensorBoard; values are floats (tensors are converted)."""
        if not self.enabled:
            return
        clean = {}
        for k, v in values.items():
            v = float(v.detach().float().item()) if hasattr(v, "detach") else float(v)
            clean[k] = v
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"phase": phase, "step": step, "time": time.time(), **clean}) + "\n")
        tb = self.tensorboard()
        for k, v in clean.items():
            if math.isfinite(v):
                tb.add_scalar(f"{phase}/{k}", v, step)

    def log_image(self, tag: str, image_chw, step: int) -> None:
        if self.enabled:
            self.tensorboard().add_image(tag, image_chw, step)

    def close(self) -> None:
        if self._log_handler is not None:  # later phases must not write into this run's log
            logging.getLogger("sci2i").removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._lock is not None:
            self._lock.close()  # releases the lock
            self._lock = None


def read_metrics(path: str | Path) -> list[dict]:
    p = Path(path)
    if p.is_dir():
        p = p / "metrics.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
