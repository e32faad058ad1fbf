"""Which keys of an internal topic this broker coordinates, as the topic's leaders move.

Groups (``__consumer_offsets``) and transactional ids (``__transaction_state``) are
coordinated by the leader of the partition their key hashes to. In cluster mode a
coordinator loads a partition's keys when it becomes that partition's leader and unloads
them when another broker takes over; a single broker leads, and loads, them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from kbroker.group.records import partition_for
from kbroker.wire.errors import ErrorCode


class CoordinatorPartitions:
    """The partitions of ``topic_name`` loaded here (index -> leader epoch at load)."""

    def __init__(
        self,
        broker,
        topic_name: str,
        load: Callable[[int, int], bool],
        unload: Callable[[int], None],
    ) -> None:
        self.broker = broker
        self.topic_name = topic_name
        self.track_leadership = broker.clustered
        self.loaded: dict[int, int] = {}
        self._load = load  # (index, epoch) -> whether there was a partition to load
        self._unload = unload
        broker.partition_listeners.append(self._leadership_changed)

    def index_of(self, key: str) -> int | None:
        """The partition ``key`` belongs to (None before the topic exists)."""
        topic = self.broker.controller.store.topics.get(self.topic_name)
        return None if topic is None else partition_for(key, len(topic.partitions))

    def ownership(self, key: str) -> ErrorCode:
        """NONE where this broker has loaded ``key``'s partition; COORDINATOR_LOAD_IN_PROGRESS
        while it leads but has not loaded it; NOT_COORDINATOR elsewhere (cluster mode)."""
        index = self.index_of(key)
        if index is None:
            return ErrorCode.NOT_COORDINATOR
        if index in self.loaded:
            return ErrorCode.NONE
        partition = self.broker.replicas.get(self.topic_name, index)
        if partition is not None and partition.leader is not None:
            return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        return ErrorCode.NOT_COORDINATOR

    async def replicated(self, key: str, timeout_ms: int) -> ErrorCode:
        """Wait until ``key``'s partition has its writes on the whole ISR (the
        coordinators append their records with acks=all)."""
        index = self.index_of(key)
        partition = None if index is None else self.broker.replicas.get(self.topic_name, index)
        if partition is None:
            return ErrorCode.NONE
        return await await_replicated(partition, timeout_ms)

    def _leadership_changed(self, topic: str, index: int, leading: bool, epoch: int) -> None:
        if topic != self.topic_name or not self.track_leadership:
            return
        if leading:
            if self.loaded.get(index) == epoch:
                return  # an ISR change while leading
            if index in self.loaded:
                self._drop(index)  # led again at a new epoch: read it afresh
            self.load(index, epoch)
        elif index in self.loaded:
            self._drop(index)

    def load(self, index: int, epoch: int = 0) -> None:
        if self._load(index, epoch):
            self.loaded[index] = epoch

    def _drop(self, index: int) -> None:
        del self.loaded[index]
        self._unload(index)


async def await_replicated(partition, timeout_ms: int) -> ErrorCode:
    """Wait for the partition's high watermark to reach its log end (acks=all for the
    coordinators' own writes); at once where this broker is the whole ISR."""
    if partition.log.high_watermark >= partition.log.log_end_offset:
        return ErrorCode.NONE
    if partition.leader is None:
        return ErrorCode.NOT_LEADER_OR_FOLLOWER
    future = asyncio.get_running_loop().create_future()

    def done(error: ErrorCode) -> None:
        if not future.done():
            future.set_result(error)

    waiter = partition.await_replication(partition.log.log_end_offset, 1, done)
    try:
        return await asyncio.wait_for(future, timeout_ms / 1000)
    except TimeoutError:
        partition.forget_waiter(waiter)
        return ErrorCode.REQUEST_TIMED_OUT
