"""The follower's side of fetch sessions, and how a replica fetcher reacts to its leader."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from kbroker.cluster import fetcher as fetcher_module
from kbroker.cluster.fetch_session_handler import FetchSessionHandler
from kbroker.cluster.fetcher import FetcherSettings, ReplicaFetcher
from kbroker.cluster.metadata import BrokerInfo
from kbroker.wire.errors import ErrorCode
from kbroker.wire.registry import default_registry


def fields(offset: int, epoch: int = 0) -> dict:
    return {
        "partition": 0,
        "current_leader_epoch": epoch,
        "fetch_offset": offset,
        "last_fetched_epoch": epoch,
        "log_start_offset": 0,
        "partition_max_bytes": 1048576,
    }


def sent(request: dict) -> dict:
    """(topic, fetch offset) per partition the request names, and what it forgets."""
    return {
        "named": {
            (t["topic"], p["partition"]): p["fetch_offset"]
            for t in request["topics"]
            for p in t["partitions"]
        },
        "forgotten": {
            (t["topic"], i) for t in request["forgotten_topics_data"] for i in t["partitions"]
        },
    }


def test_full_then_only_what_moved_then_forgotten():
    handler = FetchSessionHandler()
    wanted = {("a", 0): fields(5), ("b", 0): fields(7)}
    first = handler.build(wanted)
    assert (first["session_id"], first["session_epoch"]) == (0, 0)  # full: opens a session
    assert sent(first) == {"named": {("a", 0): 5, ("b", 0): 7}, "forgotten": set()}
    handler.received(ErrorCode.NONE, 42)

    quiet = handler.build(wanted)
    assert (quiet["session_id"], quiet["session_epoch"]) == (42, 1)
    assert sent(quiet) == {"named": {}, "forgotten": set()}  # nothing moved: nothing named
    handler.received(ErrorCode.NONE, 42)

    moved = handler.build({("a", 0): fields(9)})  # a advanced, b no longer followed
    assert moved["session_epoch"] == 2
    assert sent(moved) == {"named": {("a", 0): 9}, "forgotten": {("b", 0)}}
    handler.received(ErrorCode.NONE, 42)
    assert sent(handler.build({("a", 0): fields(9)})) == {"named": {}, "forgotten": set()}


def test_an_error_or_no_session_starts_over_in_full():
    handler = FetchSessionHandler()
    wanted = {("a", 0): fields(5)}
    handler.build(wanted)
    handler.received(ErrorCode.NONE, 42)
    handler.build(wanted)
    handler.received(ErrorCode.INVALID_FETCH_SESSION_EPOCH, 0)
    again = handler.build(wanted)
    assert (again["session_id"], again["session_epoch"]) == (0, 0)
    assert sent(again)["named"] == {("a", 0): 5}
    handler.received(ErrorCode.NONE, 0)  # the leader had no room for a session
    assert handler.build(wanted)["session_epoch"] == 0


def test_epochs_wrap_to_one():
    handler = FetchSessionHandler()
    handler.build({})
    handler.received(ErrorCode.NONE, 42)
    handler.epoch = 0x7FFFFFFF
    handler.build({})
    handler.received(ErrorCode.NONE, 42)
    assert handler.epoch == 1


def partition(topic: str, index: int):
    return SimpleNamespace(topic=SimpleNamespace(name=topic), index=index)


def closed_port_fetcher() -> ReplicaFetcher:
    leader = BrokerInfo(1, "127.0.0.1", 1)  # nothing listens: fetching there fails fast
    return ReplicaFetcher(default_registry(), 2, leader, FetcherSettings(backoff_ms=1000))


def test_a_refused_partition_is_retried_after_the_backoff(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(fetcher_module.time, "monotonic", lambda: now[0])
    fetcher = closed_port_fetcher()
    fetcher.partitions = {("a", 0): partition("a", 0), ("b", 0): partition("b", 0)}
    fetcher._pause(("a", 0), ErrorCode.NOT_LEADER_OR_FOLLOWER)
    assert fetcher._active() == [("b", 0)]
    now[0] += 0.999
    assert fetcher._active() == [("b", 0)]
    now[0] += 0.002  # replica.fetch.backoff.ms later: asked again
    assert fetcher._active() == [("a", 0), ("b", 0)]


def test_a_partition_added_during_a_long_poll_cuts_it_short():
    async def scenario() -> None:
        fetcher = closed_port_fetcher()
        long_poll = asyncio.ensure_future(asyncio.sleep(10))  # a Fetch out at the leader
        fetcher._inflight = long_poll
        fetcher.add(partition("new", 0))
        await asyncio.sleep(0)
        assert long_poll.cancelled()
        assert ("new", 0) in fetcher.partitions
        await fetcher.stop()

    asyncio.run(scenario())
