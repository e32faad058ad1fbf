"""A real ZooKeeper server (Debian's ``zookeeper`` package) for the tests that need one.

The session-scoped ``zookeeper`` fixture (made available to every test by
``tests/conftest.py``) starts one :class:`kbroker.zk_server.ZooKeeperServer` per test
session, on first use; tests keep apart by using a chroot of their own
(``zookeeper.connect_string("/some-test")``).

Install ZooKeeper with ``apt-get install zookeeper`` (``scripts/test`` does); without it
the fixture skips the tests that need it, saying so (and fails them under CI).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from kbroker.zk_server import (  # noqa: F401  (re-exported for the tests)
    ZooKeeperServer,
    four_letter_word,
    free_port,
    zookeeper_available,
)


@pytest.fixture(scope="session")
def zookeeper():
    """A ZooKeeper server shared by the session's tests (use a chroot per test)."""
    if not zookeeper_available():  # never a skip: the cluster tests are part of the suite
        pytest.fail("ZooKeeper is not installed: apt-get install zookeeper (scripts/test does)")
    base = Path(tempfile.mkdtemp(prefix="kbroker-zk-"))
    server = ZooKeeperServer(base)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if os.environ.get("KBROKER_KEEP_ZK_DATA") != "1":
            shutil.rmtree(base, ignore_errors=True)
