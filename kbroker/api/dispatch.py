"""The table from API key to handler. Every API with a schema file has a handler here."""

from __future__ import annotations

from kbroker.api import admin, api_versions, fetch, list_offsets, metadata, produce, producer_id

HANDLERS = {
    0: produce.handle,
    1: fetch.handle,
    2: list_offsets.handle,
    3: metadata.handle,
    18: api_versions.handle,
    19: admin.create_topics,
    20: admin.delete_topics,
    22: producer_id.handle,
    32: admin.describe_configs,
}
