"""Per-partition idempotent-producer state: sequence checks and duplicate detection.

Mirrors Kafka's ProducerStateManager: for each producer id the partition remembers the
epoch and the last few batches (first/last sequence and offsets), so a retried batch is
answered with its original offsets instead of being written twice, and a sequence gap
is refused with OUT_OF_ORDER_SEQUENCE_NUMBER. The state is rebuilt at start-up from
the batch headers in the log (:meth:`ProducerStateTable.load`), from the newest
producer-state snapshot (:mod:`kbroker.txn.snapshot`) onwards where one can be used.

It also tracks transactions as Kafka's partition leader does: the first offset of each
producer's ongoing transaction (the least of them bounds the last stable offset, LSO).
An ABORT marker completes one into an :class:`AbortedTxn`, which the caller indexes in
the log's ``.txnindex`` files (:meth:`PartitionLog.append_aborted`): read_committed
fetches read the aborted transactions from there, so clients drop aborted records.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from kbroker.log.txn_index import AbortedTxn
from kbroker.wire.errors import ErrorCode, KafkaError
from kbroker.wire.record import decode_records, parse_end_txn_marker
from kbroker.wire.records import NO_PRODUCER_ID, NO_SEQUENCE, BatchHeader

RETAINED_BATCHES = 5  # Kafka keeps the metadata of the last 5 batches per producer
MAX_SEQUENCE = 0x7FFFFFFF


class BatchMetadata(NamedTuple):
    first_sequence: int
    last_sequence: int
    first_offset: int
    last_offset: int
    timestamp: int


@dataclass
class ProducerEntry:
    epoch: int
    batches: deque = field(default_factory=lambda: deque(maxlen=RETAINED_BATCHES))
    coordinator_epoch: int = -1  # of the last transaction marker (-1: none yet)

    @property
    def last_sequence(self) -> int:
        return self.batches[-1].last_sequence if self.batches else NO_SEQUENCE


def _in_sequence(last: int, first: int) -> bool:
    return first == last + 1 or (first == 0 and last == MAX_SEQUENCE)


class ProducerStateTable:
    """The idempotence state of one partition."""

    def __init__(self) -> None:
        self.producers: dict[int, ProducerEntry] = {}
        self.ongoing: dict[int, int] = {}  # producer id -> first offset of its open txn

    # -- transactions -------------------------------------------------------------------
    def first_unstable_offset(self) -> int | None:
        """The first offset of the oldest open transaction (None: none is open)."""
        return min(self.ongoing.values()) if self.ongoing else None

    def last_stable_offset(self, high_watermark: int) -> int:
        """The LSO: read_committed consumers read below it (never past the HW)."""
        first = self.first_unstable_offset()
        return high_watermark if first is None else min(first, high_watermark)

    def record_marker(
        self,
        producer_id: int,
        epoch: int,
        commit: bool,
        offset: int,
        log_end: int,
        coordinator_epoch: int = 0,
    ) -> AbortedTxn | None:
        """A COMMIT/ABORT marker was appended at ``offset`` (``log_end``: the offset after).

        Returns the transaction it aborted, for the log's ``.txnindex`` (None for a commit,
        or an abort with no transaction open here), with the LSO right after it."""
        self.check_marker(producer_id, epoch)
        entry = self.producers.get(producer_id)
        if entry is None or entry.epoch != epoch:
            entry = self.producers[producer_id] = ProducerEntry(epoch)
        entry.coordinator_epoch = coordinator_epoch
        first = self.ongoing.pop(producer_id, None)
        if first is None or commit:
            return None
        unstable = self.first_unstable_offset()
        return AbortedTxn(producer_id, first, offset, log_end if unstable is None else unstable)

    def check_marker(
        self, producer_id: int, epoch: int, coordinator_epoch: int | None = None
    ) -> None:
        """Raise INVALID_PRODUCER_EPOCH if a marker of ``epoch`` would go back in time, and
        TRANSACTION_COORDINATOR_FENCED if it comes from a coordinator older than the one
        that wrote the producer's last marker (a zombie coordinator, as Kafka checks it on
        the leader; replicated and replayed markers are not checked)."""
        entry = self.producers.get(producer_id)
        if entry is None:
            return
        if epoch < entry.epoch:
            raise KafkaError(
                ErrorCode.INVALID_PRODUCER_EPOCH,
                f"marker epoch {epoch} of producer {producer_id} is older than {entry.epoch}",
            )
        if coordinator_epoch is not None and coordinator_epoch < entry.coordinator_epoch:
            raise KafkaError(
                ErrorCode.TRANSACTION_COORDINATOR_FENCED,
                f"marker for producer {producer_id} from coordinator epoch "
                f"{coordinator_epoch}, older than {entry.coordinator_epoch}",
            )

    def load(self, log, rebuild_from: int | None = None) -> None:
        """Rebuild the state from a partition log (start-up, truncation): from its newest
        usable snapshot and the batches after it, else from all its batches.

        Each abort the replay meets is indexed in the log unless it already is, so the
        log can rebuild the ``.txnindex`` of its segments from ``rebuild_from`` on: the
        replay then starts from a snapshot at or before that offset."""
        from kbroker.txn import snapshot

        replay_from = snapshot.load(self, log, rebuild_from)
        if replay_from is None:
            self.producers.clear()
            self.ongoing.clear()
            replay_from = 0
        start = max(log.log_start_offset, replay_from)
        segments = log.segments
        for i, segment in enumerate(segments):
            if i + 1 < len(segments) and segments[i + 1].base_offset <= start:
                continue  # wholly below the snapshot (or the log start)
            for position, header in segment.batches(0):
                if header.last_offset >= start:
                    data = segment.read_at(position, header.size) if header.is_control else None
                    aborted = self.replay(header, data)
                    if aborted is not None:
                        log.append_aborted(aborted)

    def replay(self, header: BatchHeader, data) -> AbortedTxn | None:
        """Apply a batch already written with its offsets (start-up, a follower's append);
        ``data``, the batch's bytes, is needed only for a control batch. Returns the
        transaction an ABORT marker aborted, as :meth:`record_marker` does."""
        if not header.is_control:
            self.record(header, header.base_offset)
            return None
        try:
            _, records = decode_records(data, verify_crc=False)
            marker = parse_end_txn_marker(records[0].key, records[0].value)
        except Exception:  # not a transaction marker: nothing to replay
            return None
        return self.record_marker(
            header.producer_id,
            header.producer_epoch,
            marker.commit,
            header.base_offset,
            header.next_offset,
            marker.coordinator_epoch,
        )

    def find_duplicate(self, header: BatchHeader) -> BatchMetadata | None:
        """The earlier append of this very batch, if it is a retry."""
        entry = self.producers.get(header.producer_id)
        if entry is None or entry.epoch != header.producer_epoch:
            return None
        for batch in entry.batches:
            if (
                batch.first_sequence == header.base_sequence
                and batch.last_sequence == header.last_sequence
            ):
                return batch
        return None

    def check(self, header: BatchHeader) -> None:
        """Raise KafkaError unless the batch may be appended after the current state."""
        if header.is_control:
            raise KafkaError(
                ErrorCode.INVALID_RECORD, "control batches may not be produced by clients"
            )
        if header.producer_id == NO_PRODUCER_ID or header.base_sequence == NO_SEQUENCE:
            return
        entry = self.producers.get(header.producer_id)
        if entry is None:
            if header.base_sequence != 0:
                # Kafka: no state of this producer (e.g. its batches hit retention)
                raise KafkaError(
                    ErrorCode.UNKNOWN_PRODUCER_ID,
                    f"found no record of producer id {header.producer_id} on the broker",
                )
            return
        if header.producer_epoch < entry.epoch:
            raise KafkaError(
                ErrorCode.INVALID_PRODUCER_EPOCH,
                f"producer {header.producer_id} epoch {header.producer_epoch} is older than "
                f"the current epoch {entry.epoch}",
            )
        if header.producer_epoch > entry.epoch:
            if header.base_sequence != 0:
                raise KafkaError(
                    ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                    f"new epoch {header.producer_epoch} of producer {header.producer_id} "
                    f"starts at sequence {header.base_sequence}, not 0",
                )
            return
        last = entry.last_sequence
        if last == NO_SEQUENCE and header.base_sequence != 0:
            # the epoch was bumped by a transaction marker: sequences start again at 0
            raise KafkaError(
                ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                f"out of order sequence for producer {header.producer_id}: "
                f"{header.base_sequence}, expected 0",
            )
        if last != NO_SEQUENCE and not _in_sequence(last, header.base_sequence):
            raise KafkaError(
                ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                f"out of order sequence for producer {header.producer_id}: "
                f"{header.base_sequence} after {last}",
            )

    def record(self, header: BatchHeader, base_offset: int) -> None:
        """Remember an appended batch (``header`` as it was, ``base_offset`` as assigned)."""
        if header.producer_id == NO_PRODUCER_ID:
            return
        entry = self.producers.get(header.producer_id)
        if entry is None or entry.epoch != header.producer_epoch:
            coordinator_epoch = -1 if entry is None else entry.coordinator_epoch
            entry = ProducerEntry(header.producer_epoch, coordinator_epoch=coordinator_epoch)
            self.producers[header.producer_id] = entry
        if header.is_transactional and header.producer_id not in self.ongoing:
            self.ongoing[header.producer_id] = base_offset
        if header.base_sequence != NO_SEQUENCE:
            entry.batches.append(
                BatchMetadata(
                    header.base_sequence,
                    header.last_sequence,
                    base_offset,
                    base_offset + header.last_offset_delta,
                    header.max_timestamp,
                )
            )


def rebuild_aborted_index(log, from_offset: int) -> None:
    """Re-index the aborted transactions of ``log`` from ``from_offset`` on: the
    rebuild_txn_index a LogManager hands its logs (their .txnindex was found corrupt, or
    recovered after an unclean shutdown)."""
    ProducerStateTable().load(log, rebuild_from=from_offset)
