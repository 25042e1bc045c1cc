"""What can be checked of the Docker setup without a Docker engine (issue 3): the compose files
parse, use the Dockerfile and the capabilities raw Ethernet needs, and the Dockerfile installs
l2fast with the README's install command.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
CAPS = {"NET_RAW", "NET_ADMIN"}


def load_compose(name: str) -> dict[str, Any]:
    data = yaml.safe_load((DOCKER / name).read_text())
    assert isinstance(data, dict), f"{name} is not a YAML mapping"
    return data


def check_node(name: str, service: dict[str, Any]) -> None:
    """A service that runs an l2fast node from our Dockerfile with the raw-socket capabilities."""
    build = service.get("build")
    assert isinstance(build, dict), f"{name}: no build section"
    assert (DOCKER / build["context"]).resolve() == ROOT, f"{name}: context is not the repo"
    assert (ROOT / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"
    assert set(service.get("cap_add", [])) >= CAPS, f"{name}: missing {CAPS}"
    command = service["command"]
    assert command[:3] == ["daemon", "-i", "eth0"], f"{name}: does not run the daemon on eth0"
    assert "--name" in command


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of docker/Dockerfile, continuation lines joined."""
    text = (DOCKER / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_run_commands() -> list[str]:
    """Every shell command of every RUN, split at `&&`, whitespace normalised."""
    commands = []
    for word, rest in dockerfile_instructions():
        if word == "RUN":
            commands += [" ".join(part.split()) for part in rest.split("&&")]
    return commands


def readme_install_commands() -> list[str]:
    """The commands of README.md's first fenced code block (where a user starts)."""
    readme = ROOT / "README.md"
    if not readme.exists():
        pytest.fail(
            "README.md does not exist yet: the Dockerfile must install l2fast with the README's "
            "install command, so the README has to say what that is (first fenced code block)"
        )
    match = re.search(r"^```[^\n]*\n(.*?)^```", readme.read_text(), re.DOTALL | re.MULTILINE)
    assert match, "README.md has no fenced code block with the install command"
    commands = [
        " ".join(line.split())
        for line in match.group(1).splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert commands, "README.md's first fenced code block is empty"
    return commands


def make_prerequisites(target: str) -> list[str]:
    """The prerequisites of a target in the top-level Makefile."""
    for line in (ROOT / "Makefile").read_text().splitlines():
        m = re.match(rf"^{re.escape(target)}\s*:(?!=)(.*)$", line)
        if m:
            return m.group(1).split()
    return []


def test_compose_is_three_daemon_nodes_on_a_user_defined_bridge() -> None:
    compose = load_compose("compose.yml")
    services = compose["services"]
    assert sorted(services) == ["node1", "node2", "node3"]
    networks = compose["networks"]
    for name, service in services.items():
        check_node(name, service)
        assert service["command"][-1] == name
        (net,) = service["networks"]
        assert networks[net]["driver"] == "bridge"  # user-defined, not Docker's default bridge


def test_macvlan_compose_puts_a_node_on_the_parent_interface() -> None:
    compose = load_compose("compose.macvlan.yml")
    services = compose["services"]
    assert services
    for name, service in services.items():
        check_node(name, service)
        (net,) = service["networks"]
        network = compose["networks"][net]
        assert network["driver"] == "macvlan"
        # The parent interface is a variable with a default, not a hard-coded name.
        assert re.fullmatch(r"\$\{L2FAST_PARENT_IF:-\w+\}", network["driver_opts"]["parent"])


def test_dockerfile_runs_the_daemon() -> None:
    instructions = dict(dockerfile_instructions())
    assert instructions["FROM"].startswith("debian:")
    # Exec form (JSON): signals reach l2fast itself, not a shell.
    assert json.loads(instructions["ENTRYPOINT"]) == ["l2fast"]
    assert json.loads(instructions["CMD"])[:3] == ["daemon", "-i", "eth0"]


def test_dockerfile_installs_like_the_readme() -> None:
    """Each README install command is run by the Dockerfile, or, when it is a `make` target that
    also does something a build cannot (the demo needs network namespaces), the Dockerfile runs
    the target's install prerequisite: `make demo` is `make install` and then the demo."""
    runs = dockerfile_run_commands()
    for command in readme_install_commands():
        if command in runs:
            continue
        words = command.split()
        assert words[0] == "make" and len(words) == 2, (
            f"the README's {command!r} is not among the Dockerfile's RUN commands {runs}"
        )
        assert "install" in make_prerequisites(words[1]), (
            f"`{command}` does not depend on `make install` in the Makefile"
        )
        assert "make install" in runs, f"the Dockerfile does not run `make install`: {runs}"
