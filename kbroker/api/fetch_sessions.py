"""Fetch sessions (KIP-227): a fetcher lists its partitions once, then only what changed.

A full fetch with epoch 0 opens a session holding each partition's fetch position; later
(incremental) requests carry the session id, the next epoch, the partitions whose
position moved and the ones to forget. Incremental responses leave out the partitions
with nothing new, so a follower replicating a thousand quiet partitions exchanges a few
bytes per round instead of a thousand entries. Clients that don't use sessions (epoch -1)
are served exactly as before. Kept apart from IO: ``open`` and ``respond`` only look at
and change the cache.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from kbroker.cluster.fetch_session_handler import (
    FINAL_EPOCH,
    INITIAL_EPOCH,
    NO_SESSION,
    next_epoch,
)
from kbroker.wire.errors import ErrorCode

_NO_TOPIC_ID = bytes(16)

PartitionKey = tuple[object, int]  # (topic name, or topic id bytes from v13, partition)


@dataclass(slots=True)
class _Cached:
    request: dict  # the partition's latest request fields (fetch offset, max bytes, ...)
    sent: tuple = ()  # (high watermark, last stable, log start) last answered


@dataclass
class FetchSession:
    session_id: int
    epoch: int  # the epoch the next incremental request must carry
    key_name: str  # "topic" (names, v7-12) or "topic_id" (v13+), fixed for the session
    partitions: OrderedDict[PartitionKey, _Cached] = field(default_factory=OrderedDict)
    last_used: float = 0.0


@dataclass(slots=True)
class FetchContext:
    """What one Fetch request reads, and how its response is cut."""

    topics: list[dict]  # the request's ``topics`` layout: what to read, in order
    session: FetchSession | None = None
    incremental: bool = False
    error: ErrorCode = ErrorCode.NONE

    @property
    def session_id(self) -> int:
        return self.session.session_id if self.session is not None else NO_SESSION


class FetchSessionCache:
    """The broker's sessions, at most ``slots`` of them; the least recently used one
    gives way to a new one once idle for ``eviction_ms``."""

    def __init__(self, slots: int = 1000, eviction_ms: int = 120_000) -> None:
        self.slots = slots
        self.eviction_s = eviction_ms / 1000
        self.sessions: OrderedDict[int, FetchSession] = OrderedDict()

    def open(self, body: dict, by_id: bool) -> FetchContext:
        """The context of a request: sessionless, a new session, or an incremental one."""
        session_id, epoch = body["session_id"], body["session_epoch"]
        key_name = "topic_id" if by_id else "topic"
        if epoch in (INITIAL_EPOCH, FINAL_EPOCH):
            self.sessions.pop(session_id, None)
            if epoch == FINAL_EPOCH:
                return FetchContext(body["topics"])
            return FetchContext(body["topics"], self._create(body, key_name))
        session = self.sessions.get(session_id)
        if session is None:
            return FetchContext([], error=ErrorCode.FETCH_SESSION_ID_NOT_FOUND)
        if epoch != session.epoch:
            return FetchContext([], error=ErrorCode.INVALID_FETCH_SESSION_EPOCH)
        if key_name != session.key_name:
            return FetchContext([], error=ErrorCode.FETCH_SESSION_TOPIC_ID_ERROR)
        for topic in body["topics"]:
            for partition in topic["partitions"]:
                key = (topic[key_name], partition["partition"])
                cached = session.partitions.get(key)
                if cached is None:
                    session.partitions[key] = _Cached(partition)
                else:
                    cached.request = partition
        for topic in body["forgotten_topics_data"]:
            for index in topic["partitions"]:
                session.partitions.pop((topic[key_name], index), None)
        session.epoch = next_epoch(epoch)
        self._touch(session)
        return FetchContext(_layout(session), session, incremental=True)

    def respond(self, context: FetchContext, responses: list[dict]) -> list[dict]:
        """Record what the session's partitions were told; an incremental response keeps
        only partitions with records, an error or a moved offset (those with records go
        to the back of the session, so every partition gets its turn at the budget)."""
        session = context.session
        if session is None:
            return responses
        key_name = session.key_name
        kept = []
        for topic in responses:
            partitions = []
            for result in topic["partitions"]:
                key = (topic[key_name], result["partition_index"])
                cached = session.partitions.get(key)
                if cached is None:
                    continue
                sent = (
                    result.get("high_watermark"),
                    result.get("last_stable_offset"),
                    result.get("log_start_offset"),
                )
                has_records = len(result["records"]) > 0
                changed = sent != cached.sent or result.get("error_code", 0) != 0
                cached.sent = sent
                if has_records:
                    session.partitions.move_to_end(key)
                if not context.incremental or has_records or changed:
                    partitions.append(result)
            if partitions:
                kept.append({**topic, "partitions": partitions})
        return kept

    def _create(self, body: dict, key_name: str) -> FetchSession | None:
        if self.slots <= 0 or not body["topics"]:
            return None
        now = time.monotonic()
        if len(self.sessions) >= self.slots:
            oldest = next(iter(self.sessions.values()))
            if now - oldest.last_used < self.eviction_s:
                return None  # every session is in use: this fetcher goes sessionless
            self.sessions.popitem(last=False)
        session_id = NO_SESSION
        while session_id == NO_SESSION or session_id in self.sessions:
            session_id = random.randint(1, 0x7FFFFFFF)
        session = FetchSession(session_id, next_epoch(INITIAL_EPOCH), key_name)
        for topic in body["topics"]:
            for partition in topic["partitions"]:
                key = (topic[key_name], partition["partition"])
                session.partitions[key] = _Cached(partition)
        self.sessions[session_id] = session
        self._touch(session)
        return session

    def _touch(self, session: FetchSession) -> None:
        session.last_used = time.monotonic()
        self.sessions.move_to_end(session.session_id)


def _layout(session: FetchSession) -> list[dict]:
    """The session's partitions as a request's ``topics`` (one entry per run of a topic;
    the key the session doesn't use is left empty)."""
    key_name = session.key_name
    topics: list[dict] = []
    for (topic, _), cached in session.partitions.items():
        if not topics or topics[-1][key_name] != topic:
            topics.append(
                {"topic": "", "topic_id": _NO_TOPIC_ID, key_name: topic, "partitions": []}
            )
        topics[-1]["partitions"].append(cached.request)
    return topics
