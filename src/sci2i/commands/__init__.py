"""One module per ``sci2i`` sub-command; each exposes ``register(subparsers)``.

One vocabulary for every command: ``--checkpoint`` names a model file or run directory (a
segmenter or a generator), ``--input`` what is read, ``--output`` the folder written (a run
directory for the training commands), ``--workers`` the data-loading processes and
``--no-progress`` switches the progress bar off. :data:`ALIASES` keeps the older spellings
working without showing them in ``--help``.
"""

from __future__ import annotations

#: Old option names, still accepted, -> the name every command uses now.
ALIASES = {
    "--out": "--output",
    "--image-dir": "--input",
    "--generator": "--checkpoint",
    "--num-workers": "--workers",
    "--quiet": "--no-progress",
}


def rename_aliases(argv: list[str]) -> list[str]:
    """``argv`` with every old option name (also as ``--old=value``) replaced by its new one."""
    out = []
    for word in argv:
        name, eq, value = word.partition("=")
        out.append(ALIASES[name] + eq + value if word.startswith("--") and name in ALIASES else word)
    return out


def training_config(preset: str | None, overrides: list[str], output: str | None, resume: bool):
    """The config of a training command (``train-seg``, ``train-i2i``): ``--resume`` without a
    preset continues with the run's own resolved ``<output>/config.yaml`` (+ any overrides)."""
    from pathlib import Path

    from sci2i.config import load_config  # (here: `sci2i --help` does not load the config stack)

    saved = Path(output) / "config.yaml" if output else None
    if resume and preset is None and saved is not None and saved.is_file():
        preset = str(saved)
    return load_config(preset, overrides)
