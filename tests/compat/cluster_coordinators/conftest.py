"""``coordinator_cluster``: ZooKeeper (the session's server, a chroot per test) and three
brokers whose internal topics (``__consumer_offsets``, ``__transaction_state``) have
three replicas and three partitions, so that the coordinators have somewhere to move."""

from __future__ import annotations

import pytest
from compat_broker import _finish
from coordinators_cluster import CoordinatorCluster


@pytest.fixture
def coordinator_cluster(zookeeper, tmp_path):
    cluster = CoordinatorCluster(zookeeper, tmp_path)
    try:
        yield cluster.start()
    finally:
        cluster.close()
        _finish(cluster.brokers)
