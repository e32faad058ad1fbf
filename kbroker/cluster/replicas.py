"""The partitions this broker hosts: each one's log, idempotence state and watchers.

A :class:`Partition` ties a topic-partition's log to the producer-state table that
guards it and to the callbacks waiting for its next append (fetch long-polls). On a
single broker the high watermark follows the log end at once.
"""

from __future__ import annotations

from collections.abc import Callable

from kbroker.cluster.metadata import Topic
from kbroker.log.config import LogConfig
from kbroker.log.manager import LogManager
from kbroker.log.partition_log import PartitionLog
from kbroker.txn.producer_state import ProducerStateTable
from kbroker.wire.errors import ErrorCode, KafkaError

NO_EPOCH = -1


class Partition:
    """One hosted topic-partition."""

    def __init__(self, topic: Topic, index: int, log: PartitionLog) -> None:
        self.topic = topic
        self.index = index
        self.log = log
        self.producers = ProducerStateTable()
        self.watchers: set[Callable[[], None]] = set()
        self.producers.load(log)  # idempotence and open/aborted transactions, from the log

    @property
    def leader_epoch(self) -> int:
        return self.topic.partitions[self.index].leader_epoch

    def check_leader_epoch(self, requested: int) -> None:
        """Kafka's fencing rule for a request naming the leader epoch it knows (-1: none)."""
        current = self.leader_epoch
        if requested == NO_EPOCH or requested == current:
            return
        if requested < current:
            raise KafkaError(ErrorCode.FENCED_LEADER_EPOCH)
        raise KafkaError(ErrorCode.UNKNOWN_LEADER_EPOCH)

    def appended(self) -> None:
        """Advance the high watermark (single replica) and wake whoever waits."""
        self.log.high_watermark = self.log.log_end_offset
        for watcher in list(self.watchers):
            watcher()


class ReplicaManager:
    """Opens, finds and removes the partitions of the topics in the metadata."""

    def __init__(self, logs: LogManager, log_config: Callable[[Topic], LogConfig]) -> None:
        self.logs = logs
        self.log_config = log_config
        self.partitions: dict[tuple[str, int], Partition] = {}

    def get(self, topic: str, index: int) -> Partition | None:
        return self.partitions.get((topic, index))

    def open_topic(self, topic: Topic, first: int = 0) -> None:
        """Open the topic's partitions from ``first`` (CreatePartitions opens the new ones)."""
        config = self.log_config(topic)
        for index in range(first, len(topic.partitions)):
            log = self.logs.get_or_create(topic.name, index, config)
            partition = Partition(topic, index, log)
            partition.appended()
            self.partitions[(topic.name, index)] = partition

    def remove_topic(self, topic: Topic) -> None:
        for index in range(len(topic.partitions)):
            partition = self.partitions.pop((topic.name, index), None)
            if partition is not None:
                self.logs.delete(topic.name, index)
