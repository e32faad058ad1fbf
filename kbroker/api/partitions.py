"""CreatePartitions (more partitions for a topic) and DeleteRecords (log start offset)."""

from __future__ import annotations

import logging

from kbroker.wire.connection import Request
from kbroker.wire.errors import ErrorCode, KafkaError

log = logging.getLogger("kbroker.partitions")

HIGH_WATERMARK = -1  # DeleteRecords: "up to the high watermark"


async def create_partitions(broker, request: Request) -> dict:
    body = request.body
    names = [t["name"] for t in body["topics"]]
    results = []
    for topic_request in body["topics"]:
        name = topic_request["name"]
        result = {"name": name, "error_code": ErrorCode.NONE, "error_message": None}
        try:
            if names.count(name) > 1:
                raise KafkaError(ErrorCode.INVALID_REQUEST, "Duplicate topic in request.")
            assignments = topic_request["assignments"]
            broker.controller.create_partitions(
                name,
                topic_request["count"],
                None if assignments is None else [a["broker_ids"] for a in assignments],
                validate_only=body["validate_only"],
            )
        except KafkaError as exc:
            log.info("create partitions for %r refused: %s", name, exc)
            result.update(error_code=exc.code, error_message=exc.message)
        results.append(result)
    return {"results": results}


def _delete_records(broker, name: str, index: int, offset: int) -> int:
    partition = broker.hosted_partition_by_name(name, index)
    plog = partition.log
    if not plog.config.delete_enabled:
        raise KafkaError(ErrorCode.POLICY_VIOLATION)
    if offset == HIGH_WATERMARK:
        offset = plog.high_watermark
    if offset < 0 or offset > plog.high_watermark:
        raise KafkaError(ErrorCode.OFFSET_OUT_OF_RANGE)
    if plog.advance_log_start_offset(offset):
        log.info("deleted records of %s-%d before offset %d", name, index, offset)
    return plog.log_start_offset


async def delete_records(broker, request: Request) -> dict:
    topics = []
    moved = False
    for topic in request.body["topics"]:
        partitions = []
        for p in topic["partitions"]:
            result = {"partition_index": p["partition_index"], "low_watermark": -1}
            try:
                result["low_watermark"] = _delete_records(
                    broker, topic["name"], p["partition_index"], p["offset"]
                )
                result["error_code"] = ErrorCode.NONE
                moved = True
            except KafkaError as exc:
                result["error_code"] = exc.code
            partitions.append(result)
        topics.append({"name": topic["name"], "partitions": partitions})
    if moved:
        broker.logs.checkpoint()  # the new log start offsets survive a crash
    return {"topics": topics}
