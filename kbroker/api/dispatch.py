"""The table from API key to handler. Every API with a schema file has a handler here."""

from __future__ import annotations

from kbroker.api import (
    admin,
    api_versions,
    cluster,
    configs,
    fetch,
    groups,
    leader_epoch,
    list_offsets,
    metadata,
    partitions,
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
    21: partitions.delete_records,
    22: producer_id.handle,
    23: leader_epoch.handle,
    32: configs.describe_configs,
    33: configs.alter_configs,
    35: cluster.describe_log_dirs,
    37: partitions.create_partitions,
    42: groups.delete_groups,
    44: configs.incremental_alter_configs,
    47: groups.offset_delete,
    60: cluster.describe_cluster,
}
