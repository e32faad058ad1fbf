"""Per-partition idempotent-producer state: sequence checks and duplicate detection.

Mirrors Kafka's ProducerStateManager: for each producer id the partition remembers the
epoch and the last few batches (first/last sequence and offsets), so a retried batch is
answered with its original offsets instead of being written twice, and a sequence gap
is refused with OUT_OF_ORDER_SEQUENCE_NUMBER. The state is rebuilt at start-up from
the batch headers in the log.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from kbroker.wire.errors import ErrorCode, KafkaError
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

    @property
    def last_sequence(self) -> int:
        return self.batches[-1].last_sequence if self.batches else NO_SEQUENCE


def _in_sequence(last: int, first: int) -> bool:
    return first == last + 1 or (first == 0 and last == MAX_SEQUENCE)


class ProducerStateTable:
    """The idempotence state of one partition."""

    def __init__(self) -> None:
        self.producers: dict[int, ProducerEntry] = {}

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
        if header.producer_id == NO_PRODUCER_ID or header.base_sequence == NO_SEQUENCE:
            return
        entry = self.producers.get(header.producer_id)
        if entry is None:
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
            entry = ProducerEntry(header.producer_epoch)
            self.producers[header.producer_id] = entry
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
