"""The command line's contract: --version, --help with examples, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from l2fast import __version__, cli
from l2fast.errors import L2fastError


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "l2fast", *args], capture_output=True, text=True, timeout=60
    )


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"l2fast {__version__}"


def test_help_lists_every_command_with_examples() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    parser = cli.build_parser()
    sub_actions = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    assert sub_actions, "no sub-commands registered"
    for name in sub_actions[0].choices:  # type: ignore[union-attr]
        assert name in result.stdout
    assert "examples:" in result.stdout


def test_each_command_help_has_examples() -> None:
    parser = cli.build_parser()
    sub_actions = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    for name in sub_actions[0].choices:  # type: ignore[union-attr]
        result = run_cli(name, "--help")
        assert result.returncode == 0, result.stderr
        assert "example" in result.stdout, f"`l2fast {name} --help` shows no example"


def test_errors_are_one_line_with_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing(_args: object) -> int:
        raise L2fastError("something broke", hint="do the other thing")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser.set_defaults(handler=failing)
    assert cli.main([]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "l2fast: error: something broke",
        "l2fast: hint: do the other thing",
    ]
    assert "Traceback" not in err
