"""Fetch: read each partition from the requested offset, long-polling for ``min_bytes``.

Records go out as file slices of the log (the listener sends them without copying them
through Python where it can). The wait is woken by appends to the fetched partitions,
never by polling. Fetch sessions (KIP-227, ``fetch_sessions.py``) let a fetcher send
only the partitions whose position moved and get back only those with news.
"""

from __future__ import annotations

import asyncio
import uuid

from kbroker.log.errors import OffsetOutOfRange
from kbroker.wire.connection import Request
from kbroker.wire.errors import ErrorCode, KafkaError

READ_COMMITTED = 1


def replica_of(body: dict) -> int:
    """The follower's broker id, or -1 for a consumer (v15 moved it into replica_state)."""
    return max(body["replica_id"], body["replica_state"]["replica_id"])


def _read_partition(
    broker,
    topic,
    request_partition: dict,
    budget: int,
    first: bool,
    committed: bool = False,
    replica_id: int = -1,
) -> dict:
    index = request_partition["partition"]
    result = {"partition_index": index, "records": b""}
    try:
        partition = broker.hosted_partition(topic, index)
        partition.check_leader_epoch(request_partition["current_leader_epoch"])
        log = partition.log
        limit = min(request_partition["partition_max_bytes"], budget)
        fetch_offset = request_partition["fetch_offset"]
        # read_committed reads below the last stable offset (the first open transaction)
        stable = partition.producers.last_stable_offset(log.high_watermark)
        if replica_id >= 0:  # a follower copies everything up to the leader's log end
            max_offset = log.log_end_offset
        else:
            max_offset = stable if committed else None
        try:
            records = log.read(fetch_offset, limit, max_offset=max_offset, min_one_batch=first)
        except OffsetOutOfRange:
            raise KafkaError(ErrorCode.OFFSET_OUT_OF_RANGE) from None
        if replica_id >= 0:  # its fetch offset is its log end: the HW may move
            partition.follower_fetched(
                replica_id, fetch_offset, request_partition["log_start_offset"]
            )
        result["records"] = records if records.size else b""
        result.update(
            high_watermark=log.high_watermark,
            last_stable_offset=stable,
            log_start_offset=log.log_start_offset,
        )
        if committed:  # the aborted transactions the client must drop
            result["aborted_transactions"] = [
                {"producer_id": txn.producer_id, "first_offset": txn.first_offset}
                for txn in log.aborted_transactions(fetch_offset, stable)
            ]
    except KafkaError as exc:
        result.update(error_code=exc.code, high_watermark=-1)
    return result


def _read_all(broker, body: dict, topics: list, by_id: bool) -> tuple[list[dict], int, list]:
    """One pass over ``topics``: (topic responses, bytes found, partitions read)."""
    budget = body["max_bytes"]
    total = 0
    responses = []
    watched = []
    committed = body["isolation_level"] == READ_COMMITTED
    replica_id = replica_of(body)
    for topic_request in topics:
        if by_id:
            topic = broker.controller.store.by_id.get(uuid.UUID(bytes=topic_request["topic_id"]))
            missing = ErrorCode.UNKNOWN_TOPIC_ID
        else:
            topic = broker.controller.store.topics.get(topic_request["topic"])
            missing = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        partitions = []
        for request_partition in topic_request["partitions"]:
            if topic is None:
                result = {
                    "partition_index": request_partition["partition"],
                    "error_code": missing,
                    "high_watermark": -1,
                    "records": b"",
                }
            else:
                result = _read_partition(
                    broker,
                    topic,
                    request_partition,
                    max(budget - total, 0),
                    total == 0,
                    committed,
                    replica_id,
                )
                watched.append((topic.name, request_partition["partition"]))
            if committed:
                result.setdefault("aborted_transactions", [])
            total += (
                len(result["records"])
                if isinstance(result["records"], bytes)
                else (result["records"].size)
            )
            partitions.append(result)
        responses.append(
            {
                "topic": topic_request["topic"],
                "topic_id": topic_request["topic_id"],
                "partitions": partitions,
            }
        )
    return responses, total, watched


async def _wait_for_append(broker, watched: list, timeout: float) -> None:
    """Sleep until an append or high-watermark move on a watched partition, or the timeout.

    One bare future and one timer: the fetch resumes on the loop iteration right after
    the append (an Event under ``wait_for`` costs three task hops more).
    """
    loop = asyncio.get_running_loop()
    woken = loop.create_future()

    def wake() -> None:
        if not woken.done():
            woken.set_result(None)

    partitions = [p for p in (broker.replicas.get(*key) for key in watched) if p is not None]
    for partition in partitions:
        partition.watchers.add(wake)
    timer = loop.call_later(timeout, wake)
    try:
        await woken
    finally:
        timer.cancel()
        for partition in partitions:
            partition.watchers.discard(wake)


async def handle(broker, request: Request) -> dict:
    body = request.body
    by_id = request.api_version >= 13  # v13 replaced topic names with topic ids
    sessions = broker.fetch_sessions
    context = sessions.open(body, by_id)  # before v7 every fetch is sessionless (epoch -1)
    if context.error != ErrorCode.NONE:
        return {"error_code": context.error, "session_id": 0, "responses": []}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + body["max_wait_ms"] / 1000
    responses, total, watched = _read_all(broker, body, context.topics, by_id)
    while total < body["min_bytes"] and watched and (remaining := deadline - loop.time()) > 0:
        await _wait_for_append(broker, watched, remaining)
        responses, total, watched = _read_all(broker, body, context.topics, by_id)
    return {
        "session_id": context.session_id,
        "responses": sessions.respond(context, responses),
    }
