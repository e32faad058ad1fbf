"""InitProducerId: hands idempotent producers a fresh producer id (epoch 0)."""

from __future__ import annotations

import logging

from kbroker.wire.connection import Request
from kbroker.wire.errors import ErrorCode

log = logging.getLogger("kbroker.producer_id")


async def handle(broker, request: Request) -> dict:
    if request.body["transactional_id"] is not None:
        log.warning(
            "client %s asked for transactional id %r: transactions are not supported yet",
            request.client_id,
            request.body["transactional_id"],
        )
        return {"error_code": ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED}
    return {"producer_id": broker.controller.allocate_producer_id(), "producer_epoch": 0}
