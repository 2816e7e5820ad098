"""Errors meant for the user: the CLI prints them without a traceback and exits with 2.

Each message names the file or key at fault and says how to fix it.
"""

from sci2i.config.loader import ConfigError
from sci2i.utils.checkpoint import CheckpointError, UntrustedCheckpointError

class UserError(RuntimeError):
    """Base class for problems with the user's input (data, files, options)."""

class DataError(UserError):
    """A dataset root, split or file that is missing, unreadable or malformed."""

UserError.register = None  # type: ignore[attr-defined]  # (no ABC registration; plain classes)

__all__ = [
    "UserError", "DataError", "ConfigError", "CheckpointError", "UntrustedCheckpointError",
]
