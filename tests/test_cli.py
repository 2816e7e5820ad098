"""One CLI vocabulary: every option documented, one name per kind, old names still accepted."""

from __future__ import annotations

import argparse

import pytest

from sci2i.cli import build_parser, parse_args
from sci2i.commands import ALIASES, rename_aliases


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_option_of_every_command_has_help_text():
    missing = []
    for name, sub in _subparsers(build_parser()).items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not (action.help or "").strip():
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"options without help text: {missing}"


def test_one_name_per_kind_of_option():
    """No command offers an old spelling (each is an alias of the one name used everywhere)."""
    for name, sub in _subparsers(build_parser()).items():
        options = {o for a in sub._actions for o in a.option_strings}
        assert not options & set(ALIASES), (name, options & set(ALIASES))
        assert "--no-progress" in options, f"{name} has no --no-progress"


#: The fewest arguments each command parses with (its required options).
REQUIRED = {
    "translate": ["--checkpoint", "G", "--input", "i", "--output", "o"],
    "pseudo-label": ["--checkpoint", "C", "--input", "i", "--output", "o"],
    "predict": ["--checkpoint", "C", "--input", "i", "--output", "o"],
    "evaluate": ["--checkpoint", "C"],
    "probe": ["--checkpoint", "C", "--output", "o"],
    "toycity": ["--output", "o"],
}


@pytest.mark.parametrize("name", sorted(_subparsers(build_parser())))
def test_every_command_accepts_no_progress(name):
    parser = build_parser()
    for extra in ([], ["--no-progress"]):
        try:
            args = parse_args(parser, [name, *REQUIRED.get(name, []), *extra])
        except SystemExit:  # a required option this table does not know: say which command
            pytest.fail(f"`sci2i {name}` did not parse with {REQUIRED.get(name, [])} {extra}")
        assert args.no_progress is bool(extra), name


def test_run_and_translate_pass_no_progress_on(monkeypatch, tmp_path):
    """``--no-progress`` reaches the library: the pipeline and the translation get progress=False."""
    import sci2i.pipeline.runner as runner
    import sci2i.infer.translate as translate

    seen = {}

    def record(name):
        def fake(*args, progress=True, **kwargs):
            seen[name] = progress
            return {}
        return fake

    monkeypatch.setattr(runner, "run_pipeline", record("run"))
    monkeypatch.setattr(translate, "load_generator", lambda path, device: (None, None))
    monkeypatch.setattr(translate, "translate_dataset", record("translate"))
    from sci2i.cli import main

    assert main(["run", "toycity", f"run.out_dir={tmp_path / 'r'}", "--no-progress"]) == 0
    assert main(["translate", "--checkpoint", "G", "--input", "i", "--output", str(tmp_path / "t"),
                 "--device", "cpu", "--no-progress"]) == 0
    assert seen == {"run": False, "translate": False}


@pytest.mark.parametrize("argv, dest, value", [
    (["translate", "--generator", "G", "--input", "i", "--output", "o"], "checkpoint", "G"),
    (["pseudo-label", "--checkpoint", "C", "--image-dir", "imgs", "--out", "o"], "input", "imgs"),
    (["pseudo-label", "--checkpoint", "C", "--input", "imgs", "--out=o", "--num-workers", "0"], "output", "o"),
    (["pseudo-label", "--checkpoint", "C", "--input", "imgs", "--output", "o", "--num-workers", "0"], "workers", 0),
    (["toycity", "--out", "t", "--quiet"], "no_progress", True),
    (["train-seg", "toycity-seg", "--out", "runs/a", "seg.steps=5"], "output", "runs/a"),
])
def test_old_option_names_are_hidden_aliases(argv, dest, value, capsys):
    args = parse_args(build_parser(), argv)
    assert getattr(args, dest) == value
    for name, sub in _subparsers(build_parser()).items():
        assert not set(ALIASES) & set(sub.format_help().split()), name


def test_rename_aliases_leaves_values_and_overrides_alone():
    argv = ["train-seg", "--out", "runs/--out", "run.out_dir=x", "--out=y", "--outx", "--quiet"]
    assert rename_aliases(argv) == ["train-seg", "--output", "runs/--out", "run.out_dir=x", "--output=y", "--outx",
                                    "--no-progress"]
