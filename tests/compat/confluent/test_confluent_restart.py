"""Restart safety: acknowledged messages survive SIGTERM and kill -9 with their offsets."""

from __future__ import annotations

import threading
import time
from functools import partial

import pytest
from compat_clients import (
    confluent_consume,
    confluent_produce,
    kafka_python_consume,
    kafka_python_produce,
)
from compat_helpers import check_round_trip, make_messages, topic_name


def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    """Create topics up front: a consumer (allow.auto.create.topics=false) never creates one."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
        future.result(30)


@pytest.mark.parametrize("how", ["term", "kill"])
def test_restart_keeps_acknowledged_messages(broker_factory, how):
    broker = broker_factory({"num.partitions": 3})
    topic = topic_name(f"restart-{how}")
    messages = make_messages(6000, source="restart")
    first, second = messages[:3000], messages[3000:]

    delivered = confluent_produce(
        broker.bootstrap, topic, first, {"compression.type": "lz4", "partitioner": "murmur2_random"}
    )
    before = confluent_consume(broker.bootstrap, topic, len(first))
    check_round_trip(first, delivered, before)

    broker.restart(how)  # kill: right after flush() returned, no chance to flush files

    after = confluent_consume(broker.bootstrap, topic, len(first))
    def by_position(records):
        return sorted(records, key=lambda r: (r.partition, r.offset))

    assert by_position(after) == by_position(before), "records differ after the restart"

    # the log goes on after the restart: offsets continue, nothing overwritten
    delivered.update(kafka_python_produce(broker.bootstrap, topic, second))
    consumed = kafka_python_consume(broker.bootstrap, topic, len(messages))
    check_round_trip(messages, delivered, consumed)


def test_restart_twice_and_empty_topic(broker_factory):
    """An empty topic and a once-restarted log survive another restart."""
    broker = broker_factory({"num.partitions": 3})
    full, empty = topic_name("restart-full"), topic_name("restart-empty")
    messages = make_messages(300, source="twice")
    create_topics(broker.bootstrap, [empty], partitions=3)
    delivered = confluent_produce(broker.bootstrap, full, messages)
    assert confluent_consume(broker.bootstrap, empty, 0) == []
    broker.restart("kill")
    broker.restart("term")
    assert confluent_consume(broker.bootstrap, empty, 0) == []
    check_round_trip(messages, delivered, confluent_consume(broker.bootstrap, full, 300))


def test_kill_during_idempotent_produce_loses_and_duplicates_nothing(broker_factory):
    """kill -9 while an idempotent producer is busy, restart on the same port: the producer
    retries what was not acknowledged; in the end every message is there exactly once,
    in order, at the offset its delivery report gave."""
    from confluent_kafka import Producer

    broker = broker_factory({"num.partitions": 3})
    topic = topic_name("kill-mid-produce")
    messages = make_messages(20_000, source="mid-produce")
    producer = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True,
                         "linger.ms": 5, "batch.num.messages": 200,
                         "message.timeout.ms": 60_000})
    delivered: dict[int, tuple[int, int]] = {}
    errors: list = []
    lock = threading.Lock()

    def report(index, err, msg):
        with lock:
            if err is not None:
                errors.append((index, err))
            else:
                delivered[index] = (msg.partition(), msg.offset())

    for message in messages[:10_000]:
        producer.produce(topic, key=message.key, value=message.value,
                         headers=list(message.headers),
                         on_delivery=partial(report, message.index))
    deadline = time.monotonic() + 30
    while len(delivered) < 3000 and time.monotonic() < deadline:
        producer.poll(0.01)
    assert len(delivered) >= 3000, f"only {len(delivered)} acknowledged, errors {errors[:3]}"

    broker.kill()  # with batches in flight
    acked_before_kill = dict(delivered)
    broker.start()

    for message in messages[10_000:]:
        producer.produce(topic, key=message.key, value=message.value,
                         headers=list(message.headers),
                         on_delivery=partial(report, message.index))
    assert producer.flush(60) == 0
    assert not errors, f"{len(errors)} delivery errors, first {errors[:3]}"
    for index, position in acked_before_kill.items():
        assert delivered[index] == position
    consumed = confluent_consume(broker.bootstrap, topic, len(messages))
    check_round_trip(messages, delivered, consumed)
