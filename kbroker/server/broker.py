"""The broker: wires configuration, metadata, logs and handlers together.

It is what handlers see as ``broker``: the controller and metadata, the hosted
partitions, effective topic configuration, and the topic auto-creation rule.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from kbroker.api.api_versions import api_ranges
from kbroker.api.dispatch import HANDLERS
from kbroker.api.fetch_sessions import FetchSessionCache
from kbroker.api.groups import GroupService
from kbroker.api.transactions import TransactionService
from kbroker.cluster.controller import EmbeddedController
from kbroker.cluster.fetcher import FetcherManager, FetcherSettings
from kbroker.cluster.metadata import BrokerInfo, MetadataStore, Topic
from kbroker.cluster.replicas import Partition, ReplicaManager
from kbroker.cluster.topics import check_name
from kbroker.config import TOPIC_SETTINGS, BrokerConfig
from kbroker.log.cleaner import LogCleaner
from kbroker.log.config import LogConfig
from kbroker.log.manager import LogManager
from kbroker.txn.producer_state import rebuild_aborted_index
from kbroker.wire.connection import Request
from kbroker.wire.errors import ErrorCode, KafkaError
from kbroker.wire.registry import Registry

log = logging.getLogger("kbroker.broker")

ISR_CHECK_SECONDS = 0.25


class Broker:
    """One broker process's state, shared by all connections."""

    def __init__(self, config: BrokerConfig, registry: Registry | None = None) -> None:
        self.config = config
        self.registry = registry or Registry(keys=set(HANDLERS))
        self.api_ranges = api_ranges(self.registry)
        data_dir = Path(config.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        host, port = config.advertised_listener()
        self.node = BrokerInfo(config.node_id, host, port)
        store = MetadataStore(data_dir, config.get("cluster.id"))
        connect = config.get("zookeeper.connect")
        self.clustered = bool(connect)
        if connect:  # imported here: a single broker never loads the ZooKeeper client
            from kbroker.cluster.zk_controller import ZkController
            from kbroker.cluster.zookeeper import ZkStore

            self.controller = ZkController(
                store,
                self.node,
                ZkStore(connect, config.get_int("zookeeper.session.timeout.ms")),
                config.get_bool("unclean.leader.election.enable"),
            )
            self.controller.on_leadership.append(self._leadership_changed)
        else:
            self.controller = EmbeddedController(store, self.node)
        self.fetch_sessions = FetchSessionCache(
            config.get_int("max.incremental.fetch.session.cache.slots"),
            config.get_int("min.incremental.fetch.session.eviction.ms"),
        )
        self.fetchers = FetcherManager(
            self.registry,
            self.node.node_id,
            FetcherSettings(
                wait_max_ms=config.get_int("replica.fetch.wait.max.ms"),
                min_bytes=config.get_int("replica.fetch.min.bytes"),
                max_bytes=config.get_int("replica.fetch.max.bytes"),
                response_max_bytes=config.get_int("replica.fetch.response.max.bytes"),
                backoff_ms=config.get_int("replica.fetch.backoff.ms"),
            ),
        )
        self._load_dynamic_configs()
        self.logs = LogManager(
            str(data_dir),
            config_for=self._log_config_by_name,
            rebuild_txn_index=rebuild_aborted_index,
        )
        self.logs.startup()
        self.cleaner = LogCleaner(self.logs)
        self.replicas = ReplicaManager(self.logs, self.log_config, self.node.node_id)
        self.controller.on_created.append(self._topic_created)
        self.controller.on_deleted.append(self.replicas.remove_topic)
        self.controller.on_partitions_added.append(self.replicas.open_topic)
        for topic in self.controller.store.topics.values():
            self.replicas.open_topic(topic)
        # (topic, index, leading, leader epoch): after each leadership change (cluster mode)
        self.partition_listeners: list = []
        # consumer groups and committed offsets, loaded back from __consumer_offsets
        self.groups = GroupService(self)
        # transactional ids and their state, loaded back from __transaction_state
        self.transactions = TransactionService(self)

    async def start(self) -> None:
        """Join the cluster (cluster mode): register, load the topics, follow leaders."""
        if self.clustered:
            wait = self.config.get_int("zookeeper.session.timeout.ms") / 1000 + 5
            self.controller.start(asyncio.get_running_loop(), wait)
            self._isr_task = asyncio.create_task(self._maintain_isrs())

    def _topic_created(self, topic: Topic) -> None:
        self.replicas.open_topic(topic)
        if self.clustered:
            for index in range(len(topic.partitions)):
                version = self.controller.state_versions.get((topic.name, index), 0)
                self._leadership_changed(topic, index, version)

    def _leadership_changed(self, topic: Topic, index: int, version: int) -> None:
        """Lead, or follow the new leader, as the partition's state now says."""
        partition = self.replicas.get(topic.name, index)
        if partition is None or partition.topic is not topic:
            return
        state = topic.partitions[index]
        if state.leader == self.node.node_id:
            self.fetchers.unfollow((topic.name, index))
            partition.make_leader(version)
        else:
            partition.make_follower()
            leader = self.controller.brokers.get(state.leader)
            if leader is None:
                self.fetchers.unfollow((topic.name, index))
            else:
                self.fetchers.follow(partition, leader)
        # the coordinators load or unload the groups/transactions of internal partitions
        for listener in self.partition_listeners:
            try:
                listener(topic.name, index, partition.leader is not None, state.leader_epoch)
            except Exception:
                log.exception("leadership listener failed for %s-%d", topic.name, index)

    async def _maintain_isrs(self) -> None:
        """Leaders propose ISR changes: lagging followers out, caught-up ones back in. The
        controller also moves leadership back to preferred replicas now and then
        (``auto.leader.rebalance.enable``)."""
        lag = self.config.get_int("replica.lag.time.max.ms")
        rebalance_every = self.config.get_int("leader.imbalance.check.interval.seconds")
        loop = asyncio.get_running_loop()
        next_rebalance = loop.time() + rebalance_every
        while True:
            await asyncio.sleep(ISR_CHECK_SECONDS)
            if loop.time() >= next_rebalance:
                next_rebalance = loop.time() + rebalance_every
                if self.config.get_bool("auto.leader.rebalance.enable"):
                    self.controller.restore_preferred_leaders(
                        self.config.get_int("leader.imbalance.per.broker.percentage")
                    )
            for partition in list(self.replicas.partitions.values()):
                try:
                    partition.maintain_isr(lag, self.controller.record_isr)
                except Exception:
                    log.exception(
                        "ISR update of %s-%d failed", partition.topic.name, partition.index
                    )

    async def controlled_shutdown(self) -> None:
        """Hand leadership to other in-sync replicas before stopping (cluster mode)."""
        if self.clustered and self.config.get_bool("controlled.shutdown.enable"):
            self.controller.controlled_shutdown()
            await asyncio.sleep(0.2)  # let the new leaders' watches fire

    def advertise(self, host: str, port: int) -> None:
        """Set the address clients are told to use (once the real bound port is known)."""
        self.node = BrokerInfo(self.node.node_id, host, port, self.node.rack)
        self.controller.broker = self.node

    def _load_dynamic_configs(self) -> None:
        stored = self.controller.store.broker_configs
        self.config.dynamic_default = dict(stored.get("", {}))
        self.config.dynamic = dict(stored.get(str(self.config.node_id), {}))

    def apply_topic_configs(self, topic: Topic) -> None:
        """Apply a topic's changed configs to its open logs at once (AlterConfigs)."""
        config = self.log_config(topic)
        for index in range(len(topic.partitions)):
            partition = self.replicas.get(topic.name, index)
            if partition is not None:
                partition.log.update_config(config)

    def apply_broker_configs(self) -> None:
        """Reload the dynamic broker configs and apply them to every log."""
        self._load_dynamic_configs()
        for topic in list(self.controller.store.topics.values()):
            self.apply_topic_configs(topic)

    def topic_config(self, topic: Topic, name: str) -> str | None:
        """A topic's effective value of a topic-level key: its override, else the broker's."""
        value = topic.configs.get(name)
        return value if value is not None else self.config.topic_default(name)

    def log_config(self, topic: Topic) -> LogConfig:
        """The log settings of a topic: its overrides on top of the broker's defaults."""
        return LogConfig().with_overrides(
            {name: self.topic_config(topic, name) for name in TOPIC_SETTINGS}
        )

    def _log_config_by_name(self, name: str) -> LogConfig:
        topic = self.controller.store.topics.get(name)
        return LogConfig() if topic is None else self.log_config(topic)

    def auto_create(self, name: str, allowed: bool) -> tuple[Topic | None, ErrorCode]:
        """Create a missing topic if the request and ``auto.create.topics.enable`` allow."""
        try:
            check_name(name)
        except KafkaError as exc:
            return None, exc.code
        if not (allowed and self.config.get_bool("auto.create.topics.enable")):
            return None, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        try:
            topic = self.controller.create_topic(
                name,
                self.config.get_int("num.partitions"),
                self.config.get_int("default.replication.factor"),
            )
        except KafkaError as exc:
            log.warning("auto-creating topic %r failed: %s", name, exc)
            return None, exc.code
        log.info("auto-created topic %r with %d partitions", name, len(topic.partitions))
        return topic, ErrorCode.NONE

    def hosted_partition(self, topic: Topic, index: int) -> Partition:
        """The partition if this broker leads it (clients and followers talk to leaders)."""
        if not 0 <= index < len(topic.partitions):
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        partition = self.replicas.get(topic.name, index)
        if partition is None or partition.leader is None:
            raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER)
        return partition

    def hosted_partition_by_name(self, name: str, index: int) -> Partition:
        topic = self.controller.store.topics.get(name)
        if topic is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        return self.hosted_partition(topic, index)

    def partition_for_produce(self, name: str, index: int) -> Partition:
        """The partition to append to, auto-creating the topic as Kafka's Metadata would."""
        topic = self.controller.store.topics.get(name)
        if topic is None:
            topic, code = self.auto_create(name, True)
            if topic is None:
                raise KafkaError(code)
        return self.hosted_partition(topic, index)

    async def handle(self, request: Request) -> dict | None:
        return await HANDLERS[request.api_key](self, request)

    async def stop_replication(self) -> None:
        await self.fetchers.stop()
        if self.clustered:
            self._isr_task.cancel()
            self.controller.stop()

    def close(self) -> None:
        """Flush and close every log and write the checkpoints."""
        self.groups.stop_timer()
        self.transactions.stop_timer()
        self.logs.shutdown()
