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

from kbroker.cluster.metadata import BrokerInfo, Topic
from kbroker.group.coordinator import Group
from kbroker.group.records import OffsetAndMetadata, partition_for
from kbroker.log.errors import LogError
from kbroker.txn.coordinator import TransactionCoordinator, TxnConfig, TxnState
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
    partition.producers.check_marker(producer_id, epoch)
    key, value = end_txn_marker(commit, coord_epoch)
    batch = build_batch(
        [(key, value, None, None)],
        producer_id=producer_id,
        producer_epoch=epoch,
        transactional=True,
        control=True,
    )
    appended = _append(partition, batch)
    partition.producers.record_marker(
        producer_id, epoch, commit, appended.base_offset, partition.log.log_end_offset
    )
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
        self._timer: asyncio.Task | None = None
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

    def check_coordinator(self, transactional_id: str) -> ErrorCode:
        """NOT_COORDINATOR unless this broker leads the id's state partition."""
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

    def _records(self, topic: Topic):
        for index in range(len(topic.partitions)):
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
        for topic, index in partitions:
            try:
                write_marker(self.broker, topic, index, producer_id, epoch, commit, coord_epoch)
                results[(topic, index)] = ErrorCode.NONE
            except KafkaError as exc:
                results[(topic, index)] = exc.code
        return results

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
        if self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(self._run_timer())

    async def _run_timer(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                self.coordinator.poll()
            except Exception:
                log.exception("transaction coordinator timer failed")

    def stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


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
        errors.update({tp: code for tp in offsets})
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
            for topic in body["topics"]
        ]
    }


# -- EndTxn / WriteTxnMarkers ---------------------------------------------------------------
async def end_txn(broker, request: Request) -> dict:
    body = request.body
    service = _service(broker)
    code = service.check_coordinator(body["transactional_id"])
    if code == ErrorCode.NONE:
        code = service.coordinator.end_transaction(
            body["transactional_id"], body["producer_id"], body["producer_epoch"], body["committed"]
        )
    return {"error_code": _fenced(code, request.api_version, 2)}


async def write_txn_markers(broker, request: Request) -> dict:
    results = []
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
                except KafkaError as exc:
                    code = exc.code
                partitions.append({"partition_index": index, "error_code": code})
            topics.append({"name": topic["name"], "partitions": partitions})
        results.append({"producer_id": marker["producer_id"], "topics": topics})
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
