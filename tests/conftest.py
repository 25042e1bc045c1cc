"""Suite-wide pytest setup.

Tests marked `root` need root (network namespaces, raw sockets). They run in CI, which is root,
and are skipped only when the suite runs as another user, with that reason.
"""

from __future__ import annotations

import os

import pytest

NOT_ROOT_REASON = "needs root: network namespaces and raw sockets (CI runs as root)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `root`-marked tests when not root."""
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason=NOT_ROOT_REASON)
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)
