"""Suite-wide pytest setup.

Tests marked `root` need root (network namespaces, raw sockets). They run in CI, which is root,
and are skipped only when the suite runs as another user, with that reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.fake_wire import FakeHub
from tests.service_harness import Nodes

# Timings are noisy on a 2-core machine shared by both ends of every test: hypothesis must judge
# behaviour, never speed, so no per-example deadline and no "too slow" health check.
settings.register_profile(
    "l2fast",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("l2fast")

NOT_ROOT_REASON = "needs root: network namespaces and raw sockets (CI runs as root)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `root`-marked tests when not root."""
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason=NOT_ROOT_REASON)
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    """An in-memory Ethernet segment (tests/fake_wire.py) whose sockets are closed after."""
    segment = FakeHub()
    try:
        yield segment
    finally:
        segment.close()


@pytest.fixture
def make_nodes(hub: FakeHub, tmp_path: Path) -> Iterator[Callable[[str], Nodes]]:
    """`make_nodes(accept)`: a sender and a receiving NodeService on `hub`
    (tests/service_harness.py); every receiver's transfers are closed after the test."""
    made: list[Nodes] = []

    def make(accept: str) -> Nodes:
        made.append(Nodes(hub, tmp_path, accept=accept))
        return made[-1]

    try:
        yield make
    finally:
        for nodes in made:
            nodes.service.transfers.close()
