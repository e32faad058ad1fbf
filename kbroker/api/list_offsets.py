"""ListOffsets: earliest, latest, max-timestamp and by-timestamp offset look-ups."""

from __future__ import annotations

from kbroker.wire.connection import Request
from kbroker.wire.errors import KafkaError

EARLIEST = -2
EARLIEST_LOCAL = -4
READ_COMMITTED = 1  # no tiered storage here: the local log start is the log start


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
                partition.check_leader_epoch(query["current_leader_epoch"])
                timestamp = query["timestamp"]
                bound = partition.log.high_watermark
                if request.body["isolation_level"] == READ_COMMITTED:
                    bound = partition.producers.last_stable_offset(bound)  # the LSO
                found = partition.log.offset_for_timestamp(
                    EARLIEST if timestamp == EARLIEST_LOCAL else timestamp, max_offset=bound
                )
                if found is not None:
                    result.update(offset=found[0], timestamp=found[1])
                result["leader_epoch"] = partition.leader_epoch
            except KafkaError as exc:
                result["error_code"] = exc.code
            partitions.append(result)
        topics.append({"name": topic_request["name"], "partitions": partitions})
    return {"topics": topics}
