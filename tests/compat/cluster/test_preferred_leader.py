"""auto.leader.rebalance.enable: a preferred leader that returns gets its leadership back."""

from __future__ import annotations

from compat_cluster import topic_name, wait_for


def test_returning_preferred_replica_leads_again(cluster_factory):
    cluster = cluster_factory({"leader.imbalance.check.interval.seconds": 1})
    topic = topic_name("preferred")
    cluster.create_topic(topic, 1, 3, {})
    preferred = cluster.zk.get_topic(topic).partitions[0][0]
    assert cluster.leader(topic, 0) == preferred

    cluster.kill(preferred)
    other = cluster.wait_leader_not(topic, 0, preferred)
    cluster.restart(preferred)
    cluster.wait_isr(topic, 1, {0, 1, 2})
    wait_for(lambda: cluster.leader(topic, 0) == preferred, 20, "the preferred leader back")
    state = cluster.state(topic, 0)
    assert state.leader == preferred != other
    assert sorted(state.isr) == [0, 1, 2]
