"""Content fingerprints of phases: a phase is identified by everything its output depends on.

Two runs whose warm-up phases have the same inputs (data, model, segmentation settings, seed)
share one warm-up folder, so the rows of a paper table reuse each other's work and an
interrupted run finds its finished phases again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any


def _at_default(f: dataclasses.Field, value: Any) -> bool:
    if f.default is not dataclasses.MISSING:
        return value == f.default
    if f.default_factory is not dataclasses.MISSING:
        return value == f.default_factory()
    return False


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        # fields marked "omit_default" (options added later) count only when set, so the
        # fingerprints of phases that do not use them stay those of earlier versions
        # and settings of speed or logging ("exclude", schema.NOT_A_RESULT) never count
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not (f.metadata.get("fingerprint") == "exclude"
                        or f.metadata.get("fingerprint") == "omit_default" and _at_default(f, getattr(obj, f.name)))}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in sorted(obj.items())}
    return obj


def fingerprint(*parts: Any, length: int = 10) -> str:
    """A short stable hash of dataclasses, dicts, lists and scalars."""
    blob = json.dumps([_plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]
