"""What `l2fast --help` and a command served by a daemon import: not the node and its layers.

Importing the engine, the runner, the services and the wire codecs was most of a command's
start-up time (~0.33 s of `l2fast --help` before, ~0.17 s after, on the 2-vCPU test machine).
Timings are not asserted (CI is noisy); which modules get imported is, in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Modules only a running node needs; each pulls in much of the rest.
HEAVY = (
    "l2fast.daemon.daemon",
    "l2fast.daemon.local_client",
    "l2fast.daemon.outgoing",
    "l2fast.daemon.runner",
    "l2fast.daemon.service",
    "l2fast.daemon.transfers",
    "l2fast.node.node",
    "l2fast.node.ping",
    "l2fast.transfer.receiver_proc",
    "l2fast.wire.frames",
)


def modules_after(code: str) -> set[str]:
    """The l2fast modules loaded once `code` ran in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return {m for m in json.loads(out.splitlines()[-1]) if m.startswith("l2fast")}


def test_building_the_parser_imports_no_node_layer() -> None:
    loaded = modules_after("import l2fast.cli\nl2fast.cli.build_parser()")
    assert "l2fast.commands.send" in loaded  # the probe did build every command's parser
    assert sorted(loaded & set(HEAVY)) == []


def test_help_of_each_command_imports_no_node_layer() -> None:
    from l2fast.cli import build_parser

    parser = build_parser()
    commands = sorted(next(a for a in parser._actions if a.dest == "==SUPPRESS==").choices)
    assert {"daemon", "send", "chat", "ping", "ui"} <= set(commands)
    for command in commands:
        code = (
            "import contextlib, io, l2fast.cli\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            f"    l2fast.cli.main([{command!r}, '--help'])"
        )
        assert sorted(modules_after(code) & set(HEAVY)) == [], command


@pytest.mark.parametrize("module", ["l2fast.daemon.client", "l2fast.daemon.control"])
def test_the_daemon_client_alone_imports_no_node_layer(module: str) -> None:
    # What a command served by a daemon needs; the local engine comes only with connect()'s
    # fallback (l2fast.daemon.local_client).
    assert sorted(modules_after(f"import {module}") & set(HEAVY)) == []
