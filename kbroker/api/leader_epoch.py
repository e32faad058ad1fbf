"""OffsetForLeaderEpoch: where a leader epoch ended, for truncation after a leader change."""

from __future__ import annotations

from kbroker.wire.connection import Request
from kbroker.wire.errors import KafkaError


async def handle(broker, request: Request) -> dict:
    topics = []
    for topic_request in request.body["topics"]:
        partitions = []
        for query in topic_request["partitions"]:
            result = {"partition": query["partition"]}
            try:
                partition = broker.hosted_partition_by_name(
                    topic_request["topic"], query["partition"]
                )
                partition.check_leader_epoch(query["current_leader_epoch"])
                epoch, end_offset = partition.log.end_offset_for_epoch(query["leader_epoch"])
                result.update(leader_epoch=epoch, end_offset=end_offset)
            except KafkaError as exc:
                result["error_code"] = exc.code
            partitions.append(result)
        topics.append({"topic": topic_request["topic"], "partitions": partitions})
    return {"topics": topics}
