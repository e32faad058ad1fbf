"""The partitions this broker hosts: each one's log, idempotence state and watchers.

A :class:`Partition` ties a topic-partition's log to the producer-state table that
guards it, to the callbacks waiting for its next append (fetch long-polls) and, where
this broker leads, to the leader-side replication state that moves the high watermark
and completes acks=all produces. A single broker is the leader and the whole ISR of
every partition, so there the high watermark follows the log end at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from kbroker.cluster.metadata import PartitionState, Topic
from kbroker.cluster.replica_state import AckWaiter, LeaderReplicaState
from kbroker.log.config import LogConfig
from kbroker.log.manager import LogManager
from kbroker.log.partition_log import PartitionLog
from kbroker.txn import snapshot
from kbroker.txn.producer_state import ProducerStateTable
from kbroker.wire.errors import ErrorCode, KafkaError

logger = logging.getLogger(__name__)

NO_EPOCH = -1
Clock = Callable[[], int]


def now_ms() -> int:
    return int(time.time() * 1000)


class Partition:
    """One hosted topic-partition: its log, and its leader-side replication state when
    this broker leads it (a follower's log is fed by the follower fetcher instead)."""

    def __init__(
        self, topic: Topic, index: int, log: PartitionLog, local_id: int, clock: Clock
    ) -> None:
        self.topic = topic
        self.index = index
        self.log = log
        self.local_id = local_id
        self.clock = clock
        self.leader: LeaderReplicaState | None = None
        self.producers = ProducerStateTable()
        self.watchers: set[Callable[[], None]] = set()
        self.producers.load(log)  # idempotence and open transactions: snapshot + log tail
        log.on_snapshot = self._write_snapshot  # producer-state snapshots at rolls and close

    def _write_snapshot(self, offset: int) -> None:
        try:
            snapshot.write(self.log.directory, offset, self.producers, self.log.log_start_offset)
        except OSError as exc:  # the log still works; start-up would scan more of it
            logger.warning("cannot write a producer snapshot of %s: %s", self.log.directory, exc)

    @property
    def state(self) -> PartitionState:
        return self.topic.partitions[self.index]

    @property
    def leader_epoch(self) -> int:
        return self.state.leader_epoch

    def check_leader_epoch(self, requested: int) -> None:
        """Kafka's fencing rule for a request naming the leader epoch it knows (-1: none)."""
        current = self.leader_epoch
        if requested == NO_EPOCH or requested == current:
            return
        if requested < current:
            raise KafkaError(ErrorCode.FENCED_LEADER_EPOCH)
        raise KafkaError(ErrorCode.UNKNOWN_LEADER_EPOCH)

    def require_leader(self) -> LeaderReplicaState:
        if self.leader is None:
            raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER)
        return self.leader

    # -- leadership ----------------------------------------------------------------------
    def make_leader(self, isr_version: int = 0) -> None:
        """Lead with the current state (a new leader, or a new epoch/ISR while leading)."""
        state = self.state
        # As Kafka's makeLeader: the epoch starts at the log end now, so its checkpoint
        # write (and fsync) happens here rather than on the first produce's path.
        self.log.leader_epoch_cache.assign(state.leader_epoch, self.log.log_end_offset)
        if self.leader is None:
            self.leader = LeaderReplicaState.become_leader(
                self.local_id,
                state.leader_epoch,
                state.replicas,
                state.isr,
                isr_version,
                self.log.log_end_offset,
                self.log.high_watermark,
                self.clock(),
            )
            self._high_watermark_moved()
        elif self.leader.update_leadership(
            state.leader_epoch, state.replicas, state.isr, isr_version, self.clock()
        ):
            self._high_watermark_moved()

    def make_follower(self) -> None:
        """Stop leading: acks=all waiters fail with NOT_LEADER_OR_FOLLOWER."""
        if self.leader is not None:
            finished = self.leader.resign()
            self.leader = None
            _finish(finished)
        self._wake()

    # -- the leader's view of its log and followers ----------------------------------------
    def appended(self) -> None:
        """New records in the log: advance the high watermark if the ISR allows, wake
        fetches waiting for data."""
        if self.leader is not None and self.leader.leader_appended(self.log.log_end_offset):
            self._high_watermark_moved()
        self._wake()

    def follower_fetched(self, replica_id: int, fetch_offset: int, log_start: int) -> None:
        leader = self.require_leader()
        try:
            moved = leader.follower_fetched(
                replica_id, fetch_offset, self.log.log_end_offset, self.clock(), log_start
            )
        except KeyError:
            raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER) from None
        if moved:
            self._high_watermark_moved()

    def await_replication(
        self, required_offset: int, min_insync_replicas: int, done: Callable[[ErrorCode], None]
    ) -> AckWaiter:
        """acks=all: call ``done(error)`` once the high watermark reaches ``required_offset``."""
        waiter = self.require_leader().add_waiter(required_offset, 2**62, min_insync_replicas, done)
        if waiter.done:
            done(waiter.error)
        return waiter

    def forget_waiter(self, waiter: AckWaiter) -> None:
        """The producer's timeout passed: stop waiting for this append."""
        if self.leader is not None and waiter in self.leader.waiters:
            self.leader.waiters.remove(waiter)

    def maintain_isr(
        self, lag_time_max_ms: int, record: Callable[[str, int, int, list[int]], int]
    ) -> None:
        """As leader: propose dropping lagging followers from the ISR, or adding caught-up
        ones; ``record(topic, index, leader_epoch, isr)`` writes it conditionally and
        returns the new state version (-1 if the state moved on)."""
        leader = self.leader
        if leader is None:
            return
        proposed = leader.maybe_shrink_isr(self.clock(), lag_time_max_ms)
        if proposed is None:
            proposed = leader.maybe_expand_isr()
        if proposed is None:
            return
        isr = sorted(proposed)
        version = record(self.topic.name, self.index, leader.leader_epoch, isr)
        if version < 0:
            leader.isr_failed()
            return
        self.state.isr[:] = isr
        if leader.isr_committed(isr, version):
            self._high_watermark_moved()

    def _high_watermark_moved(self) -> None:
        self.log.high_watermark = self.leader.high_watermark
        _finish(self.leader.poll_waiters(self.clock()))
        self._wake()

    def _wake(self) -> None:
        for watcher in list(self.watchers):
            watcher()


def _finish(waiters: list[AckWaiter]) -> None:
    for waiter in waiters:
        waiter.token(waiter.error)


class ReplicaManager:
    """Opens, finds and removes the partitions of the topics in the metadata."""

    def __init__(
        self,
        logs: LogManager,
        log_config: Callable[[Topic], LogConfig],
        local_id: int,
        clock: Clock = now_ms,
    ) -> None:
        self.logs = logs
        self.log_config = log_config
        self.local_id = local_id
        self.clock = clock
        self.partitions: dict[tuple[str, int], Partition] = {}

    def get(self, topic: str, index: int) -> Partition | None:
        return self.partitions.get((topic, index))

    def open_topic(self, topic: Topic, first: int = 0) -> None:
        """Open the local replicas of the topic's partitions from ``first`` (CreatePartitions
        opens the new ones), leading those whose leader is this broker."""
        config = self.log_config(topic)
        for index in range(first, len(topic.partitions)):
            if self.local_id not in topic.partitions[index].replicas:
                continue
            log = self.logs.get_or_create(topic.name, index, config)
            partition = Partition(topic, index, log, self.local_id, self.clock)
            self.partitions[(topic.name, index)] = partition
            if partition.state.leader == self.local_id:
                partition.make_leader()

    def remove_topic(self, topic: Topic) -> None:
        for index in range(len(topic.partitions)):
            partition = self.partitions.pop((topic.name, index), None)
            if partition is not None:
                partition.make_follower()
                self.logs.delete(topic.name, index)
