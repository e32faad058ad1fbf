"""ApiVersions: the version ranges we serve, generated from the schema files alone."""

from __future__ import annotations

from kbroker.wire.connection import Request
from kbroker.wire.errors import ErrorCode
from kbroker.wire.registry import Registry


def api_ranges(registry: Registry) -> list[dict]:
    return [
        {"api_key": api.key, "min_version": api.min_version, "max_version": api.max_version}
        for api in sorted(registry.apis.values(), key=lambda api: api.key)
    ]


async def handle(broker, request: Request) -> dict:
    error = ErrorCode.NONE if request.body is not None else ErrorCode.UNSUPPORTED_VERSION
    return {"error_code": error, "api_keys": broker.api_ranges}
