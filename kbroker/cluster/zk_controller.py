"""Cluster mode: the metadata lives in ZooKeeper, and one broker at a time is controller.

Every broker keeps the local metadata cache (``MetadataStore.topics``) in step with
ZooKeeper through watches: brokers coming and going, topics created and deleted, and
each partition's leader/ISR/epoch. ZooKeeper's watch callbacks run on kazoo's thread;
they are handed to the event loop, so all state changes happen on the loop. The broker
that wins ``/controller`` also elects leaders when brokers die or return, with
conditional writes fenced by the controller epoch. Decisions reach every broker by the
partition-state watches (ZooKeeper as the bus, instead of Kafka's LeaderAndIsr requests:
one mechanism, and what a broker acts on is exactly what ZooKeeper holds).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from kbroker.cluster import election
from kbroker.cluster.controller import EmbeddedController
from kbroker.cluster.election import LeaderAndIsr, PartitionView
from kbroker.cluster.metadata import BrokerInfo, MetadataStore, PartitionState, Topic
from kbroker.cluster.zookeeper import (
    BrokerRegistration,
    ControllerClaim,
    ControllerMoved,
    NodeExists,
    ZkStore,
)
from kbroker.wire.errors import ErrorCode, KafkaError

log = logging.getLogger("kbroker.zk_controller")

# (topic, partition index, znode version): a partition's leadership changed
LeadershipListener = Callable[[Topic, int, int], None]


class ZkController(EmbeddedController):
    """The cluster as ZooKeeper describes it, seen from one broker."""

    def __init__(
        self, store: MetadataStore, broker: BrokerInfo, zk: ZkStore, unclean_election: bool
    ) -> None:
        super().__init__(store, broker)
        self.zk = zk
        self.unclean_election = unclean_election
        self.brokers: dict[int, BrokerInfo] = {}
        self.state_versions: dict[tuple[str, int], int] = {}
        self.on_leadership: list[LeadershipListener] = []
        self._controller: int | None = None
        self._claim: ControllerClaim | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._producer_ids: list[int] = []  # [next, last] of this broker's block
        self._state_watches: dict[tuple[str, int], Callable[[], None]] = {}
        store.topics.clear()  # ZooKeeper, not the local file, says which topics exist
        store.by_id.clear()

    # -- start-up ------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop, register_wait_s: float) -> None:
        """Connect, register this broker, load the topics, and start watching."""
        self._loop = loop
        self.zk.start()
        self.store.cluster_id = self.zk.get_or_create_cluster_id(self.store.cluster_id)
        for name in self.zk.topic_names():
            self._load_topic(name)
        self.brokers = self._read_brokers(self.zk.broker_ids())
        self.zk.register_broker(
            BrokerRegistration(self.broker.node_id, self.broker.host, self.broker.port),
            wait_s=register_wait_s,
        )
        self.brokers[self.broker.node_id] = self.broker
        self.zk.watch_brokers(lambda ids: self._on_loop(self._brokers_changed, ids))
        self.zk.watch_topics(lambda names: self._on_loop(self._topics_changed, names))
        self.zk.watch_controller(lambda cid: self._on_loop(self._controller_changed, cid))

    def _on_loop(self, callback, *args) -> None:
        """Run a watch's consequence on the event loop (watches fire on kazoo's thread)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback, *args)

    def stop(self) -> None:
        for stop_watch in self._state_watches.values():
            stop_watch()
        if self._claim is not None:
            self.zk.resign_controller(self._claim)
        self.zk.close()

    # -- what the rest of the broker asks ------------------------------------------------
    @property
    def controller_id(self) -> int:
        return -1 if self._controller is None else self._controller

    def live_brokers(self) -> list[BrokerInfo]:
        return [self.brokers[i] for i in sorted(self.brokers)]

    def topic_exists(self, name: str) -> bool:
        return name in self.store.topics or self.zk.get_topic(name) is not None

    def publish_topic(
        self, name: str, replica_sets: list[list[int]], configs: dict[str, str], internal: bool
    ) -> Topic:
        """Write the topic and its first leaders to ZooKeeper, then load it here at once
        (the other brokers load it from their topic watch)."""
        live = {b.node_id for b in self.live_brokers()}
        try:
            self.zk.create_topic(name, dict(enumerate(replica_sets)), configs)
        except NodeExists:
            raise KafkaError(
                ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists."
            ) from None
        states = {}
        for index, replicas in enumerate(replica_sets):
            state = election.initial_leader_and_isr(replicas, live)
            states[index] = state or LeaderAndIsr(election.NO_LEADER, 0, tuple(replicas))
        try:
            self.zk.create_partition_states(name, states)
        except NodeExists:
            pass  # the controller got there first
        topic = self._load_topic(name)
        topic.internal = internal
        return topic

    def delete_topic(self, name: str) -> Topic:
        if not self.topic_exists(name):
            raise KafkaError(
                ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                "This server does not host this topic-partition.",
            )
        self.zk.delete_topic(name)
        topic = self.store.topics.get(name)
        if topic is not None:
            self._forget_topic(topic)
        return topic

    def allocate_producer_id(self) -> int:
        """Producer ids come in blocks claimed from ZooKeeper, unique across the cluster."""
        if not self._producer_ids or self._producer_ids[0] > self._producer_ids[1]:
            self._producer_ids = list(self.zk.allocate_producer_id_block(self.broker.node_id))
        producer_id = self._producer_ids[0]
        self._producer_ids[0] += 1
        return producer_id

    def record_isr(self, topic: str, index: int, leader_epoch: int, isr: list[int]) -> int:
        """A leader's ISR change, written if the state is still the one it knows; returns
        the new znode version, or -1 if the state moved on meanwhile."""
        key = (topic, index)
        state = LeaderAndIsr(self.broker.node_id, leader_epoch, tuple(isr))
        version = self.zk.update_partition_state(topic, index, state, self.state_versions[key])
        if version >= 0:
            self.state_versions[key] = version
        return version

    # -- the metadata cache ----------------------------------------------------------------
    def _read_brokers(self, ids: list[int]) -> dict[int, BrokerInfo]:
        brokers = {}
        for broker_id in ids:
            known = self.brokers.get(broker_id)
            if known is not None:
                brokers[broker_id] = known
                continue
            registration = self.zk.get_broker(broker_id)
            if registration is not None:
                brokers[broker_id] = BrokerInfo(
                    broker_id, registration.host, registration.port, registration.rack
                )
        return brokers

    def load_topic(self, name: str) -> Topic:
        return self._load_topic(name)

    def _load_topic(self, name: str) -> Topic:
        """Read a topic (assignment, states, configs) into the cache and watch its states."""
        assignment = self.zk.get_topic(name)
        if assignment is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        known = self.store.topics.get(name)
        if known is not None and len(known.partitions) == len(assignment.partitions):
            return known
        states = self.zk.get_partition_states(name)
        partitions = []
        for index, replicas in sorted(assignment.partitions.items()):
            state, version = states.get(index, (LeaderAndIsr(-1, -1, ()), -1))
            partitions.append(
                PartitionState(state.leader, state.leader_epoch, list(replicas), list(state.isr))
            )
            self.state_versions[(name, index)] = version
        topic = Topic(
            name,
            assignment.topic_id,
            partitions,
            self.zk.get_topic_config(name),
            internal=name.startswith("__"),
        )
        first_new = 0 if known is None else len(known.partitions)
        if known is not None:
            known.partitions = partitions
            topic = known
        self.store.topics[name] = topic
        self.store.by_id[topic.topic_id] = topic
        for index in range(first_new, len(partitions)):
            self._state_watches[(name, index)] = self.zk.watch_partition_state(
                name, index, lambda s, v, i=index: self._on_loop(self._state_changed, name, i, s, v)
            )
        if known is None:
            for listener in self.on_created:
                listener(topic)
        else:
            for listener in self.on_partitions_added:
                listener(topic, first_new)
        return topic

    def _forget_topic(self, topic: Topic) -> None:
        if self.store.topics.get(topic.name) is not topic:
            return
        del self.store.topics[topic.name]
        self.store.by_id.pop(topic.topic_id, None)
        for index in range(len(topic.partitions)):
            stop_watch = self._state_watches.pop((topic.name, index), None)
            if stop_watch is not None:
                stop_watch()
            self.state_versions.pop((topic.name, index), None)
        for listener in self.on_deleted:
            listener(topic)

    def _topics_changed(self, names: list[str]) -> None:
        for name in names:
            if name not in self.store.topics:
                try:
                    self._load_topic(name)
                except KafkaError:
                    pass  # deleted again already
        for topic in [t for n, t in self.store.topics.items() if n not in set(names)]:
            self._forget_topic(topic)

    def _state_changed(self, name: str, index: int, state: LeaderAndIsr | None, version: int):
        topic = self.store.topics.get(name)
        if topic is None or state is None or index >= len(topic.partitions):
            return
        self.state_versions[(name, index)] = version
        current = topic.partitions[index]
        topic.partitions[index] = PartitionState(
            state.leader, state.leader_epoch, current.replicas, list(state.isr)
        )
        for listener in self.on_leadership:
            listener(topic, index, version)

    def _brokers_changed(self, ids: list[int]) -> None:
        before = set(self.brokers)
        self.brokers = self._read_brokers(ids)
        dead, started = before - set(self.brokers), set(self.brokers) - before
        if dead:
            log.info("brokers left the cluster: %s", sorted(dead))
        if started:
            log.info("brokers joined the cluster: %s", sorted(started))
        if self._claim is not None:
            self._elect(dead)

    def _controller_changed(self, controller: int | None) -> None:
        self._controller = controller
        if controller is None:
            claim = self.zk.elect_controller(self.broker.node_id)
            if claim is not None:
                self._claim = claim
                self._controller = self.broker.node_id
                log.info("this broker is now the controller (epoch %d)", claim.epoch)
                self._elect(set())
        elif controller != self.broker.node_id:
            self._claim = None

    # -- the controller's decisions ------------------------------------------------------
    def _views(self, controller_epoch: int = 0) -> dict[tuple[str, int], PartitionView]:
        return {
            (topic.name, index): PartitionView(
                tuple(state.replicas),
                LeaderAndIsr(state.leader, state.leader_epoch, tuple(state.isr), controller_epoch),
            )
            for topic in self.store.topics.values()
            for index, state in enumerate(topic.partitions)
        }

    def elect_leader(self, topic: Topic, index: int, unclean: bool) -> None:
        """ElectLeaders: the preferred replica if it is in sync (or, unclean, any live
        replica for a leaderless partition), written if the state has not moved on."""
        state = topic.partitions[index]
        live = set(self.brokers)
        current = LeaderAndIsr(state.leader, state.leader_epoch, tuple(state.isr))
        if unclean:
            if state.leader in live:
                raise KafkaError(ErrorCode.ELECTION_NOT_NEEDED, "Leader is live.")
            new = election.elect_offline_leader(state.replicas, current, live, unclean=True)
            missing = ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE
        else:
            if state.leader == state.replicas[0]:
                raise KafkaError(
                    ErrorCode.ELECTION_NOT_NEEDED,
                    "Leader election not needed for topic partition.",
                )
            new = election.elect_preferred_leader(state.replicas, current, live)
            missing = ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE
        if new is None:
            raise KafkaError(missing, f"No eligible leader for {topic.name}-{index}.")
        key = (topic.name, index)
        version = self.zk.update_partition_state(
            topic.name, index, new, self.state_versions.get(key, -1)
        )
        if version < 0:
            raise KafkaError(
                ErrorCode.NOT_CONTROLLER, "The partition state changed meanwhile; retry."
            )
        self.state_versions[key] = version
        topic.partitions[index] = PartitionState(
            new.leader, new.leader_epoch, state.replicas, list(new.isr)
        )
        for listener in self.on_leadership:
            listener(topic, index, version)

    def restore_preferred_leaders(self, imbalance_percentage: int) -> None:
        """As controller: give leadership back to preferred replicas that are in sync."""
        if self._claim is None:
            return
        changes = election.preferred_leader_rebalance(
            self._views(self._claim.epoch), set(self.brokers), imbalance_percentage
        )
        if changes:
            log.info("moving %d partitions back to their preferred leaders", len(changes))
            self._write_states(changes)

    def _elect(self, dead: set[int]) -> None:
        """Leaders for partitions whose leader is gone; dead followers leave ISRs."""
        live = set(self.brokers)
        views = self._views(self._claim.epoch)
        # a new controller did not see the losses before it took over: every leader or ISR
        # member that is not registered now is gone (as Kafka's controller failover does)
        gone = dead | {
            replica
            for view in views.values()
            for replica in (view.state.leader, *view.state.isr)
            if replica not in live
        }
        gone.discard(election.NO_LEADER)
        changes = election.on_brokers_failed(views, gone, live, self.unclean_election)
        for key, new in election.on_brokers_started(views, live, self.unclean_election).items():
            changes.setdefault(key, new)
        self._write_states(changes)

    def _write_states(self, changes: dict[tuple[str, int], LeaderAndIsr]) -> None:
        for (name, index), state in changes.items():
            try:
                version = self.zk.update_partition_state(
                    name, index, state, self.state_versions.get((name, index), -1), self._claim
                )
            except ControllerMoved:
                log.warning("another broker became controller; stopping elections")
                self._claim = None
                return
            if version < 0:
                log.info("state of %s-%d changed meanwhile; re-reading", name, index)
                current = self.zk.get_partition_state(name, index)
                if current is not None:
                    self.state_versions[(name, index)] = current[1]
            else:
                log.info(
                    "%s-%d: leader %d, epoch %d, isr %s",
                    name,
                    index,
                    state.leader,
                    state.leader_epoch,
                    list(state.isr),
                )

    def controlled_shutdown(self) -> None:
        """Move leadership off this broker before it stops (Kafka's controlled shutdown)."""
        live = set(self.brokers) - {self.broker.node_id}
        changes, remaining = election.controlled_shutdown(self._views(), self.broker.node_id, live)
        for (name, index), state in changes.items():
            self.zk.update_partition_state(
                name, index, state, self.state_versions.get((name, index), -1)
            )
        if remaining:
            log.info("still leading %d partitions with no other replica in sync", len(remaining))
