"""Training-time tolerance of bad files: report by name, count, skip, stop past a limit.

Training on tens of thousands of downloaded files meets the odd truncated PNG or a GTA5 label
of the wrong size. :class:`SkipBadSamples` wraps a dataset: when reading a sample raises
:class:`DataError`, the file is reported, counted and the next sample is read instead, up to
``max_bad_files`` distinct bad files (``cfg.data.max_bad_files``); one more stops the run with a
DataError. Evaluation datasets are never wrapped: a bad validation file must stop scoring.

With DataLoader workers each worker holds its own copy of the wrapper, so
:func:`sci2i.data.stream.infinite_loader` sets ``attach_skipped=True``: skipped-file messages
then travel with the batch to the main process, which keeps the one global count.
"""

from __future__ import annotations

import logging
from typing import Optional, Union

import numpy as np
from torch.utils.data import Dataset

from sci2i.data.wrapper import DatasetWrapper
from sci2i.errors import DataError
from sci2i.utils.log_once import warn_once

log = logging.getLogger("sci2i")

#: Item key under which skipped-file messages travel when ``attach_skipped`` is on.
SKIPPED_KEY = "_skipped"

Key = Union[int, tuple[int, int]]


class BadFileLedger:
    """Counts distinct bad files; raises DataError once more than ``limit`` were met."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: dict[str, None] = {}

    def __len__(self) -> int:
        return len(self.seen)

    def report(self, message: str) -> None:
        if message in self.seen:
            return
        self.seen[message] = None
        # named once per run although each phase (and reader) counts it against its own limit
        warn_once(log, "skipping a bad file (data.max_bad_files=%d per phase): %s", self.limit, message)
        if len(self) > self.limit:
            raise DataError(
                f"{len(self)} bad files met in one phase, more than data.max_bad_files="
                f"{self.limit}; the last one: {message}. Fix or remove the files, or raise "
                f"data.max_bad_files."
            )


def readable(dataset: Dataset, n: int, ledger: BadFileLedger) -> list[dict]:
    """The first ``n`` items of ``dataset`` that can be read, bad files reported to ``ledger``
    (for figures and samples, which must skip what training skips)."""
    items: list[dict] = []
    for i in range(len(dataset)):
        if len(items) == n:
            break
        try:
            items.append(dataset[i])
        except DataError as e:
            ledger.report(str(e))
    return items


class SkipBadSamples(DatasetWrapper):
    """Dataset wrapper that skips samples whose files raise :class:`DataError`.

    Indexing accepts an ``int`` or an ``(index, seed)`` pair; the seed makes the sample's
    random transform explicit (see :class:`sci2i.data.build.SeededSampler`). Attributes
    not defined here (``names``, ``root``, ...) are those of the wrapped dataset.
    """

    def __init__(self, dataset: Dataset, max_bad_files: int = 20, attach_skipped: bool = False) -> None:
        super().__init__(dataset)
        self.max_bad_files = max_bad_files
        self.attach_skipped = attach_skipped
        self.ledger = BadFileLedger(max_bad_files)

    def __repr__(self) -> str:
        return f"SkipBadSamples({self.dataset!r}, max_bad_files={self.max_bad_files})"

    def _read(self, index: int, rng: Optional[np.random.Generator]) -> dict:
        get = getattr(self.dataset, "get", None)
        return get(index, rng) if get is not None else self.dataset[index]

    def __getitem__(self, key: Key) -> dict:
        index, seed = (key, None) if isinstance(key, (int, np.integer)) else key
        rng = np.random.default_rng(seed) if seed is not None else None
        n = len(self.dataset)
        skipped: list[str] = []
        for attempt in range(self.max_bad_files + 1):
            i = (int(index) + attempt) % n  # the next sample stands in for a bad one
            try:
                item = self._read(i, rng)
            except DataError as e:
                skipped.append(str(e))
                if not self.attach_skipped:
                    self.ledger.report(str(e))
                elif len(set(skipped)) > self.max_bad_files:
                    break
                continue
            if self.attach_skipped:
                item[SKIPPED_KEY] = skipped
            return item
        raise DataError(
            f"more than data.max_bad_files={self.max_bad_files} bad files in a row around sample "
            f"{index}; the last one: {skipped[-1] if skipped else '?'}"
        )
