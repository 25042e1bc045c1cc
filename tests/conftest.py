"""Suite-wide pytest setup.

Tests marked `root` need root (network namespaces, raw sockets). They run in CI, which is root,
and are skipped only when the suite runs as another user, with that reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.fake_wire import FakeHub

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
