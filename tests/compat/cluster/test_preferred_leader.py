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


def test_elect_leaders_moves_leadership_to_the_preferred_replica(cluster_factory):
    from confluent_kafka import ElectionType, TopicPartition
    from confluent_kafka.admin import AdminClient

    cluster = cluster_factory({"auto.leader.rebalance.enable": "false"})
    topic = topic_name("elect")
    cluster.create_topic(topic, 1, 3, {})
    preferred = cluster.zk.get_topic(topic).partitions[0][0]
    cluster.kill(preferred)
    other = cluster.wait_leader_not(topic, 0, preferred)
    cluster.restart(preferred)
    cluster.wait_isr(topic, 1, {0, 1, 2})
    assert cluster.leader(topic, 0) == other  # nothing moves it back by itself

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    asked = [TopicPartition(topic, 0)]
    first = admin.elect_leaders(ElectionType.PREFERRED, asked).result(30)
    assert [error for error in first.values()] == [None]
    wait_for(lambda: cluster.leader(topic, 0) == preferred, 10, "the preferred leader")
    again = admin.elect_leaders(ElectionType.PREFERRED, asked).result(30)
    assert [error.code() for error in again.values()] == [84]  # ELECTION_NOT_NEEDED
