"""Calling a broker's handlers directly, as the listener would after decoding."""

from __future__ import annotations

import asyncio

from kbroker.wire.connection import Request


def call(broker, key: int, version: int, body: dict) -> dict:
    """Decode-free call: fill the request's defaults from the schema, run the handler."""
    api = broker.registry.apis[key]
    full = {f.name: f.make_default() for f in api.request if version in f.versions}
    full.update(body)
    return asyncio.run(broker.handle(Request(key, version, 1, "test", full, 0)))
