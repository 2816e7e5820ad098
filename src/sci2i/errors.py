"""Errors meant for the user: the CLI prints them without a traceback and exits with 2.

Each message names the file or key at fault and says how to fix it.
"""

from sci2i.config.loader import ConfigError


class UserError(RuntimeError):
    """Base class for problems with the user's input (data, files, options)."""


class DataError(UserError):
    """A dataset root, split or file that is missing, unreadable or malformed."""


def __getattr__(name: str):
    """``CheckpointError`` and ``UntrustedCheckpointError`` live in :mod:`sci2i.utils.checkpoint`,
    which imports torch: they are looked up on first use, so that importing this module (every
    command does, and ``sci2i --help`` with them) stays free of torch's 2-4 s start-up."""
    if name in ("CheckpointError", "UntrustedCheckpointError"):
        from sci2i.utils import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "UserError", "DataError", "ConfigError", "CheckpointError", "UntrustedCheckpointError",
]
