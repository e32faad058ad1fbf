"""A consume-transform-produce app (confluent-kafka, exactly once), run as a subprocess.

``python ctp_app.py BOOTSTRAP INPUT OUTPUT EXPECTED [CRASH_AT]``: reads INPUT in group
``ctp`` (read_committed), writes ``out-<value>`` for each record to OUTPUT in a
transaction that also commits the consumed offsets (send_offsets_to_transaction), until
EXPECTED records of INPUT are done. With CRASH_AT it dies (os._exit, no clean-up) in the
middle of the transaction that would go past CRASH_AT records, after its output was
written but before the commit.
"""

from __future__ import annotations

import os
import sys
import time

from confluent_kafka import Consumer, Producer

bootstrap, source, sink, expected = sys.argv[1:5]
crash_at = int(sys.argv[5]) if len(sys.argv) > 5 else None
expected = int(expected)

consumer = Consumer(
    {
        "bootstrap.servers": bootstrap,
        "group.id": "ctp",
        "group.instance.id": "ctp-1",  # the restarted app takes the crashed one's place
        "session.timeout.ms": 6000,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    }
)
producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "ctp-app", "linger.ms": 5})
producer.init_transactions(20)
consumer.subscribe([source])

done = 0
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    committed = consumer.committed(consumer.assignment(), 10) if consumer.assignment() else []
    total = sum(max(tp.offset, 0) for tp in committed)
    if total >= expected:
        break
    messages = consumer.consume(num_messages=7, timeout=0.5)
    messages = [m for m in messages if m.error() is None]
    if not messages:
        continue
    producer.begin_transaction()
    for m in messages:
        producer.produce(sink, value=b"out-" + m.value(), partition=m.partition())
    if crash_at is not None and done + len(messages) > crash_at:
        producer.flush(10)  # the output is in the log, the transaction still open
        os._exit(3)
    positions = consumer.position(consumer.assignment())
    producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 20)
    producer.commit_transaction(20)
    done += len(messages)
consumer.close()
print("processed", done, flush=True)
