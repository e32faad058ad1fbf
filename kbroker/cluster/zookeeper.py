"""The cluster's state in ZooKeeper, in Kafka's own znode layout and JSON (via kazoo).

This is the only module that talks to ZooKeeper. It is a thin, blocking store: each
method is one read, one write or one multi-op, and watches call back on kazoo's thread
(hand the event to the event loop, e.g. with ``loop.call_soon_threadsafe``, and do not
block there). The layout is Kafka's, so its tools and anyone who knows Kafka can read it::

    /cluster/id                                  {"version":"1","id":"<base64url uuid>"}
    /brokers/ids/<id>              (ephemeral)   {"version":5,"host":..,"port":..,...}
    /controller                    (ephemeral)   {"version":2,"brokerid":N,"timestamp":".."}
    /controller_epoch                            "N"
    /brokers/topics/<t>                          {"version":3,"partitions":{"0":[1,2]},..}
    /brokers/topics/<t>/partitions/<p>/state     {"controller_epoch":..,"leader":..,..}
    /config/topics/<t>                           {"version":1,"config":{...}}
    /config/changes/config_change_<seq>          {"version":2,"entity_path":"topics/<t>"}
    /admin/delete_topics/<t>
    /latest_producer_id_block                    {"version":1,"broker":..,"block_start":..}

A ``zookeeper.connect`` string may end in a chroot (``host:port,host:port/kafka``); the
chroot is created when missing, as Kafka does.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (
    BadVersionError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    RolledBackError,
)
from kazoo.recipe.watchers import ChildrenWatch, DataWatch

from kbroker.cluster.election import LeaderAndIsr

BROKER_IDS = "/brokers/ids"
BROKER_TOPICS = "/brokers/topics"
CONTROLLER = "/controller"
CONTROLLER_EPOCH = "/controller_epoch"
CONFIG_TOPICS = "/config/topics"
CONFIG_CHANGES = "/config/changes"
DELETE_TOPICS = "/admin/delete_topics"
CLUSTER_ID = "/cluster/id"
PRODUCER_ID_BLOCK = "/latest_producer_id_block"
PRODUCER_ID_BLOCK_SIZE = 1000

# the persistent paths Kafka creates at start-up (those we use)
PERSISTENT_PATHS = (
    BROKER_IDS,
    BROKER_TOPICS,
    "/brokers/seqid",
    CONFIG_TOPICS,
    CONFIG_CHANGES,
    "/config/brokers",
    "/config/clients",
    "/config/users",
    DELETE_TOPICS,
    "/isr_change_notification",
    PRODUCER_ID_BLOCK,
)


class ZkStoreError(Exception):
    """A ZooKeeper operation that cannot succeed as asked."""


class NodeExists(ZkStoreError):
    """The znode (a broker id, a topic, the controller) is already there."""


class ControllerMoved(ZkStoreError):
    """The controller epoch changed: this broker is no longer the controller."""


def split_connect(connect: str) -> tuple[str, str]:
    """``"h1:2181,h2:2181/kafka/a"`` -> (``"h1:2181,h2:2181"``, ``"/kafka/a"``); no chroot
    gives ``""``."""
    hosts, slash, chroot = connect.partition("/")
    chroot = ("/" + chroot).rstrip("/") if slash else ""
    return hosts, chroot


def _now_ms() -> str:
    return str(int(time.time() * 1000))


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _loads(data: bytes | None) -> dict | None:
    if not data:
        return None
    return json.loads(data)


def encode_topic_id(topic_id: uuid.UUID) -> str:
    """Kafka's Uuid.toString: base64url of the 16 bytes, without padding."""
    return base64.urlsafe_b64encode(topic_id.bytes).rstrip(b"=").decode()


def decode_topic_id(text: str) -> uuid.UUID:
    return uuid.UUID(bytes=base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


# --- records --------------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerRegistration:
    """``/brokers/ids/<id>``: how to reach a broker (Kafka's version 5 JSON)."""

    broker_id: int
    host: str
    port: int
    rack: str | None = None
    endpoints: tuple[str, ...] = ()
    timestamp: str = ""
    listener_security_protocol_map: Mapping[str, str] = field(
        default_factory=lambda: {"PLAINTEXT": "PLAINTEXT"}
    )

    def to_json(self) -> bytes:
        endpoints = list(self.endpoints) or [f"PLAINTEXT://{self.host}:{self.port}"]
        return _dumps(
            {
                "version": 5,
                "host": self.host,
                "port": self.port,
                "endpoints": endpoints,
                "jmx_port": -1,
                "timestamp": self.timestamp or _now_ms(),
                "listener_security_protocol_map": dict(self.listener_security_protocol_map),
                "rack": self.rack,
                "features": {},
            }
        )

    @classmethod
    def from_json(cls, broker_id: int, data: bytes) -> BrokerRegistration:
        doc = json.loads(data)
        endpoints = tuple(doc.get("endpoints") or ())
        host, port = doc.get("host"), doc.get("port", -1)
        if (not host or port in (None, -1)) and endpoints:
            # host/port are null when the first listener is not PLAINTEXT
            address = endpoints[0].split("://", 1)[-1]
            host, _, port_text = address.rpartition(":")
            port = int(port_text)
        return cls(
            broker_id=broker_id,
            host=host.strip("[]") if host else "",
            port=int(port),
            rack=doc.get("rack"),
            endpoints=endpoints,
            timestamp=str(doc.get("timestamp", "")),
            listener_security_protocol_map=doc.get("listener_security_protocol_map")
            or {"PLAINTEXT": "PLAINTEXT"},
        )


@dataclass(frozen=True)
class TopicAssignment:
    """``/brokers/topics/<t>``: a topic's partitions and their replicas, and its id."""

    name: str
    partitions: Mapping[int, tuple[int, ...]]
    topic_id: uuid.UUID | None = None
    adding_replicas: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    removing_replicas: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    version: int = -1  # the znode's version when read

    def to_json(self) -> bytes:
        doc: dict[str, object] = {
            "version": 3,
            "partitions": {str(p): list(r) for p, r in sorted(self.partitions.items())},
            "adding_replicas": {str(p): list(r) for p, r in self.adding_replicas.items()},
            "removing_replicas": {str(p): list(r) for p, r in self.removing_replicas.items()},
        }
        if self.topic_id is not None:
            doc["topic_id"] = encode_topic_id(self.topic_id)
        else:
            doc["version"] = 2
        return _dumps(doc)

    @classmethod
    def from_json(cls, name: str, data: bytes, version: int = -1) -> TopicAssignment:
        doc = json.loads(data)

        def replicas(section: dict | None) -> dict[int, tuple[int, ...]]:
            return {int(p): tuple(r) for p, r in (section or {}).items()}

        topic_id = doc.get("topic_id")
        return cls(
            name=name,
            partitions=dict(sorted(replicas(doc.get("partitions")).items())),
            topic_id=decode_topic_id(topic_id) if topic_id else None,
            adding_replicas=replicas(doc.get("adding_replicas")),
            removing_replicas=replicas(doc.get("removing_replicas")),
            version=version,
        )


def encode_partition_state(state: LeaderAndIsr) -> bytes:
    return _dumps(
        {
            "controller_epoch": state.controller_epoch,
            "leader": state.leader,
            "version": 1,
            "leader_epoch": state.leader_epoch,
            "isr": list(state.isr),
        }
    )


def decode_partition_state(data: bytes) -> LeaderAndIsr:
    doc = json.loads(data)
    return LeaderAndIsr(
        leader=doc["leader"],
        leader_epoch=doc["leader_epoch"],
        isr=tuple(doc["isr"]),
        controller_epoch=doc.get("controller_epoch", 0),
    )


@dataclass(frozen=True)
class ControllerClaim:
    """This broker won the controller election at ``epoch``; ``epoch_version`` is the
    version of ``/controller_epoch`` that fences its writes."""

    broker_id: int
    epoch: int
    epoch_version: int


# --- the store ------------------------------------------------------------------------


def _partition_path(topic: str, partition: int) -> str:
    return f"{BROKER_TOPICS}/{topic}/partitions/{partition}"


def _state_path(topic: str, partition: int) -> str:
    return _partition_path(topic, partition) + "/state"


class ZkStore:
    """Kafka's ZooKeeper data, read and written through one kazoo session."""

    def __init__(
        self,
        connect: str,
        session_timeout_ms: int = 18_000,
        connection_timeout_ms: int | None = None,
    ) -> None:
        self.connect = connect
        self.hosts, self.chroot = split_connect(connect)
        self.session_timeout_ms = session_timeout_ms
        self.connection_timeout_ms = connection_timeout_ms or session_timeout_ms
        self.client = KazooClient(hosts=connect, timeout=session_timeout_ms / 1000)
        self._session_callbacks: list[Callable[[], None]] = []
        self._state_callbacks: list[Callable[[str], None]] = []
        self._lost = False
        self.client.add_listener(self._on_state)

    # --- session ----------------------------------------------------------------------

    def start(self) -> None:
        """Connect (creating the chroot if missing) and create Kafka's persistent paths."""
        timeout = self.connection_timeout_ms / 1000
        if self.chroot:
            bootstrap = KazooClient(hosts=self.hosts, timeout=self.session_timeout_ms / 1000)
            bootstrap.start(timeout=timeout)
            try:
                bootstrap.ensure_path(self.chroot)
            finally:
                bootstrap.stop()
                bootstrap.close()
        self.client.start(timeout=timeout)
        for path in PERSISTENT_PATHS:
            self.client.ensure_path(path)

    def close(self) -> None:
        """End the session: this broker's ephemeral znodes go at once."""
        self.client.stop()
        self.client.close()

    @property
    def session_id(self) -> int | None:
        session = self.client.client_id
        return session[0] if session else None

    def on_state_change(self, callback: Callable[[str], None]) -> None:
        """``callback("CONNECTED" | "SUSPENDED" | "LOST")``, on kazoo's connection thread:
        return at once."""
        self._state_callbacks.append(callback)

    def on_new_session(self, callback: Callable[[], None]) -> None:
        """``callback()`` after the session expired and a new one began: ephemeral znodes
        (registration, controller) are gone and must be created again. Runs on a worker
        thread, so it may call this store."""
        self._session_callbacks.append(callback)

    def _on_state(self, state: str) -> None:
        for callback in self._state_callbacks:
            callback(str(state))
        if state == KazooState.LOST:
            self._lost = True
        elif state == KazooState.CONNECTED and self._lost:
            self._lost = False
            for callback in self._session_callbacks:
                self.client.handler.spawn(callback)

    # --- cluster id -------------------------------------------------------------------

    def get_or_create_cluster_id(self, proposed: str) -> str:
        """The cluster id, creating ``/cluster/id`` with ``proposed`` if there is none."""
        try:
            self.client.create(CLUSTER_ID, _dumps({"version": "1", "id": proposed}), makepath=True)
            return proposed
        except NodeExistsError:
            data, _ = self.client.get(CLUSTER_ID)
            return json.loads(data)["id"]

    # --- brokers ----------------------------------------------------------------------

    def register_broker(self, registration: BrokerRegistration, wait_s: float = 0.0) -> None:
        """Create the ephemeral ``/brokers/ids/<id>``.

        If another session holds it (this broker's previous life, not yet expired), wait up
        to ``wait_s`` for it to go, then raise :class:`NodeExists`. Our own session's znode
        counts as registered.
        """
        path = f"{BROKER_IDS}/{registration.broker_id}"
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.client.create(path, registration.to_json(), ephemeral=True)
                return
            except NodeExistsError:
                gone = threading.Event()
                stat = self.client.exists(path, watch=lambda _event, gone=gone: gone.set())
                if stat is None:
                    continue
                if stat.ephemeralOwner == self.session_id:
                    self.client.set(path, registration.to_json())
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not gone.wait(remaining):
                    raise NodeExists(
                        f"broker id {registration.broker_id} is registered by another "
                        f"session (0x{stat.ephemeralOwner:x})"
                    ) from None

    def deregister_broker(self, broker_id: int) -> None:
        try:
            self.client.delete(f"{BROKER_IDS}/{broker_id}")
        except NoNodeError:
            pass

    def broker_ids(self) -> list[int]:
        return sorted(int(child) for child in self.client.get_children(BROKER_IDS))

    def get_broker(self, broker_id: int) -> BrokerRegistration | None:
        try:
            data, _ = self.client.get(f"{BROKER_IDS}/{broker_id}")
        except NoNodeError:
            return None
        return BrokerRegistration.from_json(broker_id, data)

    def get_brokers(self) -> dict[int, BrokerRegistration]:
        brokers = {}
        for broker_id in self.broker_ids():
            registration = self.get_broker(broker_id)
            if registration is not None:
                brokers[broker_id] = registration
        return brokers

    def watch_brokers(self, callback: Callable[[list[int]], None]) -> None:
        """``callback(sorted live broker ids)`` now and on every change."""
        ChildrenWatch(
            self.client, BROKER_IDS, lambda children: callback(sorted(int(c) for c in children))
        )

    # --- controller -------------------------------------------------------------------

    def get_controller(self) -> int | None:
        try:
            data, _ = self.client.get(CONTROLLER)
        except NoNodeError:
            return None
        return json.loads(data)["brokerid"]

    def get_controller_epoch(self) -> tuple[int, int]:
        """(epoch, znode version) of ``/controller_epoch``; (0, -1) before any election."""
        try:
            data, stat = self.client.get(CONTROLLER_EPOCH)
        except NoNodeError:
            return 0, -1
        return int(data or b"0"), stat.version

    def elect_controller(self, broker_id: int) -> ControllerClaim | None:
        """Try to become the controller: create the ephemeral ``/controller`` and bump
        ``/controller_epoch`` in one multi-op (Kafka's
        registerControllerAndIncrementControllerEpoch). None if another broker is it."""
        while True:
            epoch, version = self.get_controller_epoch()
            if version < 0:
                try:
                    self.client.create(CONTROLLER_EPOCH, b"0")
                except NodeExistsError:
                    pass
                continue
            tx = self.client.transaction()
            tx.create(
                CONTROLLER,
                _dumps({"version": 2, "brokerid": broker_id, "timestamp": _now_ms()}),
                ephemeral=True,
            )
            tx.set_data(CONTROLLER_EPOCH, str(epoch + 1).encode(), version=version)
            try:
                results = _commit(tx)
            except NodeExistsError:
                return None
            except BadVersionError:
                continue  # another broker bumped the epoch between our read and write
            return ControllerClaim(broker_id, epoch + 1, results[1].version)

    def resign_controller(self, claim: ControllerClaim) -> None:
        """Delete ``/controller`` if this claim still holds it."""
        tx = self.client.transaction()
        tx.check(CONTROLLER_EPOCH, claim.epoch_version)
        tx.delete(CONTROLLER)
        try:
            _commit(tx)
        except (BadVersionError, NoNodeError):
            pass

    def watch_controller(self, callback: Callable[[int | None], None]) -> None:
        """``callback(controller broker id or None)`` now and whenever it changes."""

        def changed(data: bytes | None, _stat: object) -> None:
            doc = _loads(data)
            callback(doc["brokerid"] if doc else None)

        DataWatch(self.client, CONTROLLER, changed)

    # --- topics -----------------------------------------------------------------------

    def topic_names(self) -> list[str]:
        return sorted(self.client.get_children(BROKER_TOPICS))

    def watch_topics(self, callback: Callable[[list[str]], None]) -> None:
        """``callback(sorted topic names)`` now and whenever topics come or go."""
        ChildrenWatch(self.client, BROKER_TOPICS, lambda children: callback(sorted(children)))

    def create_topic(
        self,
        name: str,
        partitions: Mapping[int, Iterable[int]],
        config: Mapping[str, str] | None = None,
        topic_id: uuid.UUID | None = None,
    ) -> TopicAssignment:
        """Write a new topic's config then its assignment, as Kafka's AdminZkClient does;
        raises :class:`NodeExists` if the topic exists. Partition states are the
        controller's to create."""
        assignment = TopicAssignment(
            name,
            {p: tuple(r) for p, r in sorted(partitions.items())},
            topic_id or uuid.uuid4(),
        )
        if self.client.exists(f"{BROKER_TOPICS}/{name}"):
            raise NodeExists(f"Topic '{name}' already exists.")
        self.set_topic_config(name, config or {}, notify=False)
        try:
            self.client.create(f"{BROKER_TOPICS}/{name}", assignment.to_json())
        except NodeExistsError:
            raise NodeExists(f"Topic '{name}' already exists.") from None
        return TopicAssignment(
            assignment.name, assignment.partitions, assignment.topic_id, version=0
        )

    def get_topic(self, name: str) -> TopicAssignment | None:
        try:
            data, stat = self.client.get(f"{BROKER_TOPICS}/{name}")
        except NoNodeError:
            return None
        return TopicAssignment.from_json(name, data, stat.version)

    def set_topic_assignment(self, assignment: TopicAssignment, expected_version: int) -> int:
        """Rewrite a topic's assignment (added partitions) if still at
        ``expected_version``; returns the new version, or -1 if it changed meanwhile."""
        try:
            stat = self.client.set(
                f"{BROKER_TOPICS}/{assignment.name}", assignment.to_json(), expected_version
            )
        except (BadVersionError, NoNodeError):
            return -1
        return stat.version

    def watch_topic(self, name: str, callback: Callable[[TopicAssignment | None], None]) -> None:
        """``callback(assignment or None)`` now and whenever the topic's znode changes."""

        def changed(data: bytes | None, stat: object) -> bool | None:
            if data is None:
                callback(None)
                return False  # deleted: stop watching
            callback(TopicAssignment.from_json(name, data, stat.version))  # type: ignore[attr-defined]
            return None

        DataWatch(self.client, f"{BROKER_TOPICS}/{name}", changed)

    def get_topic_config(self, name: str) -> dict[str, str]:
        try:
            data, _ = self.client.get(f"{CONFIG_TOPICS}/{name}")
        except NoNodeError:
            return {}
        doc = _loads(data)
        return dict(doc.get("config") or {}) if doc else {}

    def set_topic_config(self, name: str, config: Mapping[str, str], notify: bool = True) -> None:
        """Write ``/config/topics/<t>`` and (``notify``) a ``/config/changes`` entry."""
        path = f"{CONFIG_TOPICS}/{name}"
        data = _dumps({"version": 1, "config": dict(config)})
        try:
            self.client.set(path, data)
        except NoNodeError:
            try:
                self.client.create(path, data, makepath=True)
            except NodeExistsError:
                self.client.set(path, data)
        if notify:
            self.client.create(
                f"{CONFIG_CHANGES}/config_change_",
                _dumps({"version": 2, "entity_path": f"topics/{name}"}),
                sequence=True,
            )

    def watch_config_changes(self, callback: Callable[[list[str]], None]) -> None:
        """``callback(sorted notification names)`` now and as notifications are added; read
        each with :meth:`get_config_change` (Kafka's entity path, e.g. ``topics/t``)."""
        ChildrenWatch(self.client, CONFIG_CHANGES, lambda children: callback(sorted(children)))

    def get_config_change(self, name: str) -> str | None:
        try:
            data, _ = self.client.get(f"{CONFIG_CHANGES}/{name}")
        except NoNodeError:
            return None
        doc = _loads(data)
        return doc.get("entity_path") if doc else None

    def mark_topic_for_deletion(self, name: str) -> None:
        """Ask the controller to delete the topic (``/admin/delete_topics/<t>``)."""
        try:
            self.client.create(f"{DELETE_TOPICS}/{name}")
        except NodeExistsError:
            pass

    def topics_marked_for_deletion(self) -> list[str]:
        return sorted(self.client.get_children(DELETE_TOPICS))

    def watch_topic_deletions(self, callback: Callable[[list[str]], None]) -> None:
        ChildrenWatch(self.client, DELETE_TOPICS, lambda children: callback(sorted(children)))

    def delete_topic(self, name: str) -> None:
        """The controller's last step: remove the topic's znodes, config and mark."""
        for path in (
            f"{BROKER_TOPICS}/{name}",
            f"{CONFIG_TOPICS}/{name}",
            f"{DELETE_TOPICS}/{name}",
        ):
            while True:
                try:
                    self.client.delete(path, recursive=True)
                    break
                except NoNodeError:
                    break
                except NotEmptyError:
                    continue  # a child appeared under us: delete again

    # --- partition states -------------------------------------------------------------

    def create_partition_states(
        self,
        topic: str,
        states: Mapping[int, LeaderAndIsr],
        fence: ControllerClaim | None = None,
    ) -> dict[int, int]:
        """Create the state znodes of new partitions in one multi-op (fenced by the
        controller epoch when ``fence`` is given); returns partition -> version (0).
        Raises :class:`NodeExists` if one exists, :class:`ControllerMoved` if fenced."""
        self.client.ensure_path(f"{BROKER_TOPICS}/{topic}/partitions")
        tx = self.client.transaction()
        if fence is not None:
            tx.check(CONTROLLER_EPOCH, fence.epoch_version)
        for partition, state in sorted(states.items()):
            if not self.client.exists(_partition_path(topic, partition)):
                tx.create(_partition_path(topic, partition))
            tx.create(_state_path(topic, partition), encode_partition_state(state))
        try:
            _commit(tx)
        except BadVersionError:
            raise ControllerMoved(f"controller epoch moved past {fence}") from None
        except NodeExistsError:
            raise NodeExists(f"partition state of {topic} exists") from None
        return {partition: 0 for partition in states}

    def get_partition_state(self, topic: str, partition: int) -> tuple[LeaderAndIsr, int] | None:
        """(state, znode version), or None if the partition has no state yet."""
        try:
            data, stat = self.client.get(_state_path(topic, partition))
        except NoNodeError:
            return None
        return decode_partition_state(data), stat.version

    def get_partition_states(self, topic: str) -> dict[int, tuple[LeaderAndIsr, int]]:
        try:
            children = self.client.get_children(f"{BROKER_TOPICS}/{topic}/partitions")
        except NoNodeError:
            return {}
        states = {}
        for child in children:
            found = self.get_partition_state(topic, int(child))
            if found is not None:
                states[int(child)] = found
        return dict(sorted(states.items()))

    def update_partition_state(
        self,
        topic: str,
        partition: int,
        state: LeaderAndIsr,
        expected_version: int,
        fence: ControllerClaim | None = None,
    ) -> int:
        """Write a partition's state if its znode is still at ``expected_version`` (and,
        with ``fence``, the controller epoch unchanged). Returns the new version, or -1 if
        the state changed meanwhile (Kafka's conditionalUpdatePath). Raises
        :class:`ControllerMoved` if the fence failed."""
        path = _state_path(topic, partition)
        data = encode_partition_state(state)
        if fence is None:
            try:
                return self.client.set(path, data, expected_version).version
            except (BadVersionError, NoNodeError):
                return -1
        tx = self.client.transaction()
        tx.check(CONTROLLER_EPOCH, fence.epoch_version)
        tx.set_data(path, data, expected_version)
        try:
            results = self._commit_fenced(tx, fence)
        except (BadVersionError, NoNodeError):
            return -1
        return results[1].version

    def _commit_fenced(self, tx, fence: ControllerClaim) -> list:
        try:
            return _commit(tx)
        except BadVersionError:
            # which check failed? the epoch's, or the data's
            _, version = self.get_controller_epoch()
            if version != fence.epoch_version:
                raise ControllerMoved(f"controller epoch moved past {fence.epoch}") from None
            raise

    def watch_partition_state(
        self,
        topic: str,
        partition: int,
        callback: Callable[[LeaderAndIsr | None, int], None],
    ) -> Callable[[], None]:
        """``callback(state or None, version)`` now and on every change (None and -1 while
        the znode is absent). Returns a function that stops the watch."""
        stopped = threading.Event()

        def changed(data: bytes | None, stat: object) -> bool | None:
            if stopped.is_set():
                return False
            if data is None or stat is None:
                callback(None, -1)
            else:
                callback(decode_partition_state(data), stat.version)  # type: ignore[attr-defined]
            return None

        DataWatch(self.client, _state_path(topic, partition), changed)
        return stopped.set

    # --- producer ids -----------------------------------------------------------------

    def allocate_producer_id_block(
        self, broker_id: int, block_size: int = PRODUCER_ID_BLOCK_SIZE
    ) -> tuple[int, int]:
        """Claim the next block of producer ids (first, last), Kafka's compare-and-set on
        ``/latest_producer_id_block``."""
        while True:
            try:
                data, stat = self.client.get(PRODUCER_ID_BLOCK)
            except NoNodeError:
                try:
                    self.client.create(PRODUCER_ID_BLOCK, b"")
                except NodeExistsError:
                    pass
                continue
            doc = _loads(data)
            start = int(doc["block_end"]) + 1 if doc else 0
            end = start + block_size - 1
            block = {
                "version": 1,
                "broker": broker_id,
                "block_start": str(start),
                "block_end": str(end),
            }
            try:
                self.client.set(PRODUCER_ID_BLOCK, _dumps(block), stat.version)
            except BadVersionError:
                continue
            return start, end


def _commit(tx) -> list:
    """Commit a kazoo transaction; raise the failing operation's error."""
    results = tx.commit()
    for result in results:
        if isinstance(result, Exception) and not isinstance(result, RolledBackError):
            raise result
    return results
