"""Resumable streams of training samples: sample k of a stream is a function of (seed, k).

The one loader path of every training loop. A loop that draws a *varying* number of images per
step from several datasets (phase (c): ``x_s`` and ``G(x_s)`` in a 50/50 mix; the target only
once λ_con > 0), and that must resume bit-exactly from a checkpoint, needs single samples from
an arbitrary position: :class:`SampleStream` gives that, in the order of
:class:`sci2i.data.build.SeededSampler` (the order of epoch ``e`` and each sample's transform
seed depend only on ``(seed, e, rank, position)``, not on the number of workers), with bad files
skipped (:mod:`sci2i.data.robust`) and DataLoader workers prefetching ahead.
:func:`infinite_loader` is the same stream taken a fixed batch at a time (the linear probe).

``stream.take(n)`` returns the next ``n`` items collated (``None`` for ``n = 0``);
``SampleStream(..., start=k)`` starts at sample ``k``, so a resumed run that knows how many
samples it consumed continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

from typing import Iterator, Optional

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data._utils.collate import default_collate

from sci2i.data.build import SeededSampler
from sci2i.data.robust import SKIPPED_KEY, BadFileLedger, SkipBadSamples
from sci2i.data.workers import worker_count, worker_init
from sci2i.errors import DataError


class _SamplerFrom(Sampler):
    """``(index, seed)`` pairs of a :class:`SeededSampler`, forever, from position ``start``."""

    def __init__(self, base: SeededSampler, start: int) -> None:
        self.base = base
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        n = len(self.base)
        epoch, offset = divmod(self.start, n)
        while True:
            self.base.set_epoch(epoch)
            for k, pair in enumerate(self.base):
                if k >= offset:
                    yield pair
            epoch, offset = epoch + 1, 0


def _identity(item: dict) -> dict:
    return item


class SampleStream:
    """Single training samples forever, from sample ``start`` of the ``seed``-ed order.

    ``samples_per_epoch`` is this process's share of the dataset (sharded under torchrun).
    """

    def __init__(self, dataset: Dataset, seed: int, num_workers: int = 0, start: int = 0,
                 pin_memory: bool = False, max_bad_files: Optional[int] = None) -> None:
        inner = dataset.dataset if isinstance(dataset, SkipBadSamples) else dataset
        limit = max_bad_files if max_bad_files is not None else getattr(dataset, "max_bad_files", 20)
        wrapped = SkipBadSamples(inner, limit, attach_skipped=True)
        self.ledger = BadFileLedger(limit)
        self.consumed = start
        base = SeededSampler(wrapped, seed, drop_last=True)
        self.samples_per_epoch = len(base)
        self.dataset = inner
        sampler = _SamplerFrom(base, start)
        workers = worker_count(num_workers)
        self._loader = DataLoader(
            wrapped, batch_size=None, sampler=sampler, num_workers=workers,
            collate_fn=_identity, pin_memory=pin_memory, persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
            generator=torch.Generator().manual_seed(seed),
            worker_init_fn=worker_init if workers > 0 else None,
        )
        self._it: Optional[Iterator[dict]] = None

    def take(self, n: int) -> Optional[dict]:
        """The next ``n`` samples collated into a batch; ``None`` when ``n == 0``."""
        if n <= 0:
            return None
        if self._it is None:
            self._loader.sampler.start = self.consumed  # resume where the last iterator stopped
            self._it = iter(self._loader)
        items = []
        for _ in range(n):
            item = next(self._it)
            for message in item.pop(SKIPPED_KEY, []):
                self.ledger.report(message)
            items.append(item)
        self.consumed += n
        return default_collate(items)

    def close(self) -> None:
        """Shut the DataLoader workers down (a new ``take`` would start them again)."""
        it, self._it = self._it, None
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


def infinite_loader(dataset: Dataset, batch_size: int, num_workers: int, seed: int,
                    pin_memory: bool = False, max_bad_files: Optional[int] = None) -> Iterator[dict]:
    """Collated batches of ``batch_size`` forever: a :class:`SampleStream` from its start.

    Batches are dicts as the dataset's items, with a leading batch dimension (``name`` becomes a
    list). Bad files are skipped; the limit is ``max_bad_files``, else that of a dataset already
    wrapped in :class:`SkipBadSamples` (``build_*(train=True)``), else 20. A dataset whose share
    per process is smaller than one batch is an error.
    """
    stream = SampleStream(dataset, seed, num_workers, 0, pin_memory, max_bad_files)
    if stream.samples_per_epoch < batch_size:
        raise DataError(f"{stream.samples_per_epoch} samples per process but batch_size={batch_size}: "
                        f"no batch can be formed from {stream.dataset!r}")
    return _batches(stream, batch_size)


def _batches(stream: SampleStream, batch_size: int) -> Iterator[dict]:
    try:
        while True:
            yield stream.take(batch_size)
    finally:
        stream.close()
