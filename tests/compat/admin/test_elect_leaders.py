"""ElectLeaders through confluent-kafka's AdminClient on a single broker: it already leads
every partition, so there is nothing to elect (as Kafka answers for a preferred leader)."""

from __future__ import annotations

from compat_helpers import topic_name
from confluent_kafka import ElectionType, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ELECTION_NOT_NEEDED = 84
UNKNOWN_TOPIC_OR_PARTITION = 3


def test_preferred_election_on_a_single_broker_is_not_needed(module_broker):
    admin = AdminClient({"bootstrap.servers": module_broker.bootstrap})
    topic = topic_name("elect")
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    asked = [TopicPartition(topic, 0), TopicPartition(topic, 1), TopicPartition("no-such", 0)]
    results = admin.elect_leaders(ElectionType.PREFERRED, asked).result(30)
    assert {(tp.topic, tp.partition): error.code() for tp, error in results.items()} == {
        (topic, 0): ELECTION_NOT_NEEDED,
        (topic, 1): ELECTION_NOT_NEEDED,
        ("no-such", 0): UNKNOWN_TOPIC_OR_PARTITION,
    }
