"""Transactions: the coordinator APIs, transaction markers, and their storage.

:class:`TransactionService` owns the sans-IO :class:`TransactionCoordinator`, writes its
records to ``__transaction_state`` (created on first use, compacted, in Kafka's record
format; a transactional id's partition is ``abs(hashCode(id)) %
transaction.state.log.num.partitions`` as in Kafka), loads them back at start-up and
runs the timer that aborts transactions past ``transaction.timeout.ms``. It writes the
COMMIT/ABORT markers itself to the partitions this broker leads; the WriteTxnMarkers
handler does the same for a coordinator that asks.
"""

from __future__ import annotations

import asyncio
import logging

from kbroker.api.coordinator_partitions import CoordinatorPartitions, await_replicated
from kbroker.api.groups import commit_response
from kbroker.api.ticker import Ticker
from kbroker.cluster.metadata import BrokerInfo, Topic
from kbroker.cluster.peer import PeerConnection, PeerError
from kbroker.group.coordinator import Group
from kbroker.group.records import OffsetAndMetadata, partition_for
from kbroker.log.errors import LogError
from kbroker.txn.coordinator import (
    MARKER_PENDING,
    TransactionCoordinator,
    TxnConfig,
    TxnState,
)
from kbroker.txn.group_offsets import PendingTxnOffsets
from kbroker.txn.records import txn_key
from kbroker.wire.connection import Request
from kbroker.wire.errors import ErrorCode, KafkaError
from kbroker.wire.record import build_batch, decode_records, end_txn_marker
from kbroker.wire.records import split_batches

log = logging.getLogger("kbroker.transactions")

TXN_TOPIC = "__transaction_state"
OFFSETS_TOPIC = "__consumer_offsets"
TICK_SECONDS = 0.1
WRITE_TXN_MARKERS = 27
REPLICATION_TIMEOUT_MS = 5000  # for the coordinator's writes to reach the ISR
MARKER_RETRY_SECONDS = 0.5  # a marker another broker did not write is sent again after this
END_TXN_WAIT_SECONDS = 3.0  # EndTxn waits this long for the markers before answering


def _append(partition, batch: bytes):
    """Append a broker-built batch to a hosted partition; LogError -> KafkaError."""
    try:
        appended = partition.log.append(bytearray(batch), leader_epoch=partition.leader_epoch)
    except LogError as exc:
        code = getattr(exc, "error_code", ErrorCode.UNKNOWN_SERVER_ERROR)
        raise KafkaError(ErrorCode(code), str(exc)) from None
    return appended


def write_marker(
    broker, topic: str, index: int, producer_id: int, epoch: int, commit: bool, coord_epoch: int
) -> None:
    """Write one COMMIT/ABORT control batch to a partition this broker hosts."""
    partition = broker.hosted_partition_by_name(topic, index)
    partition.producers.check_marker(producer_id, epoch, coord_epoch)
    key, value = end_txn_marker(commit, coord_epoch)
    batch = build_batch(
        [(key, value, None, None)],
        producer_id=producer_id,
        producer_epoch=epoch,
        transactional=True,
        control=True,
    )
    appended = _append(partition, batch)
    aborted = partition.producers.record_marker(
        producer_id,
        epoch,
        commit,
        appended.base_offset,
        partition.log.log_end_offset,
        coord_epoch,
    )
    if aborted is not None:
        partition.log.append_aborted(aborted)
    if topic == OFFSETS_TOPIC:
        broker.transactions.complete_group_offsets(producer_id, commit, index)
    partition.appended()


class TransactionService:
    """The broker's transaction coordinator and its storage in ``__transaction_state``."""

    def __init__(self, broker) -> None:
        self.broker = broker
        config = broker.config
        # loaded with __consumer_offsets (offsets of transactions still open at start-up)
        self.pending_offsets: PendingTxnOffsets = broker.groups.txn_offsets
        self.coordinator = TransactionCoordinator(
            broker.controller.allocate_producer_id,
            persist=self._persist,
            write_markers=self._write_markers,
            config=TxnConfig(
                max_timeout_ms=config.get_int("transaction.max.timeout.ms"),
                id_expiration_ms=config.get_int("transactional.id.expiration.ms"),
                abort_check_interval_ms=config.get_int(
                    "transaction.abort.timed.out.transaction.cleanup.interval.ms"
                ),
                expire_check_interval_ms=config.get_int(
                    "transaction.remove.expired.transaction.cleanup.interval.ms"
                ),
            ),
        )
        self._ticker = Ticker(
            lambda: self.coordinator.poll(), TICK_SECONDS, "transaction coordinator"
        )
        self.partitions = CoordinatorPartitions(
            broker, TXN_TOPIC, self._load_partition, self._unload_partition
        )
        # markers on their way: (transactional id, topic, index) -> the task writing it
        # (sent to another broker, or waiting for this broker's followers to copy it)
        self._marker_tasks: dict[tuple[str, str, int], asyncio.Task] = {}
        self._markers_done: set[tuple[str, str, int]] = set()
        self._peers: dict[int, tuple[PeerConnection, asyncio.Lock]] = {}
        self._retries: set[str] = set()  # ids whose markers are tried again shortly
        self._load()
        self.coordinator.recover()

    # -- the transaction state topic ----------------------------------------------------
    def state_topic(self, create: bool = True) -> Topic | None:
        topic = self.broker.controller.store.topics.get(TXN_TOPIC)
        if topic is None and create:
            config = self.broker.config
            live = len(self.broker.controller.live_brokers())
            replicas = min(config.get_int("transaction.state.log.replication.factor"), live)
            min_isr = min(config.get_int("transaction.state.log.min.isr"), replicas)
            topic = self.broker.controller.ensure_internal_topic(
                TXN_TOPIC,
                config.get_int("transaction.state.log.num.partitions"),
                replicas,
                {
                    "cleanup.policy": "compact",
                    "compression.type": "uncompressed",
                    "min.insync.replicas": str(min_isr),
                    "segment.bytes": config.get("transaction.state.log.segment.bytes"),
                },
            )
            log.info("created %s with %d partitions", TXN_TOPIC, len(topic.partitions))
        return topic

    def _state_partition(self, transactional_id: str):
        topic = self.state_topic()
        return self.broker.hosted_partition(
            topic, partition_for(transactional_id, len(topic.partitions))
        )

    def coordinator_node(self, transactional_id: str) -> BrokerInfo:
        """FindCoordinator key type 1: the leader of the id's __transaction_state partition."""
        topic = self.state_topic()
        state = topic.partitions[partition_for(transactional_id, len(topic.partitions))]
        for node in self.broker.controller.live_brokers():
            if node.node_id == state.leader:
                return node
        raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE)

    @property
    def track_leadership(self) -> bool:
        return self.partitions.track_leadership

    def check_coordinator(self, transactional_id: str) -> ErrorCode:
        """NOT_COORDINATOR unless this broker leads the id's state partition."""
        if self.track_leadership:
            return self.partitions.ownership(transactional_id)
        try:
            node = self.coordinator_node(transactional_id)
        except KafkaError as exc:
            return exc.code
        if node.node_id != self.broker.node.node_id:
            return ErrorCode.NOT_COORDINATOR
        return ErrorCode.NONE

    def _persist(self, transactional_id: str, value: bytes | None) -> None:
        partition = self._state_partition(transactional_id)
        _append(partition, build_batch([(txn_key(transactional_id), value, None, None)]))
        partition.appended()

    def _load(self) -> None:
        topic = self.state_topic(create=False)
        if topic is not None:
            self.coordinator.load(self._records(topic))

    # -- leadership of the state partitions ---------------------------------------------
    def _owned_by(self, index: int):
        count = len(self.state_topic(create=False).partitions)
        return lambda transactional_id: partition_for(transactional_id, count) == index

    def _load_partition(self, index: int, epoch: int) -> bool:
        """Become the coordinator of the ids of state partition ``index``: load them and
        finish the transactions the previous coordinator left between Prepare and
        Complete (their markers are written again)."""
        topic = self.state_topic(create=False)
        if topic is None or self.broker.replicas.get(TXN_TOPIC, index) is None:
            return False
        self.coordinator.load(self._records(topic, [index]))
        log.info("coordinating the transactional ids of %s-%d (epoch %d)", TXN_TOPIC, index, epoch)
        self.coordinator.recover(self._owned_by(index))
        return True

    def _unload_partition(self, index: int) -> None:
        """Stop coordinating the ids of state partition ``index`` (another broker leads it)."""
        if self.state_topic(create=False) is None:
            return
        owned = self._owned_by(index)
        removed = self.coordinator.unload(owned)
        self._markers_done = {key for key in self._markers_done if not owned(key[0])}
        log.info(
            "no longer coordinating the ids of %s-%d (%d unloaded)", TXN_TOPIC, index, len(removed)
        )

    async def state_replicated(self, transactional_id: str) -> ErrorCode:
        """Wait until the id's state partition has its writes on the whole ISR."""
        code = await self.partitions.replicated(transactional_id, REPLICATION_TIMEOUT_MS)
        return ErrorCode.NONE if code == ErrorCode.NONE else ErrorCode.COORDINATOR_NOT_AVAILABLE

    def _records(self, topic: Topic, indexes=None):
        for index in range(len(topic.partitions)) if indexes is None else indexes:
            partition = self.broker.replicas.get(topic.name, index)
            if partition is None:
                continue
            plog = partition.log
            for header, data in plog.iter_batches(plog.log_start_offset):
                if header.is_control:
                    continue
                try:
                    _, records = decode_records(data)
                except Exception as exc:
                    log.warning("skipping unreadable batch of %s-%d: %s", TXN_TOPIC, index, exc)
                    continue
                for record in records:
                    yield record.key, record.value

    # -- markers ----------------------------------------------------------------------------
    def _write_markers(
        self, transactional_id: str, producer_id: int, epoch: int, commit: bool, partitions
    ) -> dict:
        try:
            coord_epoch = max(self._state_partition(transactional_id).leader_epoch, 0)
        except KafkaError:
            coord_epoch = 0
        results = {}
        remote: dict[int, list[tuple[str, int]]] = {}
        for topic, index in partitions:
            key = (transactional_id, topic, index)
            if key in self._markers_done:  # written (and replicated) by an earlier attempt
                self._markers_done.discard(key)
                results[(topic, index)] = ErrorCode.NONE
                continue
            if key in self._marker_tasks:
                results[(topic, index)] = MARKER_PENDING
                continue
            partition = self.broker.replicas.get(topic, index)
            if self.track_leadership and (partition is None or partition.leader is None):
                leader = self._leader_of(topic, index)
                if leader is None:
                    results[(topic, index)] = ErrorCode.NOT_LEADER_OR_FOLLOWER
                else:
                    remote.setdefault(leader, []).append((topic, index))
                    results[(topic, index)] = MARKER_PENDING
                continue
            try:
                write_marker(self.broker, topic, index, producer_id, epoch, commit, coord_epoch)
            except KafkaError as exc:
                results[(topic, index)] = exc.code
                continue
            if partition.log.high_watermark >= partition.log.log_end_offset:
                results[(topic, index)] = ErrorCode.NONE
            else:  # complete once the followers have the marker too
                self._marker_tasks[key] = asyncio.get_running_loop().create_task(
                    self._replicate_marker(key, partition)
                )
                results[(topic, index)] = MARKER_PENDING
        for leader, tps in remote.items():
            task = asyncio.get_running_loop().create_task(
                self._send_markers(
                    transactional_id, leader, producer_id, epoch, commit, coord_epoch, tps
                )
            )
            for topic, index in tps:
                self._marker_tasks[(transactional_id, topic, index)] = task
        settled = (ErrorCode.NONE, MARKER_PENDING, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        if self.track_leadership and any(code not in settled for code in results.values()):
            self._retry_later(transactional_id)  # a leader moving: try again soon
        return results

    def _leader_of(self, topic: str, index: int) -> int | None:
        found = self.broker.controller.store.topics.get(topic)
        if found is None or not 0 <= index < len(found.partitions):
            return None
        leader = found.partitions[index].leader
        return leader if leader in self.broker.controller.brokers else None

    def _retry_later(self, transactional_id: str) -> None:
        if transactional_id not in self._retries:
            self._retries.add(transactional_id)
            loop = asyncio.get_running_loop()
            loop.call_later(MARKER_RETRY_SECONDS, self._resume, transactional_id)

    def _resume(self, transactional_id: str) -> None:
        self._retries.discard(transactional_id)
        try:
            self.coordinator.resume(transactional_id)
        except Exception:
            log.exception("completing the transaction of %r failed", transactional_id)

    def _markers_finished(self, transactional_id: str, written, failed: bool) -> None:
        """Markers of a pending batch are done (``written``): complete the transaction if
        that was the last, or try the rest again soon."""
        if not self.coordinator.ending(transactional_id):
            return
        self._markers_done.update((transactional_id, *tp) for tp in written)
        if written:
            self._resume(transactional_id)
        if failed:
            self._retry_later(transactional_id)

    async def _replicate_marker(self, key: tuple[str, str, int], partition) -> None:
        try:
            code = await await_replicated(partition, REPLICATION_TIMEOUT_MS)
        finally:
            self._marker_tasks.pop(key, None)
        if code != ErrorCode.NONE:
            log.warning("marker of %r in %s-%d not replicated: %s", key[0], key[1], key[2], code)
        written = [key[1:]] if code == ErrorCode.NONE else []
        self._markers_finished(key[0], written, code != ErrorCode.NONE)

    def _peer(self, broker_id: int) -> tuple[PeerConnection, asyncio.Lock] | None:
        node = self.broker.controller.brokers.get(broker_id)
        if node is None:
            return None
        peer = self._peers.get(broker_id)
        if peer is None or (peer[0].host, peer[0].port) != (node.host, node.port):
            if peer is not None:
                peer[0].close()
            client_id = f"kbroker-txn-coordinator-{self.broker.node.node_id}"
            connection = PeerConnection(self.broker.registry, node.host, node.port, client_id)
            peer = self._peers[broker_id] = (connection, asyncio.Lock())
        return peer

    async def _send_markers(
        self, transactional_id, leader, producer_id, epoch, commit, coord_epoch, tps
    ) -> None:
        """WriteTxnMarkers to the leader of partitions this broker does not lead."""
        by_topic: dict[str, list[int]] = {}
        for topic, index in tps:
            by_topic.setdefault(topic, []).append(index)
        body = {
            "markers": [
                {
                    "producer_id": producer_id,
                    "producer_epoch": epoch,
                    "transaction_result": commit,
                    "topics": [
                        {"name": name, "partition_indexes": indexes}
                        for name, indexes in by_topic.items()
                    ],
                    "coordinator_epoch": coord_epoch,
                }
            ]
        }
        written = []
        try:
            peer = self._peer(leader)
            if peer is None:
                raise PeerError(f"broker {leader} is not in the cluster")
            connection, lock = peer
            async with lock:
                response = await connection.request(
                    WRITE_TXN_MARKERS, 1, body, REPLICATION_TIMEOUT_MS / 1000 + 5
                )
            for marker in response["markers"]:
                for topic in marker["topics"]:
                    for result in topic["partitions"]:
                        tp = (topic["name"], result["partition_index"])
                        code = result["error_code"]
                        if code in (ErrorCode.NONE, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION):
                            written.append(tp)
                        else:
                            log.info(
                                "broker %d did not write the marker of %r to %s-%d: %s",
                                leader,
                                transactional_id,
                                *tp,
                                ErrorCode(code).name,
                            )
        except (PeerError, OSError, TimeoutError) as exc:
            log.warning(
                "sending markers of %r to broker %d failed: %s", transactional_id, leader, exc
            )
        except Exception:
            log.exception("sending markers of %r to broker %d failed", transactional_id, leader)
        finally:
            for topic, index in tps:
                self._marker_tasks.pop((transactional_id, topic, index), None)
        self._markers_finished(transactional_id, written, len(written) < len(tps))

    async def markers_settled(self, transactional_id: str, timeout: float) -> None:
        """Wait (up to ``timeout``) for the ending transaction's markers."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.coordinator.ending(transactional_id):
            left = deadline - loop.time()
            if left <= 0:
                return
            tasks = [t for k, t in self._marker_tasks.items() if k[0] == transactional_id]
            if tasks:
                await asyncio.wait(set(tasks), timeout=left)
            else:
                await asyncio.sleep(min(0.05, left))

    def close_peers(self) -> None:
        for connection, _ in self._peers.values():
            connection.close()
        self._peers.clear()

    # -- transactional offset commits -------------------------------------------------------
    def complete_group_offsets(self, producer_id: int, commit: bool, index: int) -> None:
        """A marker reached __consumer_offsets partition ``index``: the pending offsets of
        its groups take effect (commit) or are dropped (abort)."""
        service = self.broker.groups
        groups = service.coordinator
        topic = service.offsets_topic()
        now = groups.clock()
        done = self.pending_offsets.complete(
            producer_id, commit, lambda group_id: service.partition_of(group_id, topic) == index
        )
        for group_id, offsets in done.items():
            group = groups.groups.get(group_id)
            if group is None:
                group = groups.groups[group_id] = Group(group_id, state_timestamp=now)
            group.offsets.update(offsets)

    def commit_offsets(
        self,
        group_id: str,
        producer_id: int,
        epoch: int,
        generation: int,
        member_id: str,
        instance_id: str | None,
        offsets: dict[tuple[str, int], OffsetAndMetadata],
    ) -> ErrorCode:
        """TxnOffsetCommit: write the offsets in the producer's transaction, pending."""
        service = self.broker.groups
        coordinator = service.coordinator
        code = coordinator._validate_commit(group_id, generation, member_id, instance_id)
        if code != ErrorCode.NONE:
            return code
        max_bytes = coordinator.config.offset_metadata_max_bytes
        if any(len((v.metadata or "").encode()) > max_bytes for v in offsets.values()):
            return ErrorCode.OFFSET_METADATA_TOO_LARGE
        from kbroker.group import records as rec

        now = coordinator.clock()
        for value in offsets.values():
            value.metadata = value.metadata or ""
            value.commit_timestamp = now
        topic = service.offsets_topic()
        partition = self.broker.hosted_partition(topic, service.partition_of(group_id, topic))
        batch = build_batch(
            [
                (rec.offset_key(group_id, t, p), rec.offset_value(v), None, None)
                for (t, p), v in offsets.items()
            ],
            producer_id=producer_id,
            producer_epoch=epoch,
            transactional=True,
        )
        header = split_batches(batch)[0]
        try:
            partition.producers.check_marker(producer_id, epoch)  # a fenced epoch is refused
            appended = _append(partition, batch)
        except KafkaError as exc:
            return exc.code
        partition.producers.record(header, appended.base_offset)
        partition.appended()
        self.pending_offsets.add(producer_id, group_id, offsets)
        return ErrorCode.NONE

    # -- produce verification ---------------------------------------------------------------
    def verify_produce(self, transactional_id: str | None, header, topic: str, index: int) -> None:
        """Kafka's transaction verification (KIP-890 part 1) when we are the coordinator:
        a transactional batch must belong to the producer's ongoing transaction."""
        if not header.is_transactional or transactional_id is None:
            return
        meta = self.coordinator.describe(transactional_id)
        if meta is None or meta.producer_id != header.producer_id:
            return  # another coordinator's producer (cluster mode): not ours to verify
        if header.producer_epoch < meta.producer_epoch:
            raise KafkaError(
                ErrorCode.INVALID_PRODUCER_EPOCH,
                f"producer {header.producer_id} epoch {header.producer_epoch} is fenced",
            )
        if not self.coordinator.is_in_transaction(
            transactional_id, header.producer_id, header.producer_epoch, (topic, index)
        ):
            raise KafkaError(
                ErrorCode.INVALID_TXN_STATE,
                f"{topic}-{index} is not in the ongoing transaction of {transactional_id!r}",
            )

    # -- the timer --------------------------------------------------------------------------
    def start_timer(self) -> None:
        self._ticker.start()

    def stop_timer(self) -> None:
        self._ticker.stop()
        self.close_peers()


def _service(broker) -> TransactionService:
    service = broker.transactions
    service.start_timer()
    return service


def _fenced(code: ErrorCode, version: int, first: int) -> ErrorCode:
    """PRODUCER_FENCED exists from ``first``; older versions get INVALID_PRODUCER_EPOCH."""
    if code == ErrorCode.PRODUCER_FENCED and version < first:
        return ErrorCode.INVALID_PRODUCER_EPOCH
    return code


# -- InitProducerId ---------------------------------------------------------------------
async def init_producer_id(broker, request: Request) -> dict:
    body = request.body
    transactional_id = body["transactional_id"]
    service = _service(broker)
    if transactional_id:
        code = service.check_coordinator(transactional_id)
        if code != ErrorCode.NONE:
            return {"error_code": code, "producer_id": -1, "producer_epoch": -1}
    code, producer_id, epoch = service.coordinator.init_producer_id(
        transactional_id,
        body["transaction_timeout_ms"],
        body["producer_id"],
        body["producer_epoch"],
    )
    if transactional_id and code == ErrorCode.NONE and service.track_leadership:
        code = await service.state_replicated(transactional_id)
        if code != ErrorCode.NONE:
            producer_id = epoch = -1
    return {
        "error_code": _fenced(code, request.api_version, 4),
        "producer_id": producer_id,
        "producer_epoch": epoch,
    }


# -- AddPartitionsToTxn / AddOffsetsToTxn -------------------------------------------------
def _add_partitions(broker, transactional_id, producer_id, epoch, topics, verify_only):
    """One transaction's AddPartitionsToTxn: the topic results."""
    service = _service(broker)
    wanted = [(t["name"], p) for t in topics for p in t["partitions"]]
    errors: dict[tuple[str, int], ErrorCode] = {}
    code = service.check_coordinator(transactional_id)
    if code != ErrorCode.NONE:
        errors = {tp: code for tp in wanted}
    else:
        store = broker.controller.store.topics
        unknown = [
            tp
            for tp in wanted
            if tp[0] not in store or not 0 <= tp[1] < len(store[tp[0]].partitions)
        ]
        if unknown:
            errors = {tp: ErrorCode.OPERATION_NOT_ATTEMPTED for tp in wanted}
            errors.update({tp: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION for tp in unknown})
        elif verify_only:
            errors = service.coordinator.verify_partitions(
                transactional_id, producer_id, epoch, wanted
            )
        else:
            code = service.coordinator.add_partitions(transactional_id, producer_id, epoch, wanted)
            errors = {tp: code for tp in wanted}
    return errors


def _topic_results(topics, errors, version: int) -> list[dict]:
    return [
        {
            "name": t["name"],
            "results_by_partition": [
                {
                    "partition_index": p,
                    "partition_error_code": _fenced(errors[(t["name"], p)], version, 2),
                }
                for p in t["partitions"]
            ],
        }
        for t in topics
    ]


async def _replicated(broker, transactional_id: str, errors: dict) -> dict:
    """Cluster mode: answer once the state change is on the state partition's ISR."""
    service = broker.transactions
    if service.track_leadership and ErrorCode.NONE in errors.values():
        code = await service.state_replicated(transactional_id)
        if code != ErrorCode.NONE:
            return {tp: code if c == ErrorCode.NONE else c for tp, c in errors.items()}
    return errors


async def add_partitions_to_txn(broker, request: Request) -> dict:
    body = request.body
    version = request.api_version
    if version <= 3:
        topics = body["v3_and_below_topics"]
        errors = _add_partitions(
            broker,
            body["v3_and_below_transactional_id"],
            body["v3_and_below_producer_id"],
            body["v3_and_below_producer_epoch"],
            topics,
            False,
        )
        errors = await _replicated(broker, body["v3_and_below_transactional_id"], errors)
        return {"results_by_topic_v3_and_below": _topic_results(topics, errors, version)}
    results = []
    for txn in body["transactions"]:
        errors = _add_partitions(
            broker,
            txn["transactional_id"],
            txn["producer_id"],
            txn["producer_epoch"],
            txn["topics"],
            txn["verify_only"],
        )
        errors = await _replicated(broker, txn["transactional_id"], errors)
        results.append(
            {
                "transactional_id": txn["transactional_id"],
                "topic_results": _topic_results(txn["topics"], errors, version),
            }
        )
    return {"error_code": ErrorCode.NONE, "results_by_transaction": results}


async def add_offsets_to_txn(broker, request: Request) -> dict:
    body = request.body
    service = _service(broker)
    code = service.check_coordinator(body["transactional_id"])
    if code == ErrorCode.NONE:
        groups = broker.groups
        topic = groups.offsets_topic()
        tp = (OFFSETS_TOPIC, groups.partition_of(body["group_id"], topic))
        code = service.coordinator.add_partitions(
            body["transactional_id"], body["producer_id"], body["producer_epoch"], [tp]
        )
        if code == ErrorCode.NONE and service.track_leadership:
            code = await service.state_replicated(body["transactional_id"])
    return {"error_code": _fenced(code, request.api_version, 2)}


# -- TxnOffsetCommit ----------------------------------------------------------------------
async def txn_offset_commit(broker, request: Request) -> dict:
    body = request.body
    service = _service(broker)
    broker.groups.start_timer()
    offsets = {}
    errors: dict[tuple[str, int], ErrorCode] = {}
    store = broker.controller.store.topics
    for topic in body["topics"]:
        known = store.get(topic["name"])
        for p in topic["partitions"]:
            tp = (topic["name"], p["partition_index"])
            if known is None or not 0 <= tp[1] < len(known.partitions):
                errors[tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            else:
                offsets[tp] = OffsetAndMetadata(
                    p["committed_offset"], p["committed_leader_epoch"], p["committed_metadata"]
                )
    not_here = broker.groups.check(body["group_id"])
    if not_here != ErrorCode.NONE:
        errors.update({tp: not_here for tp in offsets})
        offsets = {}
    if offsets:
        code = service.commit_offsets(
            body["group_id"],
            body["producer_id"],
            body["producer_epoch"],
            body["generation_id"],
            body["member_id"],
            body["group_instance_id"],
            offsets,
        )
        if code == ErrorCode.NONE and broker.groups.track_leadership:
            stored = await broker.groups.replicated(body["group_id"], REPLICATION_TIMEOUT_MS)
            if stored != ErrorCode.NONE:
                code = ErrorCode.COORDINATOR_NOT_AVAILABLE
        errors.update({tp: code for tp in offsets})
    return commit_response(body["topics"], errors)


# -- EndTxn / WriteTxnMarkers ---------------------------------------------------------------
async def end_txn(broker, request: Request) -> dict:
    body = request.body
    service = _service(broker)
    code = service.check_coordinator(body["transactional_id"])
    if code == ErrorCode.NONE:
        code = service.coordinator.end_transaction(
            body["transactional_id"], body["producer_id"], body["producer_epoch"], body["committed"]
        )
        if code == ErrorCode.NONE and service.track_leadership:
            # markers on other brokers: answer once written, as a single broker does
            # (or after a while, as Kafka always does: clients retry meanwhile)
            await service.markers_settled(body["transactional_id"], END_TXN_WAIT_SECONDS)
            code = await service.state_replicated(body["transactional_id"])
    return {"error_code": _fenced(code, request.api_version, 2)}


async def write_txn_markers(broker, request: Request) -> dict:
    results = []
    written = {}  # partitions written to: answered once their ISR has the markers
    for marker in request.body["markers"]:
        topics = []
        for topic in marker["topics"]:
            partitions = []
            for index in topic["partition_indexes"]:
                try:
                    write_marker(
                        broker,
                        topic["name"],
                        index,
                        marker["producer_id"],
                        marker["producer_epoch"],
                        marker["transaction_result"],
                        marker["coordinator_epoch"],
                    )
                    code = ErrorCode.NONE
                    partition = broker.replicas.get(topic["name"], index)
                    written[(topic["name"], index)] = partition
                except KafkaError as exc:
                    code = exc.code
                partitions.append({"partition_index": index, "error_code": code})
            topics.append({"name": topic["name"], "partitions": partitions})
        results.append({"producer_id": marker["producer_id"], "topics": topics})
    if written:
        codes = await asyncio.gather(
            *(await_replicated(p, REPLICATION_TIMEOUT_MS) for p in written.values())
        )
        failed = {tp: c for tp, c in zip(written, codes, strict=True) if c != ErrorCode.NONE}
        for marker in results:
            for topic in marker["topics"]:
                for result in topic["partitions"]:
                    code = failed.get((topic["name"], result["partition_index"]))
                    if code is not None and result["error_code"] == ErrorCode.NONE:
                        result["error_code"] = code
    return {"markers": results}


# -- DescribeTransactions / ListTransactions ------------------------------------------------
async def describe_transactions(broker, request: Request) -> dict:
    service = _service(broker)
    states = []
    for transactional_id in request.body["transactional_ids"]:
        entry = {
            "transactional_id": transactional_id,
            "transaction_state": "",
            "transaction_timeout_ms": 0,
            "transaction_start_time_ms": -1,
            "producer_id": -1,
            "producer_epoch": -1,
            "topics": [],
        }
        code = service.check_coordinator(transactional_id)
        meta = service.coordinator.describe(transactional_id) if code == ErrorCode.NONE else None
        if code == ErrorCode.NONE and meta is None:
            code = ErrorCode.TRANSACTIONAL_ID_NOT_FOUND
        if meta is not None:
            by_topic: dict[str, list[int]] = {}
            for topic, index in sorted(meta.partitions):
                by_topic.setdefault(topic, []).append(index)
            entry.update(
                transaction_state=meta.state.label,
                transaction_timeout_ms=meta.timeout_ms,
                transaction_start_time_ms=meta.start_ms,
                producer_id=meta.producer_id,
                producer_epoch=meta.producer_epoch,
                topics=[{"topic": t, "partitions": ps} for t, ps in by_topic.items()],
            )
        entry["error_code"] = code
        states.append(entry)
    return {"transaction_states": states}


async def list_transactions(broker, request: Request) -> dict:
    body = request.body
    found, unknown = _service(broker).coordinator.list(
        body["state_filters"], body["producer_id_filters"], body["duration_filter"]
    )
    return {
        "error_code": ErrorCode.NONE,
        "unknown_state_filters": unknown,
        "transaction_states": [
            {
                "transactional_id": meta.transactional_id,
                "producer_id": meta.producer_id,
                "transaction_state": meta.state.label,
            }
            for meta in found
            if meta.state != TxnState.DEAD
        ],
    }
