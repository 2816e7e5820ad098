"""The ``sci2i`` console command: a thin argparse layer over the library.

Each sub-command lives in ``sci2i/commands/<name>.py`` and exposes ``register(subparsers)``,
which adds its parser and sets ``func(args) -> int``. The library never reads ``sys.argv``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading

from sci2i import __version__

# Order shown in `sci2i --help`.
COMMANDS = [
    "run",
    "train_seg",
    "train_i2i",
    "pseudo_label",
    "translate",
    "evaluate",
    "predict",
    "probe",
    "toycity",
    "bench",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sci2i",
        description=(
            "Semantically consistent image-to-image translation for unsupervised domain "
            "adaptation of semantic segmentation (Brehm et al., ICAART 2022)."
        ),
        epilog="Run `sci2i COMMAND --help` for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"sci2i {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"sci2i.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"sci2i.commands.{name}":
                continue  # command not part of this build
            raise
        module.register(sub)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser.parse_args`` that also takes ``key=value`` overrides after options.

    argparse fills a positional list once, so ``sci2i probe toycity --checkpoint C probe.steps=5``
    would reject ``probe.steps=5``. Left-over ``key=value`` words are appended to the command's
    override list (``config`` or ``overrides``); anything else is still an error.
    """
    from sci2i.commands import rename_aliases

    argv = rename_aliases(list(sys.argv[1:] if argv is None else argv))
    args, extra = parser.parse_known_args(argv)
    if not extra:
        return args
    target = next((n for n in ("config", "overrides") if isinstance(getattr(args, n, None), list)), None)
    rejected = [a for a in extra if target is None or "=" not in a or a.startswith("-")]
    if rejected:
        parser.error(f"unrecognized arguments: {' '.join(rejected)}")
    getattr(args, target).extend(extra)
    return args


def main(argv: list[str] | None = None) -> int:
    from sci2i.utils.rundir import setup_logging

    setup_logging()
    parser = build_parser()
    args = parse_args(parser, argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    rc = _run(args)
    if rc == 130 and argv is None and threading.current_thread() is threading.main_thread():
        # Stopped on a signal, its checkpoint written: what is left is the exit. A repeat of the
        # stop (the group signalled again, torchrun forwarding it) that comes while the
        # interpreter shuts down, where Python's handlers are back to the default, must not turn
        # exit 130 into death by SIGTERM. (Only as a program: in-process callers keep theirs.)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
    return rc


def _run(args: argparse.Namespace) -> int:
    from sci2i.config import ConfigError

    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"sci2i {args.command}: config error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        logging.getLogger("sci2i").warning("interrupted")
        return 130
    except Exception as e:  # user-facing errors raised by the library carry a fix-it message
        from sci2i.errors import CheckpointError, UserError
        from sci2i.pipeline.steps import PhaseInterrupted
        from sci2i.train.loop import DivergenceError

        if isinstance(e, PhaseInterrupted):  # stopped on a signal, checkpoint written
            print(f"sci2i {args.command}: {e}", file=sys.stderr)
            return 130
        if isinstance(e, (UserError, CheckpointError)):
            print(f"sci2i {args.command}: error: {e}", file=sys.stderr)
            return 2
        if isinstance(e, DivergenceError):  # the run's own doing, not the input's: exit 3
            print(f"sci2i {args.command}: error: {e}", file=sys.stderr)
            return 3
        raise


if __name__ == "__main__":
    sys.exit(main())
