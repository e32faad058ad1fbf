"""ListOffsets: earliest, latest, max-timestamp and by-timestamp offset look-ups."""

from __future__ import annotations

from kbroker.wire.connection import Request
from kbroker.wire.errors import KafkaError

LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3
EARLIEST_LOCAL = -4


def _lookup(partition, timestamp: int) -> tuple[int, int]:
    """(timestamp, offset) for one query, per Kafka's ListOffsets semantics."""
    log = partition.log
    if timestamp == LATEST:
        return -1, log.high_watermark
    if timestamp in (EARLIEST, EARLIEST_LOCAL):
        return -1, log.log_start_offset
    if timestamp == MAX_TIMESTAMP:
        found = log.max_timestamp_offset()
    else:
        found = log.offset_for_timestamp(timestamp)
    if found is None:
        return -1, -1
    offset, found_timestamp = found
    return found_timestamp, offset


async def handle(broker, request: Request) -> dict:
    topics = []
    for topic_request in request.body["topics"]:
        partitions = []
        for query in topic_request["partitions"]:
            result = {"partition_index": query["partition_index"]}
            try:
                partition = broker.hosted_partition_by_name(
                    topic_request["name"], query["partition_index"]
                )
                timestamp, offset = _lookup(partition, query["timestamp"])
                result.update(
                    timestamp=timestamp, offset=offset, leader_epoch=partition.leader_epoch
                )
            except KafkaError as exc:
                result["error_code"] = exc.code
            partitions.append(result)
        topics.append({"name": topic_request["name"], "partitions": partitions})
    return {"topics": topics}
