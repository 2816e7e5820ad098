"""Log lines said once per process: a run builds the same dataset in several phases (and the
figure and translation code read it again), but a skipped file is news only the first time."""

from __future__ import annotations

import logging

_said: set[str] = set()


def log_once(logger: logging.Logger, level: int, msg: str, *args: object) -> bool:
    """``logger.log(level, msg, *args)`` unless this exact message was already logged; True if logged."""
    text = msg % args if args else msg
    if text in _said:
        return False
    _said.add(text)
    logger.log(level, "%s", text)
    return True


def warn_once(logger: logging.Logger, msg: str, *args: object) -> bool:
    """:func:`log_once` at WARNING."""
    return log_once(logger, logging.WARNING, msg, *args)
