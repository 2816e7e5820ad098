"""A dataset that wraps another and exposes the wrapped dataset's attributes."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset


class DatasetWrapper(Dataset):
    """Delegates ``len`` and unknown attributes (``names``, ``root``, ...) to ``self.dataset``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __getattr__(self, name: str) -> Any:
        if name == "dataset" or name.startswith("__"):
            raise AttributeError(name)  # keeps pickling (DataLoader workers) from recursing
        return getattr(self.dataset, name)

    def __len__(self) -> int:
        return len(self.dataset)
