"""Warnings said once per process: a run builds the same dataset in several phases (and the
figure and translation code read it again), but a skipped file is news only the first time."""

from __future__ import annotations

import logging

_said: set[str] = set()


def warn_once(logger: logging.Logger, msg: str, *args: object) -> bool:
    """``logger.warning(msg, *args)`` unless this exact message was already logged; True if logged."""
    text = msg % args if args else msg
    if text in _said:
        return False
    _said.add(text)
    logger.warning("%s", text)
    return True
