"""``cluster``: ZooKeeper (the session's server, a chroot per test) and three brokers."""

from __future__ import annotations

import pytest
from compat_broker import _finish
from compat_cluster import Cluster


@pytest.fixture
def cluster_factory(zookeeper, tmp_path):
    """``cluster_factory(settings={...})`` starts a three-broker cluster; all of it stops at
    teardown (and a broker that died unexpectedly fails the test)."""
    made: list[Cluster] = []

    def make(settings: dict | None = None) -> Cluster:
        cluster = Cluster(zookeeper, tmp_path / f"cluster{len(made)}", settings=settings)
        made.append(cluster)
        return cluster.start()

    yield make
    for cluster in made:
        for broker in cluster.brokers:  # paused brokers must be able to take SIGTERM
            if broker.running:
                try:
                    cluster.resume(cluster.brokers.index(broker))
                except ProcessLookupError:
                    pass
        cluster.close()
        _finish(cluster.brokers)


@pytest.fixture
def cluster(cluster_factory) -> Cluster:
    return cluster_factory()
