"""The table from API key to handler. Every API with a schema file has a handler here."""

from __future__ import annotations

from kbroker.api import (
    admin,
    api_versions,
    fetch,
    groups,
    leader_epoch,
    list_offsets,
    metadata,
    produce,
    producer_id,
)

HANDLERS = {
    0: produce.handle,
    1: fetch.handle,
    2: list_offsets.handle,
    3: metadata.handle,
    8: groups.offset_commit,
    9: groups.offset_fetch,
    10: groups.find_coordinator,
    11: groups.join_group,
    12: groups.heartbeat,
    13: groups.leave_group,
    14: groups.sync_group,
    15: groups.describe_groups,
    16: groups.list_groups,
    18: api_versions.handle,
    19: admin.create_topics,
    20: admin.delete_topics,
    22: producer_id.handle,
    23: leader_epoch.handle,
    32: admin.describe_configs,
    42: groups.delete_groups,
    47: groups.offset_delete,
}
