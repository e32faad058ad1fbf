"""Consumer groups: the coordinator APIs and the committed-offsets APIs.

The group state machine lives in :mod:`kbroker.group.coordinator`; this module wires it
to the broker. :class:`GroupService` owns the coordinator, writes its records to
``__consumer_offsets`` (created on first use, as Kafka does), loads them back at
start-up and runs the timer that expires sessions and rebalance phases. The handlers
translate requests of every version to coordinator calls and back; a JoinGroup or
SyncGroup that must wait for the rest of the group awaits a future that the
coordinator's callback resolves.
"""

from __future__ import annotations

import asyncio
import logging

from kbroker.api.coordinator_partitions import CoordinatorPartitions
from kbroker.api.ticker import Ticker
from kbroker.cluster.metadata import Topic
from kbroker.group.coordinator import (
    GroupConfig,
    GroupCoordinator,
    GroupState,
    JoinRequest,
    _join_error,
    _sync_result,
)
from kbroker.group.records import OffsetAndMetadata, partition_for
from kbroker.log.errors import LogError
from kbroker.txn.group_offsets import PendingTxnOffsets, replay
from kbroker.wire.connection import Request
from kbroker.wire.errors import ErrorCode, KafkaError
from kbroker.wire.record import build_batch

log = logging.getLogger("kbroker.groups")

OFFSETS_TOPIC = "__consumer_offsets"
TICK_SECONDS = 0.05
COORDINATOR_GROUP, COORDINATOR_TRANSACTION = 0, 1
# AclOperation bits of a group when no authorizer is configured: READ, DELETE, DESCRIBE.
GROUP_OPERATIONS = sum(1 << op for op in (3, 6, 8))
NOT_REQUESTED = -(2**31)
OFFSET_COMMIT_TIMEOUT_MS = 5000  # offsets.commit.timeout.ms


class GroupService:
    """The broker's group coordinator and its storage in ``__consumer_offsets``."""

    def __init__(self, broker) -> None:
        self.broker = broker
        config = broker.config
        self.coordinator = GroupCoordinator(
            GroupConfig(
                min_session_timeout_ms=config.get_int("group.min.session.timeout.ms"),
                max_session_timeout_ms=config.get_int("group.max.session.timeout.ms"),
                initial_rebalance_delay_ms=config.get_int("group.initial.rebalance.delay.ms"),
                offsets_retention_ms=config.get_int("offsets.retention.minutes") * 60_000,
                offsets_retention_check_interval_ms=config.get_int(
                    "offsets.retention.check.interval.ms"
                ),
                offset_metadata_max_bytes=config.get_int("offset.metadata.max.bytes"),
                max_size=config.get_int("group.max.size"),
            ),
            persist=self._persist,
        )
        self._ticker = Ticker(lambda: self.coordinator.poll(), TICK_SECONDS, "group coordinator")
        self.txn_offsets = PendingTxnOffsets()  # TxnOffsetCommits of open transactions
        self.partitions = CoordinatorPartitions(
            broker, OFFSETS_TOPIC, self._load_partition, self._unload_partition
        )
        self._load()

    # -- the offsets topic -------------------------------------------------------------
    def offsets_topic(self, create: bool = True) -> Topic | None:
        topic = self.broker.controller.store.topics.get(OFFSETS_TOPIC)
        if topic is None and create:
            config = self.broker.config
            live = len(self.broker.controller.live_brokers())
            topic = self.broker.controller.ensure_internal_topic(
                OFFSETS_TOPIC,
                config.get_int("offsets.topic.num.partitions"),
                min(config.get_int("offsets.topic.replication.factor"), live),
                {
                    "cleanup.policy": "compact",
                    "compression.type": "producer",
                    "segment.bytes": config.get("offsets.topic.segment.bytes"),
                },
            )
            log.info("created %s with %d partitions", OFFSETS_TOPIC, len(topic.partitions))
        return topic

    def partition_of(self, group_id: str, topic: Topic) -> int:
        return partition_for(group_id, len(topic.partitions))

    @property
    def track_leadership(self) -> bool:
        return self.partitions.track_leadership

    def check(self, group_id: str) -> ErrorCode:
        """Whether this broker coordinates ``group_id``: NOT_COORDINATOR unless it leads
        (and has loaded) the group's ``__consumer_offsets`` partition."""
        if not self.track_leadership:
            return ErrorCode.NONE
        return self.partitions.ownership(group_id)

    def _load_partition(self, index: int, epoch: int) -> bool:
        """Become the coordinator of the groups of offsets partition ``index``."""
        partition = self.broker.replicas.get(OFFSETS_TOPIC, index)
        if partition is None:
            return False
        plog = partition.log
        name = f"{OFFSETS_TOPIC}-{index}"
        count = self.coordinator.load(
            replay(plog.iter_batches(plog.log_start_offset), self.txn_offsets, name)
        )
        log.info("coordinating the groups of %s (epoch %d): %d loaded", name, epoch, count)
        return True

    def _unload_partition(self, index: int) -> None:
        """Stop coordinating the groups of offsets partition ``index`` (another broker
        leads it now): they are forgotten here, their members rejoin there."""
        topic = self.offsets_topic(create=False)
        if topic is None:
            return
        count = len(topic.partitions)

        def owned(group_id: str) -> bool:
            return partition_for(group_id, count) == index

        removed = self.coordinator.unload(owned)
        self.txn_offsets.drop(owned)
        log.info(
            "no longer coordinating the groups of %s-%d (%d unloaded)",
            OFFSETS_TOPIC,
            index,
            len(removed),
        )

    async def replicated(self, group_id: str, timeout_ms: int) -> ErrorCode:
        """Wait until the group's offsets partition has its writes on the whole ISR
        (Kafka appends offset commits with acks=all)."""
        return await self.partitions.replicated(group_id, timeout_ms)

    def _persist(self, group_id: str, records: list[tuple[bytes, bytes | None]]) -> None:
        topic = self.offsets_topic()
        partition = self.broker.hosted_partition(topic, self.partition_of(group_id, topic))
        batch = bytearray(build_batch([(key, value, None, None) for key, value in records]))
        try:
            partition.log.append(batch, leader_epoch=partition.leader_epoch)
        except LogError as exc:
            code = getattr(exc, "error_code", ErrorCode.UNKNOWN_SERVER_ERROR)
            raise KafkaError(ErrorCode(code), str(exc)) from None
        partition.appended()

    def _load(self) -> None:
        topic = self.offsets_topic(create=False)
        if topic is None:
            return
        self.coordinator.load(self._records(topic))

    def _records(self, topic: Topic):
        for index in range(len(topic.partitions)):
            partition = self.broker.replicas.get(topic.name, index)
            if partition is None:
                continue
            partition_log = partition.log
            batches = partition_log.iter_batches(partition_log.log_start_offset)
            # transactional commits take effect at their COMMIT marker
            yield from replay(batches, self.txn_offsets, f"{topic.name}-{index}")

    # -- the timer -----------------------------------------------------------------------
    def start_timer(self) -> None:
        self._ticker.start()

    def stop_timer(self) -> None:
        self._ticker.stop()


def _service(broker) -> GroupService:
    service = broker.groups
    service.start_timer()
    return service


def _waiter():
    future = asyncio.get_running_loop().create_future()

    def resolve(result: dict) -> None:
        if not future.done():
            future.set_result(result)

    return future, resolve


# -- FindCoordinator -------------------------------------------------------------------
async def find_coordinator(broker, request: Request) -> dict:
    body = request.body
    keys = body["coordinator_keys"] if request.api_version >= 4 else [body["key"]]
    key_type = body["key_type"]
    results = []
    for key in keys:
        entry = {"key": key, "node_id": -1, "host": "", "port": -1, "error_message": None}
        code = ErrorCode.NONE
        if key_type == COORDINATOR_GROUP:
            try:
                topic = _service(broker).offsets_topic()
                state = topic.partitions[broker.groups.partition_of(key, topic)]
                node = next(
                    b for b in broker.controller.live_brokers() if b.node_id == state.leader
                )
                entry.update(node_id=node.node_id, host=node.host, port=node.port)
            except (KafkaError, StopIteration) as exc:
                log.warning("no coordinator for group %r: %s", key, exc)
                code = ErrorCode.COORDINATOR_NOT_AVAILABLE
        elif key_type == COORDINATOR_TRANSACTION:
            try:
                node = broker.transactions.coordinator_node(key)
                entry.update(node_id=node.node_id, host=node.host, port=node.port)
            except KafkaError as exc:
                log.warning("no coordinator for transactional id %r: %s", key, exc)
                code = ErrorCode.COORDINATOR_NOT_AVAILABLE
        else:
            code = ErrorCode.INVALID_REQUEST
            entry["error_message"] = f"Unknown coordinator type {key_type}"
        entry["error_code"] = code
        results.append(entry)
    if request.api_version >= 4:
        return {"coordinators": results}
    first = results[0]
    return {
        "error_code": first["error_code"],
        "error_message": first["error_message"],
        "node_id": first["node_id"],
        "host": first["host"],
        "port": first["port"],
    }


# -- JoinGroup / SyncGroup / Heartbeat / LeaveGroup --------------------------------------
async def join_group(broker, request: Request) -> dict:
    body = request.body
    version = request.api_version
    code = _service(broker).check(body["group_id"])
    if code != ErrorCode.NONE:
        result = _join_error(code, body["member_id"])
        result["protocol_name"] = "" if version < 7 else None
        return result
    future, resolve = _waiter()
    join = JoinRequest(
        group_id=body["group_id"],
        member_id=body["member_id"],
        group_instance_id=body["group_instance_id"],
        client_id=request.client_id or "",
        client_host=request.client_host,
        session_timeout=body["session_timeout_ms"],
        rebalance_timeout=body["rebalance_timeout_ms"] if version >= 1 else -1,
        protocol_type=body["protocol_type"],
        protocols=[(p["name"], p["metadata"]) for p in body["protocols"]],
        require_known_member_id=version >= 4,
    )
    broker.groups.coordinator.join(join, resolve)
    result = await future
    if version < 7 and result["protocol_name"] is None:
        result["protocol_name"] = ""
    return result


async def sync_group(broker, request: Request) -> dict:
    body = request.body
    code = _service(broker).check(body["group_id"])
    if code != ErrorCode.NONE:
        return _sync_result(code)
    future, resolve = _waiter()
    broker.groups.coordinator.sync(
        group_id=body["group_id"],
        generation=body["generation_id"],
        member_id=body["member_id"],
        group_instance_id=body["group_instance_id"],
        protocol_type=body["protocol_type"],
        protocol_name=body["protocol_name"],
        assignments={a["member_id"]: a["assignment"] for a in body["assignments"]},
        callback=resolve,
    )
    result = await future
    service = broker.groups
    if result["error_code"] == ErrorCode.NONE and service.track_leadership:
        # as Kafka, the assignment is answered once the ISR has the group's record, so a
        # coordinator taking over knows the generation its members were given
        code = await service.replicated(body["group_id"], OFFSET_COMMIT_TIMEOUT_MS)
        if code != ErrorCode.NONE:
            return _sync_result(ErrorCode.COORDINATOR_NOT_AVAILABLE)
    return result


async def heartbeat(broker, request: Request) -> dict:
    body = request.body
    code = _service(broker).check(body["group_id"])
    if code == ErrorCode.NONE:
        code = broker.groups.coordinator.heartbeat(
            body["group_id"], body["generation_id"], body["member_id"], body["group_instance_id"]
        )
    return {"error_code": code}


async def leave_group(broker, request: Request) -> dict:
    body = request.body
    if request.api_version >= 3:
        leaving = [(m["member_id"], m["group_instance_id"]) for m in body["members"]]
    else:
        leaving = [(body["member_id"], None)]
    code = _service(broker).check(body["group_id"])
    if code != ErrorCode.NONE:
        return {"error_code": code, "members": []}
    top, errors = broker.groups.coordinator.leave(body["group_id"], leaving)
    if request.api_version < 3:
        if top == ErrorCode.NONE:
            top = errors[0]
        return {"error_code": top}
    return {
        "error_code": top,
        "members": [
            {"member_id": member_id, "group_instance_id": instance_id, "error_code": code}
            for (member_id, instance_id), code in zip(leaving, errors, strict=True)
        ],
    }


# -- OffsetCommit / OffsetFetch / OffsetDelete --------------------------------------------
def _partition_exists(broker, topic: str, partition: int) -> bool:
    found = broker.controller.store.topics.get(topic)
    return found is not None and 0 <= partition < len(found.partitions)


async def offset_commit(broker, request: Request) -> dict:
    body = request.body
    service = _service(broker)
    coordinator = service.coordinator
    errors: dict[tuple[str, int], ErrorCode] = {}
    offsets: dict[tuple[str, int], OffsetAndMetadata] = {}
    not_here = service.check(body["group_id"])
    for topic in body["topics"]:
        for p in topic["partitions"]:
            tp = (topic["name"], p["partition_index"])
            if not_here != ErrorCode.NONE:
                errors[tp] = not_here
            elif not _partition_exists(broker, *tp):
                errors[tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            else:
                offsets[tp] = OffsetAndMetadata(
                    p["committed_offset"], p["committed_leader_epoch"], p["committed_metadata"]
                )
    if offsets:
        errors.update(
            coordinator.commit_offsets(
                body["group_id"],
                body["generation_id_or_member_epoch"],
                body["member_id"],
                body["group_instance_id"],
                offsets,
                body["retention_time_ms"],
            )
        )
        if service.track_leadership and any(c == ErrorCode.NONE for c in errors.values()):
            # answered once the ISR has the commit, so a new coordinator has it too
            code = await service.replicated(body["group_id"], OFFSET_COMMIT_TIMEOUT_MS)
            if code != ErrorCode.NONE:
                code = ErrorCode.COORDINATOR_NOT_AVAILABLE
                errors = {tp: c if c != ErrorCode.NONE else code for tp, c in errors.items()}
    return commit_response(body["topics"], errors)


def commit_response(topics: list[dict], errors: dict[tuple[str, int], ErrorCode]) -> dict:
    """OffsetCommit's (and TxnOffsetCommit's) answer: each requested partition's error."""
    return {
        "topics": [
            {
                "name": topic["name"],
                "partitions": [
                    {
                        "partition_index": p["partition_index"],
                        "error_code": errors[(topic["name"], p["partition_index"])],
                    }
                    for p in topic["partitions"]
                ],
            }
            for topic in topics
        ]
    }


def _fetch_group(coordinator: GroupCoordinator, group_id: str, topics, pending=None) -> list[dict]:
    """``pending``: with require_stable, the TxnOffsetCommits of open transactions."""
    wanted = None
    if topics is not None:
        wanted = [(t["name"], p) for t in topics for p in t["partition_indexes"]]
    found = coordinator.fetch_offsets(group_id, wanted)
    by_topic: dict[str, list[dict]] = {}
    for (topic, partition), value in found.items():
        if pending is not None and pending.has_pending(group_id, (topic, partition)):
            by_topic.setdefault(topic, []).append(
                {
                    "partition_index": partition,
                    "committed_offset": -1,
                    "committed_leader_epoch": -1,
                    "metadata": "",
                    "error_code": ErrorCode.UNSTABLE_OFFSET_COMMIT,
                }
            )
            continue
        by_topic.setdefault(topic, []).append(
            {
                "partition_index": partition,
                "committed_offset": -1 if value is None else value.offset,
                "committed_leader_epoch": -1 if value is None else value.leader_epoch,
                "metadata": "" if value is None else value.metadata,
                "error_code": ErrorCode.NONE,
            }
        )
    return [{"name": name, "partitions": parts} for name, parts in by_topic.items()]


async def offset_fetch(broker, request: Request) -> dict:
    body = request.body
    service = _service(broker)
    coordinator = service.coordinator
    pending = broker.groups.txn_offsets if body["require_stable"] else None
    if request.api_version >= 8:
        results = []
        for group in body["groups"]:
            code = service.check(group["group_id"])
            topics = []
            if code == ErrorCode.NONE:
                topics = _fetch_group(coordinator, group["group_id"], group["topics"], pending)
            results.append({"group_id": group["group_id"], "topics": topics, "error_code": code})
        return {"groups": results}
    topics = body["topics"]
    if topics is None and request.api_version < 2:
        topics = []
    code = service.check(body["group_id"])
    if code != ErrorCode.NONE:
        return {"topics": _error_topics(topics or [], code), "error_code": code}
    return {
        "topics": _fetch_group(coordinator, body["group_id"], topics, pending),
        "error_code": 0,
    }


def _error_topics(topics, code: ErrorCode) -> list[dict]:
    """OffsetFetch v0-1 carry a coordinator error on each partition asked for."""
    return [
        {
            "name": t["name"],
            "partitions": [
                {
                    "partition_index": p,
                    "committed_offset": -1,
                    "committed_leader_epoch": -1,
                    "metadata": "",
                    "error_code": code,
                }
                for p in t["partition_indexes"]
            ],
        }
        for t in topics
    ]


async def offset_delete(broker, request: Request) -> dict:
    body = request.body
    service = _service(broker)
    code = service.check(body["group_id"])
    if code != ErrorCode.NONE:
        return {"error_code": code, "topics": []}
    coordinator = service.coordinator
    wanted = [(t["name"], p["partition_index"]) for t in body["topics"] for p in t["partitions"]]
    known = [tp for tp in wanted if _partition_exists(broker, *tp)]
    top, results = coordinator.delete_offsets(body["group_id"], known)
    if top != ErrorCode.NONE:
        return {"error_code": top, "topics": []}
    return {
        "error_code": ErrorCode.NONE,
        "topics": [
            {
                "name": t["name"],
                "partitions": [
                    {
                        "partition_index": p["partition_index"],
                        "error_code": results.get(
                            (t["name"], p["partition_index"]), ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                        ),
                    }
                    for p in t["partitions"]
                ],
            }
            for t in body["topics"]
        ],
    }


# -- ListGroups / DescribeGroups / DeleteGroups ------------------------------------------
async def list_groups(broker, request: Request) -> dict:
    groups = _service(broker).coordinator.list_groups(request.body["states_filter"])
    return {
        "error_code": ErrorCode.NONE,
        "groups": [
            {
                "group_id": g.group_id,
                "protocol_type": g.protocol_type or "",
                "group_state": g.state.value,
            }
            for g in groups
        ],
    }


def describe_group(coordinator: GroupCoordinator, group_id: str, operations: bool) -> dict:
    """DescribeGroups' answer for one group (Dead and empty for an unknown one)."""
    authorized = GROUP_OPERATIONS if operations else NOT_REQUESTED
    group = coordinator.describe(group_id)
    if group is None:
        return {
            "error_code": ErrorCode.NONE,
            "group_id": group_id,
            "group_state": GroupState.DEAD.value,
            "protocol_type": "",
            "protocol_data": "",
            "members": [],
            "authorized_operations": authorized,
        }
    stable = group.is_(GroupState.STABLE)
    return {
        "error_code": ErrorCode.NONE,
        "group_id": group_id,
        "group_state": group.state.value,
        "protocol_type": group.protocol_type or "",
        "protocol_data": (group.protocol_name or "") if stable else "",
        "members": [
            {
                "member_id": m.member_id,
                "group_instance_id": m.group_instance_id,
                "client_id": m.client_id,
                "client_host": m.client_host,
                "member_metadata": m.metadata(group.protocol_name) if stable else b"",
                "member_assignment": m.assignment if stable else b"",
            }
            for m in group.members.values()
        ],
        "authorized_operations": authorized,
    }


async def describe_groups(broker, request: Request) -> dict:
    body = request.body
    service = _service(broker)
    results = []
    for group_id in body["groups"]:
        operations = body["include_authorized_operations"]
        result = describe_group(service.coordinator, group_id, operations)
        code = service.check(group_id)
        if code != ErrorCode.NONE:
            result.update(error_code=code, group_state="", members=[])
        results.append(result)
    return {"groups": results}


async def delete_groups(broker, request: Request) -> dict:
    names = request.body["groups_names"]
    service = _service(broker)
    elsewhere = {name: service.check(name) for name in names}
    results = service.coordinator.delete_groups(
        [name for name in names if elsewhere[name] == ErrorCode.NONE]
    )
    results.update({name: code for name, code in elsewhere.items() if code != ErrorCode.NONE})
    return {"results": [{"group_id": name, "error_code": results[name]} for name in names]}
