"""Produce: validate each partition's batches and append them as they came.

Per partition: the topic must exist (or be auto-created), every batch must be a whole
RecordBatch v2 with a good CRC and within ``max.message.bytes``, and an idempotent
producer's sequence must follow on. A failure answers that partition alone and appends
nothing of it.
"""

from __future__ import annotations

import asyncio
import logging

from kbroker.cluster.replicas import Partition
from kbroker.log.errors import RecordBatchTooLarge
from kbroker.wire import records
from kbroker.wire.connection import Request
from kbroker.wire.errors import ErrorCode, KafkaError

log = logging.getLogger("kbroker.produce")


def append_to(
    broker, partition: Partition, payload: bytes | None, transactional_id: str | None = None
) -> dict:
    """Append one partition's payload; the partition's response fields."""
    if not payload:
        raise KafkaError(ErrorCode.CORRUPT_MESSAGE, "produce request carries no records")
    try:
        headers = records.split_batches(payload)
    except records.CorruptBatch as exc:
        raise KafkaError(ErrorCode.CORRUPT_MESSAGE, str(exc)) from None
    max_bytes = int(broker.topic_config(partition.topic, "max.message.bytes"))
    for header in headers:
        if header.size > max_bytes:
            raise KafkaError(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"batch of {header.size} bytes exceeds max.message.bytes {max_bytes}",
            )
    if len(headers) == 1 and headers[0].producer_id >= 0:
        duplicate = partition.producers.find_duplicate(headers[0])
        if duplicate is not None:
            return {
                "base_offset": duplicate.first_offset,
                "log_append_time_ms": -1,
                "log_start_offset": partition.log.log_start_offset,
            }
    for header in headers:
        partition.producers.check(header)
        if header.is_transactional:  # it must belong to the producer's open transaction
            broker.transactions.verify_produce(
                transactional_id, header, partition.topic.name, partition.index
            )
    try:
        appended = partition.log.append(
            payload, leader_epoch=partition.leader_epoch, headers=headers
        )
    except RecordBatchTooLarge as exc:  # larger than segment.bytes: Kafka's error 18
        raise KafkaError(ErrorCode.RECORD_LIST_TOO_LARGE, str(exc)) from None
    offset = appended.base_offset
    for header in headers:
        partition.producers.record(header, offset)
        offset += header.last_offset_delta + 1
    partition.appended()
    return {
        "base_offset": appended.base_offset,
        "log_append_time_ms": appended.log_append_time,
        "log_start_offset": partition.log.log_start_offset,
    }


async def _await_replication(pending: list, timeout_ms: int) -> None:
    """acks=all: hold the response until each partition's ISR has the appended records."""
    loop = asyncio.get_running_loop()
    waits = []
    for result, partition, min_isr in pending:
        future = loop.create_future()

        def done(error: ErrorCode, future=future) -> None:
            if not future.done():
                future.set_result(error)

        waiter = partition.await_replication(partition.log.log_end_offset, min_isr, done)
        waits.append((result, partition, waiter, future))
    undone = [future for *_, future in waits if not future.done()]
    if undone:  # a broker that is the whole ISR has answered already
        await asyncio.wait(undone, timeout=timeout_ms / 1000)
    for result, partition, waiter, future in waits:
        if future.done():
            error = future.result()
        else:
            partition.forget_waiter(waiter)
            error = ErrorCode.REQUEST_TIMED_OUT
        if error != ErrorCode.NONE:
            result.update(error_code=error, base_offset=-1)


async def handle(broker, request: Request) -> dict | None:
    body = request.body
    acks = body["acks"]
    responses = []
    pending = []  # acks=all partitions waiting for their ISR
    for topic_data in body["topic_data"]:
        name = topic_data["name"]
        results = []
        for data in topic_data["partition_data"]:
            result = {"index": data["index"]}
            try:
                if acks not in (0, 1, -1):
                    raise KafkaError(ErrorCode.INVALID_REQUIRED_ACKS)
                partition = broker.partition_for_produce(name, data["index"])
                if acks == -1:
                    min_isr = int(broker.topic_config(partition.topic, "min.insync.replicas"))
                    code = partition.require_leader().check_append(min_isr)
                    if code != ErrorCode.NONE:
                        raise KafkaError(code)
                result.update(
                    append_to(broker, partition, data["records"], body["transactional_id"])
                )
                if acks == -1:
                    pending.append((result, partition, min_isr))
            except KafkaError as exc:
                log.warning(
                    "produce to %s-%d from %s refused: %s",
                    name,
                    data["index"],
                    request.client_id,
                    exc,
                )
                result.update(error_code=exc.code, base_offset=-1, error_message=exc.message)
            results.append(result)
        responses.append({"name": name, "partition_responses": results})
    if acks == 0:
        return None
    if pending:
        await _await_replication(pending, body["timeout_ms"])
    return {"responses": responses}
