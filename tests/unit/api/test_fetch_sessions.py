"""FetchSessionCache (KIP-227) without IO: what each Fetch request reads, and what its
response keeps.

Requests are built as the decoded Fetch request bodies; responses are built the way the
Fetch handler builds them, from a small fake log per partition (high watermark, last
stable offset, log start, error): a partition read below its high watermark has records.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from kbroker.api import fetch_sessions
from kbroker.api.fetch_sessions import FetchSessionCache, next_epoch
from kbroker.wire.errors import ErrorCode

NO_TOPIC_ID = bytes(16)
MAX_EPOCH = 0x7FFFFFFF


# -- requests -----------------------------------------------------------------------------
def fetch_partition(index: int, offset: int, max_bytes: int = 1 << 20) -> dict:
    return {
        "partition": index,
        "current_leader_epoch": -1,
        "fetch_offset": offset,
        "last_fetched_epoch": -1,
        "log_start_offset": -1,
        "partition_max_bytes": max_bytes,
    }


def topic_keys(topic, by_id: bool) -> dict:
    """``topic`` is a name (v7-12) or, with ``by_id``, a 16-byte topic id (v13+)."""
    return {"topic": "", "topic_id": topic} if by_id else {"topic": topic, "topic_id": NO_TOPIC_ID}


def request(
    session_id: int,
    epoch: int,
    fetch: dict | None = None,
    forget: dict | None = None,
    by_id: bool = False,
) -> dict:
    """``fetch``: {topic: {partition: fetch offset}}; ``forget``: {topic: [partition]}."""
    return {
        "session_id": session_id,
        "session_epoch": epoch,
        "topics": [
            {
                **topic_keys(topic, by_id),
                "partitions": [fetch_partition(p, offset) for p, offset in parts.items()],
            }
            for topic, parts in (fetch or {}).items()
        ],
        "forgotten_topics_data": [
            {**topic_keys(topic, by_id), "partitions": list(parts)}
            for topic, parts in (forget or {}).items()
        ],
    }


# -- a fake log and the handler's responses -------------------------------------------------
@dataclass
class Log:
    readable: int = 0  # a fetch reads records up to here (the high watermark, or the LSO)
    high_watermark: int | None = None  # None: ``readable``
    last_stable: int | None = None  # None: ``readable``
    log_start: int = 0
    error: int = 0


def serve(context, logs: dict, by_id: bool = False) -> list[dict]:
    """The topic responses the Fetch handler builds for ``context.topics``."""
    key = "topic_id" if by_id else "topic"
    responses = []
    for topic in context.topics:
        partitions = []
        for wanted in topic["partitions"]:
            log = logs[(topic[key], wanted["partition"])]
            index = wanted["partition"]
            if log.error:
                result = {
                    "partition_index": index,
                    "error_code": log.error,
                    "high_watermark": -1,
                    "records": b"",
                }
            else:
                pending = max(log.readable - wanted["fetch_offset"], 0)
                hw = log.readable if log.high_watermark is None else log.high_watermark
                result = {
                    "partition_index": index,
                    "error_code": 0,
                    "high_watermark": hw,
                    "last_stable_offset": log.readable
                    if log.last_stable is None
                    else log.last_stable,
                    "log_start_offset": log.log_start,
                    "records": b"r" * pending,
                }
            partitions.append(result)
        responses.append(
            {"topic": topic["topic"], "topic_id": topic["topic_id"], "partitions": partitions}
        )
    return responses


def reads(context, by_id: bool = False) -> list[tuple]:
    """(topic, partition, fetch offset) of every partition the context reads, in order."""
    key = "topic_id" if by_id else "topic"
    return [
        (topic[key], p["partition"], p["fetch_offset"])
        for topic in context.topics
        for p in topic["partitions"]
    ]


def returned(responses: list[dict], by_id: bool = False) -> list[tuple]:
    """(topic, partition) of every partition a response carries, in order."""
    key = "topic_id" if by_id else "topic"
    return [(topic[key], p["partition_index"]) for topic in responses for p in topic["partitions"]]


def roundtrip(cache, body: dict, logs: dict, by_id: bool = False):
    """open + serve + respond, as the handler does: (context, response topics)."""
    context = cache.open(body, by_id)
    assert context.error == ErrorCode.NONE, context.error
    return context, cache.respond(context, serve(context, logs, by_id))


START = {"a": {0: 0, 1: 5}, "b": {0: 3}}


def start_logs() -> dict:
    """a-0 holds 4 records the fetcher has not read; a-1 and b-0 are read to the end."""
    return {("a", 0): Log(4), ("a", 1): Log(5), ("b", 0): Log(3)}


def opened(cache, logs: dict) -> int:
    """A session over START after its full fetch: its id (next epoch 1)."""
    context, responses = roundtrip(cache, request(0, 0, START), logs)
    assert context.session_id != 0
    assert returned(responses) == [("a", 0), ("a", 1), ("b", 0)]
    return context.session_id


# -- sessionless and full fetches ---------------------------------------------------------
def test_sessionless_fetch_reads_and_answers_exactly_the_request():
    cache = FetchSessionCache()
    logs = start_logs()
    for _ in range(2):  # the same request twice: the second is answered in full too
        body = request(0, -1, START)
        context = cache.open(body, False)
        assert context.error == ErrorCode.NONE
        assert (context.session_id, context.incremental) == (0, False)
        assert context.topics == body["topics"]
        responses = serve(context, logs)
        assert cache.respond(context, responses) == responses
        assert returned(responses) == [("a", 0), ("a", 1), ("b", 0)]
    assert not cache.sessions


def test_full_fetch_opens_a_session_and_answers_every_partition():
    cache = FetchSessionCache()
    logs = start_logs()
    body = request(0, 0, START)
    context = cache.open(body, False)
    assert context.error == ErrorCode.NONE
    assert context.session_id != 0 and not context.incremental
    assert context.topics == body["topics"]
    responses = serve(context, logs)
    # a-1 and b-0 have nothing new, a full response lists them all the same
    assert cache.respond(context, responses) == responses
    assert list(cache.sessions) == [context.session_id]
    # the next request carries epoch 1
    follow = cache.open(request(context.session_id, 1), False)
    assert follow.error == ErrorCode.NONE and follow.incremental


def test_two_full_fetches_open_two_sessions():
    cache = FetchSessionCache()
    logs = start_logs()
    first, second = opened(cache, logs), opened(cache, logs)
    assert first != second and set(cache.sessions) == {first, second}


# -- incremental fetches ------------------------------------------------------------------
def test_incremental_fetch_reads_the_session_and_answers_only_news():
    cache = FetchSessionCache()
    logs = start_logs()
    session_id = opened(cache, logs)

    context = cache.open(request(session_id, 1), False)
    assert context.error == ErrorCode.NONE and context.incremental
    assert context.session_id == session_id
    # nothing listed: every session partition is read at its cached fetch offset
    assert sorted(reads(context)) == [("a", 0, 0), ("a", 1, 5), ("b", 0, 3)]
    # a-0 still has its 4 records (the fetcher hasn't moved): only a-0 comes back
    responses = cache.respond(context, serve(context, logs))
    assert returned(responses) == [("a", 0)]
    assert responses[0]["partitions"][0]["records"] == b"rrrr"

    # the fetcher has read a-0 up to 4; nothing else happened: an empty response
    context, responses = roundtrip(cache, request(session_id, 2, {"a": {0: 4}}), logs)
    assert sorted(reads(context)) == [("a", 0, 4), ("a", 1, 5), ("b", 0, 3)]
    assert responses == []


@pytest.mark.parametrize(
    "change", ["records", "high_watermark", "last_stable_offset", "log_start_offset", "error"]
)
def test_incremental_response_keeps_a_partition_for_each_kind_of_news(change):
    cache = FetchSessionCache()
    logs = {("a", 0): Log(4), ("a", 1): Log(10, log_start=2), ("b", 0): Log(3)}
    context, _ = roundtrip(cache, request(0, 0, {"a": {0: 4, 1: 10}, "b": {0: 3}}), logs)
    session_id = context.session_id
    assert roundtrip(cache, request(session_id, 1), logs)[1] == []

    log = logs[("a", 1)]
    moved = {}
    if change == "records":  # the fetcher went back to 7 (a seek): records, same offsets
        moved = {"a": {1: 7}}
    elif change == "high_watermark":  # e.g. read_committed, stopped at the LSO
        log.high_watermark = 12
    elif change == "last_stable_offset":
        log.last_stable = 9
    elif change == "log_start_offset":  # retention deleted a segment
        log.log_start = 5
    else:
        log.error = ErrorCode.NOT_LEADER_OR_FOLLOWER
    _, responses = roundtrip(cache, request(session_id, 2, moved), logs)
    assert returned(responses) == [("a", 1)]
    # the same state again: records and errors are answered as long as they last,
    # offsets only when they move
    _, responses = roundtrip(cache, request(session_id, 3), logs)
    assert returned(responses) == ([("a", 1)] if change in ("records", "error") else [])


def test_updated_fetch_offsets_replace_the_cached_ones():
    cache = FetchSessionCache()
    logs = start_logs()
    session_id = opened(cache, logs)
    body = request(session_id, 1, {"a": {0: 2}})
    body["topics"][0]["partitions"][0]["partition_max_bytes"] = 100
    context, responses = roundtrip(cache, body, logs)
    assert sorted(reads(context)) == [("a", 0, 2), ("a", 1, 5), ("b", 0, 3)]
    assert returned(responses) == [("a", 0)]
    assert responses[0]["partitions"][0]["records"] == b"rr"  # read from 2, not from 0

    # kept for the following requests, with the rest of the partition's fields
    context = cache.open(request(session_id, 2), False)
    read = {(t["topic"], p["partition"]): p for t in context.topics for p in t["partitions"]}
    assert read[("a", 0)]["fetch_offset"] == 2
    assert read[("a", 0)]["partition_max_bytes"] == 100
    assert read[("b", 0)]["partition_max_bytes"] == 1 << 20


def test_incremental_fetch_adds_new_partitions_and_answers_them_once():
    cache = FetchSessionCache()
    logs = {**start_logs(), ("c", 0): Log(7)}
    session_id = opened(cache, logs)
    context, responses = roundtrip(cache, request(session_id, 1, {"a": {0: 4}, "c": {0: 7}}), logs)
    assert ("c", 0, 7) in reads(context)
    # nothing to read in c-0, but the fetcher has never heard its offsets
    assert returned(responses) == [("c", 0)]
    context, responses = roundtrip(cache, request(session_id, 2), logs)
    assert responses == []


def test_forgotten_partitions_leave_the_session():
    cache = FetchSessionCache()
    logs = start_logs()
    session_id = opened(cache, logs)
    body = request(session_id, 1, forget={"a": [0, 9], "zz": [0]})  # a-9, zz-0: not in it
    context, responses = roundtrip(cache, body, logs)
    assert sorted(reads(context)) == [("a", 1, 5), ("b", 0, 3)]
    assert responses == []  # a-0's pending records are no longer asked for

    logs[("a", 0)].readable = 50
    context, responses = roundtrip(cache, request(session_id, 2), logs)
    assert sorted(reads(context)) == [("a", 1, 5), ("b", 0, 3)] and responses == []

    # a forgotten partition can come back; it is answered as new
    context, responses = roundtrip(cache, request(session_id, 3, {"a": {0: 50}}), logs)
    assert sorted(reads(context)) == [("a", 0, 50), ("a", 1, 5), ("b", 0, 3)]
    assert returned(responses) == [("a", 0)]


# -- session errors -----------------------------------------------------------------------
def test_wrong_epoch_is_invalid_fetch_session_epoch_and_the_session_survives():
    cache = FetchSessionCache()
    logs = start_logs()
    session_id = opened(cache, logs)
    for epoch in (2, 7, MAX_EPOCH, -2):
        context = cache.open(request(session_id, epoch, {"a": {0: 4}}), False)
        assert context.error == ErrorCode.INVALID_FETCH_SESSION_EPOCH == 71, epoch
        assert context.topics == [] and context.session_id == 0
    # the refused requests changed nothing: epoch 1 still expected, a-0 still at 0
    context, responses = roundtrip(cache, request(session_id, 1), logs)
    assert ("a", 0, 0) in reads(context)
    # an epoch already used is refused too
    context = cache.open(request(session_id, 1), False)
    assert context.error == ErrorCode.INVALID_FETCH_SESSION_EPOCH


def test_unknown_session_id_is_fetch_session_id_not_found():
    cache = FetchSessionCache()
    logs = start_logs()
    session_id = opened(cache, logs)
    other = session_id % MAX_EPOCH + 1
    for sid in (other, 0):
        context = cache.open(request(sid, 1, {"a": {0: 4}}), False)
        assert context.error == ErrorCode.FETCH_SESSION_ID_NOT_FOUND == 70, sid
        assert context.topics == [] and context.session_id == 0
    roundtrip(cache, request(session_id, 1), logs)  # the real session is untouched


def test_final_epoch_closes_the_session_and_fetches_without_one():
    cache = FetchSessionCache()
    logs = start_logs()
    session_id = opened(cache, logs)
    body = request(session_id, -1, {"b": {0: 0}})
    context, responses = roundtrip(cache, body, logs)
    assert context.session_id == 0 and reads(context) == [("b", 0, 0)]
    assert returned(responses) == [("b", 0)]
    assert cache.open(request(session_id, 1), False).error == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    assert not cache.sessions


def test_initial_epoch_with_a_session_id_replaces_that_session():
    cache = FetchSessionCache()
    logs = start_logs()
    session_id = opened(cache, logs)
    context, responses = roundtrip(cache, request(session_id, 0, {"b": {0: 0}}), logs)
    assert context.session_id not in (0, session_id)
    assert returned(responses) == [("b", 0)]
    assert list(cache.sessions) == [context.session_id]
    old = cache.open(request(session_id, 1), False)
    assert old.error == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    new, _ = roundtrip(cache, request(context.session_id, 1), logs)
    assert reads(new) == [("b", 0, 0)]


def test_epochs_advance_by_one_and_wrap_to_one():
    assert [next_epoch(e) for e in (0, 1, 41, MAX_EPOCH - 1, MAX_EPOCH)] == [
        1,
        2,
        42,
        MAX_EPOCH,
        1,
    ]
    cache = FetchSessionCache()
    logs = start_logs()
    session_id = opened(cache, logs)
    for epoch in (1, 2, 3):
        roundtrip(cache, request(session_id, epoch), logs)
    assert cache.open(request(session_id, 3), False).error == ErrorCode.INVALID_FETCH_SESSION_EPOCH

    cache.sessions[session_id].epoch = MAX_EPOCH  # 2**31 requests later
    roundtrip(cache, request(session_id, MAX_EPOCH), logs)
    # after the largest int32 comes 1 (0 would ask for a new session)
    assert cache.open(request(session_id, MAX_EPOCH), False).error == 71
    context, _ = roundtrip(cache, request(session_id, 1), logs)
    assert context.session_id == session_id
    roundtrip(cache, request(session_id, 2), logs)


@pytest.mark.parametrize("opened_by_id", [False, True])
def test_a_session_keeps_its_topic_keys(opened_by_id):
    """Names (v7-12) and topic ids (v13+) don't mix within one session."""
    cache = FetchSessionCache()
    topic = uuid.uuid4().bytes if opened_by_id else "a"
    body = request(0, 0, {topic: {0: 0}}, by_id=opened_by_id)
    context, _ = roundtrip(cache, body, {(topic, 0): Log(1)}, by_id=opened_by_id)
    wrong = cache.open(request(context.session_id, 1, by_id=not opened_by_id), not opened_by_id)
    assert wrong.error == ErrorCode.FETCH_SESSION_TOPIC_ID_ERROR == 106
    assert wrong.topics == [] and wrong.session_id == 0


def test_topic_ids_key_the_session():
    cache = FetchSessionCache()
    x, y = uuid.uuid4().bytes, uuid.uuid4().bytes
    logs = {(x, 0): Log(3), (x, 1): Log(0), (y, 0): Log(2)}
    body = request(0, 0, {x: {0: 0, 1: 0}, y: {0: 2}}, by_id=True)
    context, responses = roundtrip(cache, body, logs, by_id=True)
    session_id = context.session_id
    assert session_id != 0
    assert returned(responses, by_id=True) == [(x, 0), (x, 1), (y, 0)]

    context, responses = roundtrip(
        cache, request(session_id, 1, {x: {0: 3}}, by_id=True), logs, True
    )
    assert sorted(reads(context, True)) == sorted([(x, 0, 3), (x, 1, 0), (y, 0, 2)])
    assert all(len(t["topic_id"]) == 16 for t in context.topics)
    assert responses == []

    logs[(y, 0)].readable = 5
    body = request(session_id, 2, forget={x: [1]}, by_id=True)
    context, responses = roundtrip(cache, body, logs, by_id=True)
    assert sorted(reads(context, True)) == sorted([(x, 0, 3), (y, 0, 2)])
    assert returned(responses, by_id=True) == [(y, 0)]
    assert responses[0]["topic_id"] == y
    assert responses[0]["partitions"][0]["records"] == b"rrr"


# -- the cache's slots --------------------------------------------------------------------
@pytest.fixture
def clock(monkeypatch):
    """The cache's monotonic clock, in seconds, set by the test."""
    now = SimpleNamespace(value=1000.0)
    monkeypatch.setattr(fetch_sessions, "time", SimpleNamespace(monotonic=lambda: now.value))
    return now


def test_full_cache_leaves_a_new_fetcher_sessionless_while_the_others_are_busy(clock):
    cache = FetchSessionCache(slots=1, eviction_ms=60_000)
    logs = start_logs()
    first = opened(cache, logs)

    clock.value += 30
    roundtrip(cache, request(first, 1), logs)
    clock.value += 59  # first idle for 59 s: not yet evictable
    body = request(0, 0, {"b": {0: 0}})
    context, responses = roundtrip(cache, body, logs)
    assert context.session_id == 0 and not context.incremental
    assert responses == serve(context, logs)  # answered in full, as sessionless
    assert list(cache.sessions) == [first]

    # the first fetcher goes on in its session
    context, responses = roundtrip(cache, request(first, 2, {"a": {0: 1}}), logs)
    assert context.session_id == first
    assert returned(responses) == [("a", 0)]


def test_full_cache_evicts_the_least_recently_used_idle_session(clock):
    cache = FetchSessionCache(slots=2, eviction_ms=60_000)
    logs = start_logs()
    first = opened(cache, logs)
    clock.value += 10
    second = opened(cache, logs)
    clock.value += 10
    roundtrip(cache, request(first, 1), logs)  # first is now the most recently used

    clock.value += 55  # second idle 65 s, first 55 s
    context, _ = roundtrip(cache, request(0, 0, {"b": {0: 0}}), logs)
    third = context.session_id
    assert third not in (0, first, second)
    assert set(cache.sessions) == {first, third}
    assert cache.open(request(second, 1), False).error == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    roundtrip(cache, request(first, 2), logs)


def test_a_fetcher_renewing_its_own_session_needs_no_free_slot(clock):
    cache = FetchSessionCache(slots=1, eviction_ms=60_000)
    logs = start_logs()
    first = opened(cache, logs)
    context, _ = roundtrip(cache, request(first, 0, START), logs)
    assert context.session_id not in (0, first)


def test_no_slots_means_no_sessions():
    cache = FetchSessionCache(slots=0)
    logs = start_logs()
    context, responses = roundtrip(cache, request(0, 0, START), logs)
    assert context.session_id == 0 and len(returned(responses)) == 3
    assert not cache.sessions


# -- the order partitions are read in -----------------------------------------------------
def test_a_partition_returned_with_records_moves_to_the_back():
    """The response's byte budget goes first to the partitions at the front: those that
    just had records wait behind the others, so every partition gets its turn."""
    cache = FetchSessionCache()
    logs = {("t", p): Log(0) for p in range(3)}
    logs[("u", 0)] = Log(0)
    context, _ = roundtrip(cache, request(0, 0, {"t": {0: 0, 1: 0, 2: 0}, "u": {0: 0}}), logs)
    session_id = context.session_id

    logs[("t", 0)].readable = 2
    context, responses = roundtrip(cache, request(session_id, 1), logs)
    assert reads(context) == [("t", 0, 0), ("t", 1, 0), ("t", 2, 0), ("u", 0, 0)]
    assert returned(responses) == [("t", 0)]

    logs[("t", 1)].readable = 1
    context, responses = roundtrip(cache, request(session_id, 2, {"t": {0: 2}}), logs)
    assert reads(context) == [("t", 1, 0), ("t", 2, 0), ("u", 0, 0), ("t", 0, 2)]
    assert returned(responses) == [("t", 1)]

    # news without records (an error) keeps its place
    logs[("u", 0)].error = ErrorCode.NOT_LEADER_OR_FOLLOWER
    context, responses = roundtrip(cache, request(session_id, 3, {"t": {1: 1}}), logs)
    assert reads(context) == [("t", 2, 0), ("u", 0, 0), ("t", 0, 2), ("t", 1, 1)]
    assert returned(responses) == [("u", 0)]
    context = cache.open(request(session_id, 4), False)
    assert reads(context) == [("t", 2, 0), ("u", 0, 0), ("t", 0, 2), ("t", 1, 1)]
    # the layout keeps the request's shape, one entry per run of a topic
    assert [t["topic"] for t in context.topics] == ["t", "u", "t"]
