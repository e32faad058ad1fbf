"""DescribeCluster (id, controller, brokers) and DescribeLogDirs (partition sizes)."""

from __future__ import annotations

import os

from kbroker.api.metadata import CLUSTER_OPERATIONS, NOT_REQUESTED
from kbroker.wire.connection import Request
from kbroker.wire.errors import ErrorCode

ENDPOINT_BROKERS = 1


async def describe_cluster(broker, request: Request) -> dict:
    body = request.body
    controller = broker.controller
    response = {
        "error_code": ErrorCode.NONE,
        "error_message": None,
        "endpoint_type": body["endpoint_type"],
        "cluster_id": controller.store.cluster_id,
        "controller_id": controller.controller_id,
        "brokers": [
            {"broker_id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack}
            for b in controller.live_brokers()
        ],
        "cluster_authorized_operations": (
            CLUSTER_OPERATIONS if body["include_cluster_authorized_operations"] else NOT_REQUESTED
        ),
    }
    if body["endpoint_type"] != ENDPOINT_BROKERS:
        response.update(
            error_code=ErrorCode.UNSUPPORTED_ENDPOINT_TYPE,
            error_message="The broker does not support the controllers endpoint type",
            brokers=[],
        )
    return response


async def describe_log_dirs(broker, request: Request) -> dict:
    wanted = request.body["topics"]
    selection = None
    if wanted is not None:
        selection = {(t["topic"], p) for t in wanted for p in t["partitions"]}
    logs = broker.logs
    results = []
    for log_dir in logs.log_dirs:
        topics: dict[str, list[dict]] = {}
        for (name, index), plog in sorted(logs.logs().items()):
            if logs.log_dir_of(name, index) != log_dir:
                continue
            if selection is not None and (name, index) not in selection:
                continue
            topics.setdefault(name, []).append(
                {
                    "partition_index": index,
                    "partition_size": plog.size,
                    "offset_lag": max(0, plog.high_watermark - plog.log_end_offset),
                    "is_future_key": False,
                }
            )
        total = usable = -1
        try:
            stats = os.statvfs(log_dir)
            total, usable = stats.f_blocks * stats.f_frsize, stats.f_bavail * stats.f_frsize
        except OSError:
            pass
        results.append(
            {
                "error_code": ErrorCode.NONE,
                "log_dir": os.path.abspath(log_dir),
                "topics": [{"name": n, "partitions": p} for n, p in topics.items()],
                "total_bytes": total,
                "usable_bytes": usable,
            }
        )
    return {"error_code": ErrorCode.NONE, "results": results}
