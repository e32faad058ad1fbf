"""The embedded controller: a single node's authority over topics and leadership.

With no external coordinator, this broker is the whole cluster: it leads every partition
and is its only replica. Listeners hear of topics created and deleted so the replica
layer can open or remove their logs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from kbroker.cluster.election import assign_replicas
from kbroker.cluster.metadata import BrokerInfo, MetadataStore, PartitionState, Topic
from kbroker.cluster.topics import check_configs, check_name
from kbroker.wire.errors import ErrorCode, KafkaError

TopicListener = Callable[[Topic], None]


class EmbeddedController:
    """Creates and deletes topics for a one-broker cluster."""

    def __init__(self, store: MetadataStore, broker: BrokerInfo) -> None:
        self.store = store
        self.broker = broker
        self.on_created: list[TopicListener] = []
        self.on_deleted: list[TopicListener] = []
        # (topic, previous partition count) after CreatePartitions
        self.on_partitions_added: list[Callable[[Topic, int], None]] = []

    @property
    def controller_id(self) -> int:
        return self.broker.node_id

    def live_brokers(self) -> list[BrokerInfo]:
        return [self.broker]

    def create_topic(
        self,
        name: str,
        num_partitions: int,
        replication_factor: int,
        configs: dict[str, str | None] | None = None,
        assignments: dict[int, list[int]] | None = None,
        validate_only: bool = False,
        internal: bool = False,
    ) -> Topic:
        """Validate and (unless ``validate_only``) create a topic; raises KafkaError."""
        check_name(name)
        if self.topic_exists(name):
            raise KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
        live = {b.node_id for b in self.live_brokers()}
        if assignments:
            replica_sets = [assignments[p] for p in sorted(assignments)]
            if sorted(assignments) != list(range(len(assignments))):
                raise KafkaError(
                    ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    "Partitions should be a consecutive 0-based integer sequence",
                )
            for replicas in replica_sets:
                if not replicas or len(set(replicas)) != len(replicas):
                    raise KafkaError(
                        ErrorCode.INVALID_REPLICA_ASSIGNMENT, "Duplicate or empty replica list"
                    )
                if not set(replicas) <= live:
                    raise KafkaError(
                        ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                        f"Replica assignment {replicas} names brokers that are not alive",
                    )
        else:
            if replication_factor > len(live):
                raise KafkaError(
                    ErrorCode.INVALID_REPLICATION_FACTOR,
                    f"Unable to replicate the partition {replication_factor} time(s): "
                    f"The target replication factor of {replication_factor} cannot be reached "
                    f"because only {len(live)} broker(s) are registered.",
                )
            assigned = assign_replicas(live, num_partitions, replication_factor)
            replica_sets = [assigned[p] for p in sorted(assigned)]
        check_configs(configs or {})
        configs = {k: v for k, v in (configs or {}).items() if v is not None}
        if validate_only:
            return Topic(
                name,
                uuid.uuid4(),
                [PartitionState(r[0], 0, list(r), list(r)) for r in replica_sets],
                configs,
                internal,
            )
        return self.publish_topic(name, replica_sets, configs, internal)

    def ensure_internal_topic(
        self, name: str, num_partitions: int, replication_factor: int, configs: dict[str, str]
    ) -> Topic:
        """An internal topic, created on first use (or the one another broker just made)."""
        topic = self.store.topics.get(name)
        if topic is not None:
            return topic
        try:
            return self.create_topic(
                name, num_partitions, replication_factor, configs, internal=True
            )
        except KafkaError as exc:
            if exc.code != ErrorCode.TOPIC_ALREADY_EXISTS:
                raise
            return self.load_topic(name)

    def elect_leader(self, topic: Topic, index: int, unclean: bool) -> None:
        """ElectLeaders for one partition; on a single broker there is nothing to elect."""
        raise KafkaError(
            ErrorCode.ELECTION_NOT_NEEDED,
            "Leader election not needed for topic partition.",
        )

    def load_topic(self, name: str) -> Topic:
        return self.store.topics[name]

    def topic_exists(self, name: str) -> bool:
        return name in self.store.topics

    def publish_topic(
        self, name: str, replica_sets: list[list[int]], configs: dict[str, str], internal: bool
    ) -> Topic:
        """Make a validated topic real: here, in the local metadata file."""
        topic = Topic(
            name=name,
            topic_id=uuid.uuid4(),
            partitions=[PartitionState(r[0], 0, list(r), list(r)) for r in replica_sets],
            configs=configs,
            internal=internal,
        )
        self.store.add(topic)
        for listener in self.on_created:
            listener(topic)
        return topic

    def delete_topic(self, name: str) -> Topic:
        if name not in self.store.topics:
            raise KafkaError(
                ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                "This server does not host this topic-partition.",
            )
        topic = self.store.remove(name)
        for listener in self.on_deleted:
            listener(topic)
        return topic

    def create_partitions(
        self,
        name: str,
        count: int,
        assignments: list[list[int]] | None = None,
        validate_only: bool = False,
    ) -> Topic:
        """Raise a topic's partition count to ``count`` (CreatePartitions); raises KafkaError."""
        topic = self.store.topics.get(name)
        if topic is None:
            raise KafkaError(
                ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"The topic '{name}' does not exist."
            )
        current = len(topic.partitions)
        if count < current:
            raise KafkaError(
                ErrorCode.INVALID_PARTITIONS,
                f"Topic currently has {current} partitions, which is higher than the "
                f"requested {count}.",
            )
        if count == current:
            raise KafkaError(
                ErrorCode.INVALID_PARTITIONS, f"Topic already has {current} partitions."
            )
        live = sorted(b.node_id for b in self.live_brokers())
        replication = len(topic.partitions[0].replicas)
        if assignments is None:
            assignments = [
                [live[(p + i) % len(live)] for i in range(replication)]
                for p in range(current, count)
            ]
        elif len(assignments) != count - current:
            raise KafkaError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"Increasing the number of partitions by {count - current} but "
                f"{len(assignments)} assignments provided.",
            )
        for replicas in assignments:
            if not replicas or len(set(replicas)) != len(replicas):
                raise KafkaError(
                    ErrorCode.INVALID_REPLICA_ASSIGNMENT, "Duplicate or empty replica list"
                )
            if not set(replicas) <= set(live):
                raise KafkaError(
                    ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    f"Replica assignment {replicas} names brokers that are not alive",
                )
            if len(replicas) != replication:
                raise KafkaError(
                    ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    f"Inconsistent replication factor between partitions, partition 0 has "
                    f"{replication} while partitions [{current}] have replication factors "
                    f"[{len(replicas)}], respectively.",
                )
        if not validate_only:
            topic.partitions += [PartitionState(r[0], 0, list(r), list(r)) for r in assignments]
            self.store.save()
            for listener in self.on_partitions_added:
                listener(topic, current)
        return topic

    def allocate_producer_id(self) -> int:
        """A producer id never handed out before, persisted across restarts."""
        producer_id = self.store.next_producer_id
        self.store.next_producer_id += 1
        self.store.save()
        return producer_id
