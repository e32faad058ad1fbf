"""Followers copy their leaders' logs over Kafka's own protocol.

One :class:`ReplicaFetcher` per leader broker fetches every partition this broker
follows there (Fetch with our replica id, as Kafka's replica fetcher threads do) and
appends the batches as they come, offsets unchanged. A partition that starts following
first asks the leader where its latest leader epoch ended (OffsetForLeaderEpoch) and
truncates a divergent tail, so no replica keeps a record the leader does not have.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from kbroker.cluster.fetch_session_handler import FetchSessionHandler
from kbroker.cluster.metadata import BrokerInfo
from kbroker.cluster.peer import PeerConnection, PeerError
from kbroker.cluster.replicas import Partition
from kbroker.wire.errors import ErrorCode
from kbroker.wire.records import HEADER_SIZE, CorruptBatch, parse_header, split_batches
from kbroker.wire.registry import Registry

log = logging.getLogger("kbroker.fetcher")

FETCH = (1, 12)  # topic names, leader epochs, flexible
LIST_OFFSETS = (2, 4)
OFFSET_FOR_LEADER_EPOCH = (23, 4)
EARLIEST = -2
PAUSING_ERRORS = {
    ErrorCode.NOT_LEADER_OR_FOLLOWER,
    ErrorCode.FENCED_LEADER_EPOCH,
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    ErrorCode.UNKNOWN_TOPIC_ID,
}

SESSION_ERRORS = {
    ErrorCode.FETCH_SESSION_ID_NOT_FOUND,
    ErrorCode.INVALID_FETCH_SESSION_EPOCH,
    ErrorCode.FETCH_SESSION_TOPIC_ID_ERROR,
}

Key = tuple[str, int]


@dataclass(frozen=True)
class FetcherSettings:
    """Kafka's replica.fetch.* settings."""

    wait_max_ms: int = 500
    min_bytes: int = 1
    max_bytes: int = 1048576
    response_max_bytes: int = 10485760
    backoff_ms: int = 1000
    request_timeout_ms: int = 30000


def whole_batches(records) -> memoryview:
    """The complete batches at the front of a fetched records blob (a leader may cut the
    last one short to respect the fetch size)."""
    view = memoryview(records)
    pos = 0
    while len(view) - pos >= HEADER_SIZE:
        size = parse_header(view, pos).size
        if pos + size > len(view):
            break
        pos += size
    return view[:pos]


class ReplicaFetcher:
    """Follows the partitions led by one broker."""

    def __init__(
        self, registry: Registry, local_id: int, leader: BrokerInfo, settings: FetcherSettings
    ) -> None:
        self.leader = leader
        self.local_id = local_id
        self.settings = settings
        self.partitions: dict[Key, Partition] = {}
        self._unchecked: set[Key] = set()  # still to truncate against the leader's epochs
        # refused by the leader: retried after replica.fetch.backoff.ms (monotonic time), or
        # at once when the partition's state changes here (Kafka's delayed partitions)
        self._paused: dict[Key, float] = {}
        self._changed = asyncio.Event()
        self._peer = PeerConnection(
            registry, leader.host, leader.port, f"kbroker-replica-fetcher-{local_id}"
        )
        self._session = FetchSessionHandler()  # only what changed goes to the leader
        self._inflight: asyncio.Task | None = None  # the Fetch out at the leader, if any
        self._task: asyncio.Task | None = None
        self._stopped = False

    def add(self, partition: Partition) -> None:
        """Follow ``partition`` (again): check its epochs first, then fetch."""
        key = (partition.topic.name, partition.index)
        self.partitions[key] = partition
        self._unchecked.add(key)
        self._paused.pop(key, None)
        self._changed.set()
        if self._inflight is not None:  # a long-poll without it: ask again, with it, now
            self._inflight.cancel()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def remove(self, key: Key) -> None:
        self.partitions.pop(key, None)
        self._unchecked.discard(key)
        self._paused.pop(key, None)

    async def stop(self) -> None:
        # the flag as well as the cancel: on Python < 3.12 asyncio.wait_for can swallow a
        # cancellation that arrives as its awaitable completes (CPython gh-86296), and a
        # fetcher that missed it would keep the broker from ever finishing its shutdown
        self._stopped = True
        self._changed.set()
        task, self._task = self._task, None
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=1)
        self._peer.close()

    def _active(self) -> list[Key]:
        """The partitions to fetch now (a paused one again once its back-off is over)."""
        now = time.monotonic()
        for key in [k for k, until in self._paused.items() if until <= now]:
            del self._paused[key]
        return [k for k in self.partitions if k not in self._paused]

    async def _run(self) -> None:
        while not self._stopped:
            active = self._active()
            if not active:
                self._changed.clear()
                retry = min(self._paused.values(), default=None)
                timeout = None if retry is None else max(0.0, retry - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout)
                continue
            try:
                for key in [k for k in active if k in self._unchecked]:
                    await self._truncate_to_leader(key)
                made_progress = await self._fetch_once()
            except (PeerError, OSError) as exc:  # the leader is down or going
                log.warning("fetching from broker %d failed: %s", self.leader.node_id, exc)
                made_progress = False
            except Exception:
                log.exception("replica fetcher for broker %d failed", self.leader.node_id)
                made_progress = False
            if not made_progress:
                await asyncio.sleep(self.settings.backoff_ms / 1000)

    async def _call(self, api: tuple[int, int], body: dict, extra_wait_ms: int = 0) -> dict:
        timeout = (self.settings.request_timeout_ms + extra_wait_ms) / 1000
        return await self._peer.request(api[0], api[1], body, timeout)

    async def _truncate_to_leader(self, key: Key) -> None:
        """Cut this replica's log back to where it agrees with the leader's."""
        partition = self.partitions[key]
        plog = partition.log
        epoch = plog.latest_epoch
        if epoch < 0 or plog.log_end_offset == 0:
            self._unchecked.discard(key)
            return
        asked_epoch = partition.leader_epoch
        response = await self._call(
            OFFSET_FOR_LEADER_EPOCH,
            {
                "replica_id": self.local_id,
                "topics": [
                    {
                        "topic": key[0],
                        "partitions": [
                            {
                                "partition": key[1],
                                "current_leader_epoch": asked_epoch,
                                "leader_epoch": epoch,
                            }
                        ],
                    }
                ],
            },
        )
        answer = response["topics"][0]["partitions"][0]
        if key not in self.partitions or self.partitions[key] is not partition:
            return
        if partition.leader_epoch != asked_epoch:
            return  # the leadership changed while we asked: ask again under the new epoch
        if answer["error_code"] != ErrorCode.NONE:
            self._pause(key, answer["error_code"])
            return
        if answer["end_offset"] < 0:  # the leader knows no such epoch: keep what is committed
            target = plog.high_watermark
        else:
            target = answer["end_offset"]
            if answer["leader_epoch"] != epoch:
                target = min(target, plog.end_offset_for_epoch(answer["leader_epoch"])[1])
        if 0 <= target < plog.log_end_offset:
            log.info(
                "truncating %s-%d from %d to %d to match leader %d",
                *key,
                plog.log_end_offset,
                target,
                self.leader.node_id,
            )
            plog.truncate_to(target)
            partition.producers.load(plog)
        self._unchecked.discard(key)

    def _pause(self, key: Key, code: int) -> None:
        log.info(
            "leader %d refused %s-%d (%s); trying again in %d ms",
            self.leader.node_id,
            *key,
            ErrorCode(code).name,
            self.settings.backoff_ms,
        )
        self._paused[key] = time.monotonic() + self.settings.backoff_ms / 1000

    async def _fetch_once(self) -> bool:
        """One Fetch round; True if it brought records (or waited for them)."""
        requested = {
            k: p
            for k, p in self.partitions.items()
            if k not in self._paused and k not in self._unchecked
        }
        if not requested:
            return False
        epochs = {key: partition.leader_epoch for key, partition in requested.items()}
        wanted = {
            key: {
                "partition": key[1],
                "current_leader_epoch": epochs[key],
                "fetch_offset": partition.log.log_end_offset,
                "last_fetched_epoch": partition.log.latest_epoch,
                "log_start_offset": partition.log.log_start_offset,
                "partition_max_bytes": self.settings.max_bytes,
            }
            for key, partition in requested.items()
        }
        settings = self.settings
        self._inflight = asyncio.ensure_future(
            self._call(
                FETCH,
                {
                    "replica_id": self.local_id,
                    "max_wait_ms": settings.wait_max_ms,
                    "min_bytes": settings.min_bytes,
                    "max_bytes": settings.response_max_bytes,
                    **self._session.build(wanted),
                },
                extra_wait_ms=settings.wait_max_ms,
            )
        )
        try:
            response = await self._inflight
        except asyncio.CancelledError:
            self._session.reset()  # the connection was closed under the request
            if self._stopped or asyncio.current_task().cancelling():
                raise
            return True  # cut short by add(): fetch again at once, new partitions included
        except BaseException:
            self._session.reset()  # the leader may or may not have seen this epoch
            raise
        finally:
            self._inflight = None
        self._session.received(response["error_code"], response["session_id"])
        if response["error_code"] in SESSION_ERRORS:
            log.info(
                "fetch session with broker %d lost (%s); starting a new one",
                self.leader.node_id,
                ErrorCode(response["error_code"]).name,
            )
            return True  # fetch again at once, in full
        progress = response["error_code"] == ErrorCode.NONE
        for topic_response in response["responses"]:
            for result in topic_response["partitions"]:
                key = (topic_response["topic"], result["partition_index"])
                partition = self.partitions.get(key)
                if (
                    partition is None
                    or partition is not requested.get(key)
                    or partition.leader_epoch != epochs[key]
                ):
                    # removed, replaced or under new leadership while the fetch was out: a
                    # refusal of the old epoch must not pause the new one (the partition is
                    # checked against the leader's epochs again before fetching on)
                    continue
                if result["error_code"] == ErrorCode.NONE:
                    self._append(partition, result)
                elif result["error_code"] == ErrorCode.OFFSET_OUT_OF_RANGE:
                    await self._reset_out_of_range(key, partition)
                    progress = False
                elif result["error_code"] in PAUSING_ERRORS:
                    self._pause(key, result["error_code"])
                else:
                    progress = False
        return progress

    def _append(self, partition: Partition, result: dict) -> None:
        plog = partition.log
        records = whole_batches(result["records"] or b"")
        if len(records):
            try:
                headers = split_batches(records)
            except CorruptBatch as exc:
                log.error("corrupt batch from leader %d: %s", self.leader.node_id, exc)
                return
            plog.append_as_follower(records, headers)
            position = 0
            for header in headers:
                aborted = partition.producers.replay(
                    header, records[position : position + header.size]
                )
                if aborted is not None:
                    plog.append_aborted(aborted)
                position += header.size
        plog.high_watermark = min(result["high_watermark"], plog.log_end_offset)
        partition.appended()

    async def _reset_out_of_range(self, key: Key, partition: Partition) -> None:
        """Our log end is outside the leader's log: behind its start (retention) or ahead of
        its end (a divergent tail)."""
        response = await self._call(
            LIST_OFFSETS,
            {
                "replica_id": self.local_id,
                "topics": [
                    {
                        "name": key[0],
                        "partitions": [{"partition_index": key[1], "timestamp": EARLIEST}],
                    }
                ],
            },
        )
        answer = response["topics"][0]["partitions"][0]
        if answer["error_code"] != ErrorCode.NONE:
            self._pause(key, answer["error_code"])
        elif partition.log.log_end_offset < answer["offset"]:
            partition.log.truncate_fully_and_start_at(answer["offset"])
            partition.producers.load(partition.log)
        else:
            self._unchecked.add(key)


class FetcherManager:
    """One fetcher per leader broker; partitions move between them as leaders change."""

    def __init__(self, registry: Registry, local_id: int, settings: FetcherSettings) -> None:
        self.registry = registry
        self.local_id = local_id
        self.settings = settings
        self.fetchers: dict[int, ReplicaFetcher] = {}

    def follow(self, partition: Partition, leader: BrokerInfo) -> None:
        key = (partition.topic.name, partition.index)
        for broker_id, fetcher in self.fetchers.items():
            if broker_id != leader.node_id:
                fetcher.remove(key)
        fetcher = self.fetchers.get(leader.node_id)
        if fetcher is None or fetcher.leader != leader:
            if fetcher is not None:
                asyncio.get_running_loop().create_task(fetcher.stop())
            fetcher = ReplicaFetcher(self.registry, self.local_id, leader, self.settings)
            self.fetchers[leader.node_id] = fetcher
        fetcher.add(partition)

    def unfollow(self, key: Key) -> None:
        for fetcher in self.fetchers.values():
            fetcher.remove(key)

    async def stop(self) -> None:
        fetchers = list(self.fetchers.values())
        self.fetchers.clear()
        for fetcher in fetchers:
            await fetcher.stop()
