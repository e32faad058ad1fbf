"""One consumer-group member in its own process, so that a test can kill it (-9).

Usage: ``python group_member.py CONFIG_JSON``. CONFIG_JSON names the client
(``confluent``, ``kafka-python`` or ``aiokafka``), bootstrap, topic, group and options.
The member subscribes, polls, commits synchronously after each batch and reports on
stdout, one JSON object a line:

- ``{"event": "assigned", "partitions": [...]}`` whenever its assignment changes;
- ``{"event": "revoked", "partitions": [...]}`` (confluent) for each revocation;
- ``{"event": "committed", "records": [[partition, offset, value], ...]}`` for each
  batch once its commit succeeded (records of a failed commit are not reported: the
  group redelivers them to their next owner);
- ``{"event": "closed"}`` after a graceful close.

A line ``close`` on stdin makes it close gracefully (LeaveGroup for dynamic members).
"""

from __future__ import annotations

import json
import sys
import threading

CONFIG = json.loads(sys.argv[1])
stop = threading.Event()
lock = threading.Lock()


def emit(**event) -> None:
    with lock:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


def watch_stdin() -> None:
    for line in sys.stdin:
        if line.strip() == "close":
            break
    stop.set()


def run_confluent() -> None:
    from confluent_kafka import Consumer, KafkaException

    settings = {
        "bootstrap.servers": CONFIG["bootstrap"],
        "group.id": CONFIG["group"],
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": CONFIG["session_ms"],
        "heartbeat.interval.ms": CONFIG["heartbeat_ms"],
        "max.poll.interval.ms": max(10000, CONFIG["session_ms"]),
        "topic.metadata.refresh.interval.ms": 1000,
        "partition.assignment.strategy": CONFIG.get("assignor", "range"),
    }
    if CONFIG.get("instance"):
        settings["group.instance.id"] = CONFIG["instance"]
    consumer = Consumer(settings)

    def on_revoke(_consumer, partitions):
        emit(event="revoked", partitions=sorted(p.partition for p in partitions))

    consumer.subscribe([CONFIG["topic"]], on_revoke=on_revoke)
    last = None
    while not stop.is_set():
        msgs = consumer.consume(100, 0.1)
        current = sorted(p.partition for p in consumer.assignment())
        if current != last:
            last = current
            emit(event="assigned", partitions=current)
        batch = [m for m in msgs if m.error() is None]
        if batch:
            try:
                consumer.commit(asynchronous=False)
            except KafkaException:
                continue
            emit(
                event="committed",
                records=[[m.partition(), m.offset(), m.value().decode()] for m in batch],
            )
    consumer.close()


def run_kafka_python() -> None:
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    options = {}
    if CONFIG.get("instance"):
        options["group_instance_id"] = CONFIG["instance"]
    consumer = KafkaConsumer(
        bootstrap_servers=CONFIG["bootstrap"],
        group_id=CONFIG["group"],
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=CONFIG["session_ms"],
        heartbeat_interval_ms=CONFIG["heartbeat_ms"],
        metadata_max_age_ms=1000,
        **options,
    )
    # The topic's metadata first, then the subscription: kafka-python 3.0.12 otherwise
    # joins before it knows the topic, rejoins once the metadata arrives, and under CPU
    # load its consumer can stall after that second generation's SyncGroup (answered:
    # its log shows the assignment) with heartbeats never re-enabled.
    consumer.partitions_for_topic(CONFIG["topic"])
    consumer.subscribe([CONFIG["topic"]])
    last = None
    while not stop.is_set():
        polled = consumer.poll(100, max_records=100)
        current = sorted(tp.partition for tp in consumer.assignment())
        if current != last:
            last = current
            emit(event="assigned", partitions=current)
        batch = [m for msgs in polled.values() for m in msgs]
        if batch:
            try:
                consumer.commit()
            except KafkaError:
                continue
            emit(
                event="committed",
                records=[[m.partition, m.offset, m.value.decode()] for m in batch],
            )
    consumer.close()


def run_aiokafka() -> None:
    import asyncio

    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import KafkaError

    async def main() -> None:
        options = {}
        if CONFIG.get("instance"):
            options["group_instance_id"] = CONFIG["instance"]
        consumer = AIOKafkaConsumer(
            CONFIG["topic"],
            bootstrap_servers=CONFIG["bootstrap"],
            group_id=CONFIG["group"],
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=CONFIG["session_ms"],
            heartbeat_interval_ms=CONFIG["heartbeat_ms"],
            metadata_max_age_ms=1000,
            **options,
        )
        await consumer.start()
        last = None
        while not stop.is_set():
            polled = await consumer.getmany(timeout_ms=100, max_records=100)
            current = sorted(tp.partition for tp in consumer.assignment())
            if current != last:
                last = current
                emit(event="assigned", partitions=current)
            batch = [m for msgs in polled.values() for m in msgs]
            if batch:
                try:
                    await consumer.commit()
                except KafkaError:
                    continue
                emit(
                    event="committed",
                    records=[[m.partition, m.offset, m.value.decode()] for m in batch],
                )
        await consumer.stop()

    asyncio.run(main())


if __name__ == "__main__":
    threading.Thread(target=watch_stdin, daemon=True).start()
    {"confluent": run_confluent, "kafka-python": run_kafka_python, "aiokafka": run_aiokafka}[
        CONFIG["client"]
    ]()
    emit(event="closed")
