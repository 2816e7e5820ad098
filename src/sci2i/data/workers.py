"""DataLoader worker set-up shared by every loader (training streams, evaluation, caches).

* :func:`worker_count`: ``data.num_workers`` capped by the cores; with workers, OpenCV is
  pinned to one thread in the main process before they are forked.
* :func:`worker_init` (the ``worker_init_fn``): SIGINT/SIGTERM are left to the main process
  (:func:`ignore_stop_signals`), which stops gracefully (:class:`sci2i.train.loop.GracefulStop`).
"""

from __future__ import annotations

import signal

import cv2

from sci2i.utils.runtime import loader_workers


def ignore_stop_signals(worker_id: int | None = None) -> None:  # noqa: ARG001
    """In a DataLoader worker: SIGINT/SIGTERM are the main process's to handle.

    A signal to the process group reaches the workers too; one that died of it would make the
    main process fail ("DataLoader worker … killed by signal") before it could checkpoint. The
    workers still end: the main process shuts them down, and they exit when it dies.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def worker_count(requested: int) -> int:
    """DataLoader workers for ``data.num_workers`` = ``requested``, capped by the cores
    (:func:`sci2i.utils.runtime.loader_workers`).

    With workers, OpenCV is pinned to one thread here, in the main process, before they are
    forked: the workers already use the cores, and they inherit the setting. (Setting it in the
    forked worker instead hangs it whenever the main process had used OpenCV's thread pool, e.g.
    for an evaluation: the pool's threads do not survive the fork.)
    """
    n = loader_workers(requested)
    if n > 0:
        cv2.setNumThreads(1)
    return n


def worker_init(worker_id: int) -> None:
    """SIGINT and SIGTERM are left to the main process, which stops gracefully: a stop sent to
    the whole process group (Slurm, ``kill -- -PGID``, Ctrl-C) must not kill the workers first."""
    ignore_stop_signals(worker_id)
