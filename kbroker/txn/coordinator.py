"""The transaction coordinator: a sans-IO state machine over transactional ids.

It follows Kafka's TransactionCoordinator (transaction version 1): each transactional
id maps to a producer id and epoch and a state (Empty, Ongoing, PrepareCommit,
PrepareAbort, CompleteCommit, CompleteAbort, PrepareEpochFence, Dead). Every state
change is first persisted (``persist``: a TransactionLogValue record written to
``__transaction_state``), then applied. Ending a transaction persists PrepareCommit or
PrepareAbort, has the markers written to every partition of the transaction
(``write_markers``), then persists CompleteCommit or CompleteAbort.

Kafka answers EndTxn after the Prepare record and writes the markers in the background,
answering CONCURRENT_TRANSACTIONS to requests that arrive meanwhile. Here markers are
written before the answer (a single broker writes them to its own logs at once), so a
client never has to retry. Likewise, InitProducerId for an id with an ongoing
transaction fences the old producer (epoch + 1), aborts the transaction with that epoch
and then bumps the epoch again, where Kafka answers CONCURRENT_TRANSACTIONS and bumps on
the client's retry: the producer ends with the same epoch either way.

``clock`` returns milliseconds; :meth:`poll` aborts transactions that have run past their
``transaction.timeout.ms`` and expires ids idle for ``transactional.id.expiration.ms``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

from kbroker.txn.records import TxnLogValue, decode, txn_value
from kbroker.wire.errors import ErrorCode, KafkaError

log = logging.getLogger("kbroker.txn")

NO_PRODUCER_ID = -1
# write_markers' answer for a marker still on its way (another broker's partition, or
# replicas yet to copy it): the transaction completes on resume() once it is written
MARKER_PENDING = ErrorCode.REQUEST_TIMED_OUT
NO_EPOCH = -1
MAX_EPOCH = 32767  # Short.MaxValue: an epoch that would reach it takes a new producer id

TopicPartition = tuple[str, int]


class TxnState(Enum):
    """The states and their ids in ``__transaction_state`` (TransactionState in Kafka)."""

    EMPTY = (0, "Empty")
    ONGOING = (1, "Ongoing")
    PREPARE_COMMIT = (2, "PrepareCommit")
    PREPARE_ABORT = (3, "PrepareAbort")
    COMPLETE_COMMIT = (4, "CompleteCommit")
    COMPLETE_ABORT = (5, "CompleteAbort")
    DEAD = (6, "Dead")
    PREPARE_EPOCH_FENCE = (7, "PrepareEpochFence")

    @property
    def id(self) -> int:
        return self.value[0]

    @property
    def label(self) -> str:
        return self.value[1]

    @classmethod
    def from_id(cls, state_id: int) -> TxnState:
        for state in cls:
            if state.id == state_id:
                return state
        raise ValueError(f"unknown transaction state {state_id}")

    @classmethod
    def from_label(cls, label: str) -> TxnState | None:
        for state in cls:
            if state.label == label:
                return state
        return None


_COMPLETE = (TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT)
_PREPARING = (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT, TxnState.PREPARE_EPOCH_FENCE)


@dataclass
class TxnConfig:
    max_timeout_ms: int = 900_000  # transaction.max.timeout.ms
    id_expiration_ms: int = 604_800_000  # transactional.id.expiration.ms
    abort_check_interval_ms: int = 10_000  # ...abort.timed.out.transaction.cleanup...
    expire_check_interval_ms: int = 3_600_000  # ...remove.expired.transaction.cleanup...


@dataclass
class TxnMetadata:
    transactional_id: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: TxnState = TxnState.EMPTY
    partitions: set[TopicPartition] = field(default_factory=set)
    start_ms: int = -1
    last_update_ms: int = -1
    last_producer_epoch: int = NO_EPOCH
    previous_producer_id: int = NO_PRODUCER_ID
    # partitions of the ending transaction whose marker is written (and replicated)
    markers_written: set[TopicPartition] = field(default_factory=set)

    def record(self, **changes) -> TxnLogValue:
        """The log value of this metadata with ``changes`` (state=, epoch=, ...) applied."""
        state = changes.get("state", self.state)
        return TxnLogValue(
            changes.get("producer_id", self.producer_id),
            changes.get("producer_epoch", self.producer_epoch),
            changes.get("timeout_ms", self.timeout_ms),
            state.id,
            sorted(changes.get("partitions", self.partitions)),
            changes.get("last_update_ms", self.last_update_ms),
            changes.get("start_ms", self.start_ms),
        )


Persist = Callable[[str, bytes | None], None]  # (transactional id, value) -> raises KafkaError
# (transactional id, producer id, epoch, commit, partitions) -> each partition's error
WriteMarkers = Callable[
    [str, int, int, bool, list[TopicPartition]], dict[TopicPartition, ErrorCode]
]


def _epoch_exhausted(epoch: int) -> bool:
    return epoch >= MAX_EPOCH - 1


class TransactionCoordinator:
    """All transactional ids this broker coordinates."""

    def __init__(
        self,
        allocate_producer_id: Callable[[], int],
        persist: Persist | None = None,
        write_markers: WriteMarkers | None = None,
        config: TxnConfig | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.allocate_producer_id = allocate_producer_id
        self.persist = persist or (lambda transactional_id, value: None)
        self.write_markers = write_markers or (lambda txn_id, pid, epoch, commit, tps: {})
        self.config = config or TxnConfig()
        self.clock = clock or (lambda: time.time_ns() // 1_000_000)
        self.txns: dict[str, TxnMetadata] = {}
        now = self.clock()
        self._next_abort_check = now + self.config.abort_check_interval_ms
        self._next_expire_check = now + self.config.expire_check_interval_ms

    # -- persistence ------------------------------------------------------------------
    def _store(self, meta: TxnMetadata, **changes) -> ErrorCode:
        """Persist ``meta`` with ``changes`` and apply them if that worked."""
        changes.setdefault("last_update_ms", self.clock())
        try:
            self.persist(meta.transactional_id, txn_value(meta.record(**changes)))
        except KafkaError as exc:
            log.warning("storing transaction %r failed: %s", meta.transactional_id, exc)
            return _storage_error(exc.code)
        for name, value in changes.items():
            setattr(meta, name, value)
        return ErrorCode.NONE

    # -- InitProducerId -----------------------------------------------------------------
    def init_producer_id(
        self,
        transactional_id: str | None,
        timeout_ms: int,
        expected_producer_id: int = NO_PRODUCER_ID,
        expected_epoch: int = NO_EPOCH,
    ) -> tuple[ErrorCode, int, int]:
        """(error, producer id, epoch) for a producer starting (or recovering, v3+)."""
        if transactional_id is None:
            return ErrorCode.NONE, self.allocate_producer_id(), 0
        if not transactional_id:
            return ErrorCode.INVALID_REQUEST, NO_PRODUCER_ID, NO_EPOCH
        if not 0 < timeout_ms <= self.config.max_timeout_ms:
            return ErrorCode.INVALID_TRANSACTION_TIMEOUT, NO_PRODUCER_ID, NO_EPOCH
        meta = self.txns.get(transactional_id)
        if meta is None:
            meta = TxnMetadata(transactional_id, self.allocate_producer_id(), NO_EPOCH, timeout_ms)
            self.txns[transactional_id] = meta
        expected = None if expected_producer_id == NO_PRODUCER_ID else expected_producer_id
        if expected is not None and not (
            meta.producer_epoch == NO_EPOCH
            or expected == meta.producer_id
            or (expected == meta.previous_producer_id and _epoch_exhausted(expected_epoch))
        ):
            return ErrorCode.INVALID_PRODUCER_ID_MAPPING, NO_PRODUCER_ID, NO_EPOCH
        if meta.state in _PREPARING:
            return ErrorCode.CONCURRENT_TRANSACTIONS, NO_PRODUCER_ID, NO_EPOCH
        if meta.state == TxnState.ONGOING:
            # fence the producer of the open transaction and abort it with the new epoch
            code = self._fence_and_abort(meta)
            if code != ErrorCode.NONE:
                return code, NO_PRODUCER_ID, NO_EPOCH
        # Kafka's prepareIncrementProducerEpoch / prepareProducerIdRotation
        previous_id = meta.previous_producer_id
        if meta.producer_epoch == NO_EPOCH:
            producer_id, epoch, last_epoch = meta.producer_id, 0, NO_EPOCH
        elif _epoch_exhausted(meta.producer_epoch) and (
            expected is None or expected_epoch == meta.producer_epoch
        ):
            producer_id, epoch, previous_id = self.allocate_producer_id(), 0, meta.producer_id
            last_epoch = meta.producer_epoch if expected is not None else NO_EPOCH
        elif expected is None:
            producer_id, epoch, last_epoch = meta.producer_id, meta.producer_epoch + 1, NO_EPOCH
        elif expected_epoch in (NO_EPOCH, meta.producer_epoch):
            producer_id, epoch = meta.producer_id, meta.producer_epoch + 1
            last_epoch = meta.producer_epoch
        elif expected_epoch == meta.last_producer_epoch:
            # a retry of a bump whose answer was lost: the same answer again
            return ErrorCode.NONE, meta.producer_id, meta.producer_epoch
        else:
            return ErrorCode.PRODUCER_FENCED, NO_PRODUCER_ID, NO_EPOCH
        code = self._store(
            meta,
            producer_id=producer_id,
            producer_epoch=epoch,
            timeout_ms=timeout_ms,
            state=TxnState.EMPTY,
            partitions=set(),
            start_ms=-1,
        )
        if code != ErrorCode.NONE:
            return code, NO_PRODUCER_ID, NO_EPOCH
        meta.last_producer_epoch = last_epoch
        meta.previous_producer_id = previous_id
        log.info(
            "transactional id %r: producer id %d epoch %d", transactional_id, producer_id, epoch
        )
        return ErrorCode.NONE, producer_id, epoch

    def _fence_and_abort(self, meta: TxnMetadata) -> ErrorCode:
        """Kafka's prepareFenceProducerEpoch + abort: the open transaction's producer is
        fenced by an epoch bump and its transaction aborted with the new epoch."""
        if not _epoch_exhausted(meta.producer_epoch):
            epoch = meta.producer_epoch + 1
            code = self._store(meta, producer_epoch=epoch, state=TxnState.PREPARE_EPOCH_FENCE)
            if code != ErrorCode.NONE:
                return code
            meta.last_producer_epoch = NO_EPOCH
        log.info(
            "fencing producer %d of %r at epoch %d and aborting its transaction",
            meta.producer_id,
            meta.transactional_id,
            meta.producer_epoch,
        )
        return self._complete(meta, commit=False)

    # -- the transaction's partitions ---------------------------------------------------
    def _check_producer(
        self, transactional_id: str, producer_id: int, epoch: int
    ) -> tuple[ErrorCode, TxnMetadata | None]:
        meta = self.txns.get(transactional_id)
        if meta is None or meta.producer_id != producer_id:
            return ErrorCode.INVALID_PRODUCER_ID_MAPPING, None
        if epoch != meta.producer_epoch:
            return ErrorCode.PRODUCER_FENCED, None
        return ErrorCode.NONE, meta

    def add_partitions(
        self,
        transactional_id: str,
        producer_id: int,
        epoch: int,
        partitions: Iterable[TopicPartition],
    ) -> ErrorCode:
        """AddPartitionsToTxn / AddOffsetsToTxn: the partitions join the transaction."""
        code, meta = self._check_producer(transactional_id, producer_id, epoch)
        if meta is None:
            return code
        if meta.state in _PREPARING:
            return ErrorCode.CONCURRENT_TRANSACTIONS
        if meta.state == TxnState.DEAD:
            return ErrorCode.INVALID_TXN_STATE
        added = set(partitions)
        if meta.state == TxnState.ONGOING and added <= meta.partitions:
            return ErrorCode.NONE
        now = self.clock()
        return self._store(
            meta,
            state=TxnState.ONGOING,
            partitions=meta.partitions | added,
            start_ms=meta.start_ms if meta.state == TxnState.ONGOING else now,
            last_update_ms=now,
        )

    def verify_partitions(
        self,
        transactional_id: str,
        producer_id: int,
        epoch: int,
        partitions: Iterable[TopicPartition],
    ) -> dict[TopicPartition, ErrorCode]:
        """AddPartitionsToTxn v4 ``verify_only``: is each partition in the open transaction?"""
        code, meta = self._check_producer(transactional_id, producer_id, epoch)
        wanted = list(partitions)
        if meta is None:
            return {tp: code for tp in wanted}
        ongoing = meta.state == TxnState.ONGOING
        return {
            tp: ErrorCode.NONE if ongoing and tp in meta.partitions else ErrorCode.INVALID_TXN_STATE
            for tp in wanted
        }

    def is_in_transaction(self, transactional_id: str, producer_id: int, epoch: int, tp) -> bool:
        meta = self.txns.get(transactional_id)
        return (
            meta is not None
            and meta.producer_id == producer_id
            and meta.producer_epoch == epoch
            and meta.state == TxnState.ONGOING
            and tp in meta.partitions
        )

    # -- EndTxn -------------------------------------------------------------------------
    def end_transaction(
        self, transactional_id: str, producer_id: int, epoch: int, commit: bool
    ) -> ErrorCode:
        code, meta = self._check_producer(transactional_id, producer_id, epoch)
        if meta is None:
            return code
        state = meta.state
        if state == TxnState.ONGOING:
            return self._complete(meta, commit)
        if state == TxnState.COMPLETE_COMMIT:
            return ErrorCode.NONE if commit else ErrorCode.INVALID_TXN_STATE
        if state == TxnState.COMPLETE_ABORT:
            return ErrorCode.INVALID_TXN_STATE if commit else ErrorCode.NONE
        if state == TxnState.PREPARE_COMMIT:
            return ErrorCode.CONCURRENT_TRANSACTIONS if commit else ErrorCode.INVALID_TXN_STATE
        if state == TxnState.PREPARE_ABORT:
            return ErrorCode.INVALID_TXN_STATE if commit else ErrorCode.CONCURRENT_TRANSACTIONS
        if state == TxnState.PREPARE_EPOCH_FENCE:
            return ErrorCode.PRODUCER_FENCED
        return ErrorCode.INVALID_TXN_STATE  # Empty (nothing to end), Dead

    def _complete(self, meta: TxnMetadata, commit: bool) -> ErrorCode:
        """Prepare, write the markers, complete (or carry on from a persisted Prepare)."""
        prepare = TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT
        if meta.state != prepare:
            code = self._store(meta, state=prepare)
            if code != ErrorCode.NONE:
                return code
            meta.markers_written = set()
        partitions = sorted(meta.partitions - meta.markers_written)
        failed = {}
        results = self.write_markers(
            meta.transactional_id, meta.producer_id, meta.producer_epoch, commit, partitions
        )
        for tp, code in results.items():
            if code in (ErrorCode.NONE, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION):
                meta.markers_written.add(tp)
            elif code != MARKER_PENDING:
                failed[tp] = code
        if failed:
            # Kafka retries until the markers are written; we retry on the next poll
            log.warning("writing markers of %r failed: %s", meta.transactional_id, failed)
        if not meta.markers_written >= meta.partitions:
            return ErrorCode.NONE  # completed by resume() once the markers are written
        done = TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT
        partitions = meta.partitions
        code = self._store(meta, state=done, partitions=set())
        meta.markers_written = set()
        log.info(
            "transaction of %r (producer %d epoch %d) %s over %d partitions",
            meta.transactional_id,
            meta.producer_id,
            meta.producer_epoch,
            "committed" if commit else "aborted",
            len(partitions),
        )
        return code

    # -- time -----------------------------------------------------------------------------
    def poll(self) -> None:
        """Abort timed-out transactions, finish interrupted ones, expire idle ids."""
        now = self.clock()
        if now >= self._next_abort_check:
            self._next_abort_check = now + self.config.abort_check_interval_ms
            self.abort_timed_out()
        if now >= self._next_expire_check:
            self._next_expire_check = now + self.config.expire_check_interval_ms
            self.expire_ids()

    def abort_timed_out(self) -> list[str]:
        """Kafka's abortTimedOutTransactions: fence and abort what ran past its timeout."""
        now = self.clock()
        aborted = []
        for meta in list(self.txns.values()):
            if meta.state == TxnState.ONGOING and meta.start_ms + meta.timeout_ms < now:
                log.info(
                    "transaction of %r ran past its %d ms timeout: aborting it",
                    meta.transactional_id,
                    meta.timeout_ms,
                )
                if self._fence_and_abort(meta) == ErrorCode.NONE:
                    aborted.append(meta.transactional_id)
            elif meta.state in (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT):
                self._complete(meta, meta.state == TxnState.PREPARE_COMMIT)  # markers retry
            elif meta.state == TxnState.PREPARE_EPOCH_FENCE:
                self._complete(meta, commit=False)
        return aborted

    def expire_ids(self) -> list[str]:
        """Forget transactional ids idle past ``transactional.id.expiration.ms``."""
        now = self.clock()
        expired = []
        for meta in list(self.txns.values()):
            if (
                meta.state in _COMPLETE
                and now - meta.last_update_ms >= self.config.id_expiration_ms
            ):
                try:
                    self.persist(meta.transactional_id, None)
                except KafkaError as exc:
                    log.warning("expiring %r failed: %s", meta.transactional_id, exc)
                    continue
                del self.txns[meta.transactional_id]
                expired.append(meta.transactional_id)
        return expired

    # -- admin ----------------------------------------------------------------------------
    def describe(self, transactional_id: str) -> TxnMetadata | None:
        return self.txns.get(transactional_id)

    def list(
        self,
        states: Iterable[str] = (),
        producer_ids: Iterable[int] = (),
        min_duration_ms: int = -1,
    ) -> tuple[list[TxnMetadata], list[str]]:
        """(matching transactions, unknown state names) for ListTransactions."""
        wanted, unknown = set(), []
        for label in states:
            state = TxnState.from_label(label)
            if state is None:
                unknown.append(label)
            else:
                wanted.add(state)
        pids = set(producer_ids)
        now = self.clock()
        found = [
            meta
            for meta in self.txns.values()
            if (not wanted or meta.state in wanted)
            and (not pids or meta.producer_id in pids)
            and (
                min_duration_ms < 0
                or (
                    meta.state == TxnState.ONGOING
                    and meta.start_ms >= 0
                    and now - meta.start_ms > min_duration_ms
                )
            )
        ]
        if unknown and wanted == set():
            found = []  # only unknown filters: nothing matches
        return found, unknown

    # -- loading --------------------------------------------------------------------------
    def load(self, entries: Iterable[tuple[bytes | None, bytes | None]]) -> None:
        """Rebuild from ``__transaction_state`` records, oldest first (the last one wins)."""
        before = len(self.txns)
        for key, value in entries:
            try:
                decoded = decode(key, value)
            except Exception as exc:  # a record we cannot read must not stop start-up
                log.warning("skipping unreadable __transaction_state record: %s", exc)
                continue
            if decoded is None:
                continue
            transactional_id, record = decoded
            if record is None:
                self.txns.pop(transactional_id, None)
                continue
            old = self.txns.get(transactional_id)
            meta = TxnMetadata(
                transactional_id,
                record.producer_id,
                record.producer_epoch,
                record.timeout_ms,
                TxnState.from_id(record.status),
                set(record.partitions),
                record.start_ms,
                record.last_update_ms,
            )
            if old is not None:
                if old.producer_id == meta.producer_id:
                    if old.producer_epoch != meta.producer_epoch:
                        meta.last_producer_epoch = old.producer_epoch
                    else:
                        meta.last_producer_epoch = old.last_producer_epoch
                    meta.previous_producer_id = old.previous_producer_id
                else:
                    meta.previous_producer_id = old.producer_id
            self.txns[transactional_id] = meta
        log.info("loaded %d transactional ids from __transaction_state", len(self.txns) - before)

    def resume(self, transactional_id: str) -> None:
        """Carry on ending a transaction whose markers were pending (written elsewhere, or
        waiting for their replicas): complete it once all are written."""
        meta = self.txns.get(transactional_id)
        if meta is not None and meta.state in _PREPARING:
            self._complete(meta, meta.state == TxnState.PREPARE_COMMIT)

    def ending(self, transactional_id: str) -> bool:
        """Whether the id's transaction is between Prepare and Complete."""
        meta = self.txns.get(transactional_id)
        return meta is not None and meta.state in _PREPARING

    def unload(self, owned: Callable[[str], bool]) -> list[str]:
        """Forget the ids ``owned`` selects (their state partition moved to another
        coordinator, which loads them from the replicated log)."""
        removed = [txn_id for txn_id in self.txns if owned(txn_id)]
        for txn_id in removed:
            del self.txns[txn_id]
        return removed

    def recover(self, owned: Callable[[str], bool] | None = None) -> None:
        """Finish what a stop interrupted: the markers of Prepare* transactions (of the
        ids ``owned`` selects: those just loaded)."""
        for meta in list(self.txns.values()):
            if owned is not None and not owned(meta.transactional_id):
                continue
            if meta.state in (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT):
                self._complete(meta, meta.state == TxnState.PREPARE_COMMIT)
            elif meta.state == TxnState.PREPARE_EPOCH_FENCE:
                self._complete(meta, commit=False)


def _storage_error(code: ErrorCode) -> ErrorCode:
    """Kafka maps a failed append to __transaction_state to what producers retry on."""
    if code in (
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.NOT_ENOUGH_REPLICAS,
        ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        ErrorCode.REQUEST_TIMED_OUT,
    ):
        return ErrorCode.COORDINATOR_NOT_AVAILABLE
    if code == ErrorCode.NOT_LEADER_OR_FOLLOWER:
        return ErrorCode.NOT_COORDINATOR
    if code in (ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.RECORD_LIST_TOO_LARGE):
        return ErrorCode.UNKNOWN_SERVER_ERROR
    return code
