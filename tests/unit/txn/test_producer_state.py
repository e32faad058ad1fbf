"""Idempotent-producer sequence checks, as Kafka's ProducerStateManager makes them."""

from __future__ import annotations

import pytest

from kbroker.txn.producer_state import ProducerStateTable
from kbroker.wire.errors import ErrorCode, KafkaError
from kbroker.wire.records import BatchHeader


def header(producer_id=7, epoch=0, sequence=0, records=1) -> BatchHeader:
    return BatchHeader(
        0, 100, -1, 2, 0, 0, records - 1, 0, 0, producer_id, epoch, sequence, records
    )


def appended(table: ProducerStateTable, batch: BatchHeader, offset: int) -> None:
    table.check(batch)
    table.record(batch, offset)


def test_in_order_batches_are_accepted_and_a_retry_is_found_with_its_offsets():
    table = ProducerStateTable()
    appended(table, header(sequence=0, records=3), 10)
    appended(table, header(sequence=3, records=2), 13)
    duplicate = table.find_duplicate(header(sequence=0, records=3))
    assert (duplicate.first_offset, duplicate.last_offset) == (10, 12)
    assert table.find_duplicate(header(sequence=5, records=1)) is None


def test_a_gap_is_out_of_order():
    table = ProducerStateTable()
    appended(table, header(sequence=0, records=2), 0)
    with pytest.raises(KafkaError) as caught:
        table.check(header(sequence=5))
    assert caught.value.code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


def test_old_epoch_is_fenced_and_new_epoch_must_start_at_zero():
    table = ProducerStateTable()
    appended(table, header(epoch=1, sequence=0), 0)
    with pytest.raises(KafkaError) as caught:
        table.check(header(epoch=0, sequence=1))
    assert caught.value.code == ErrorCode.INVALID_PRODUCER_EPOCH
    with pytest.raises(KafkaError) as caught:
        table.check(header(epoch=2, sequence=4))
    assert caught.value.code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    appended(table, header(epoch=2, sequence=0), 1)


def test_sequence_wraps_after_int32_max():
    table = ProducerStateTable()
    table.record(header(sequence=0x7FFFFFFF), 0)  # known from the log
    appended(table, header(sequence=0), 1)


def test_only_the_last_five_batches_are_remembered():
    table = ProducerStateTable()
    for sequence in range(6):
        appended(table, header(sequence=sequence), sequence)
    assert table.find_duplicate(header(sequence=0)) is None
    assert table.find_duplicate(header(sequence=1)).first_offset == 1


def test_non_idempotent_batches_are_not_tracked():
    table = ProducerStateTable()
    appended(table, header(producer_id=-1, sequence=-1), 0)
    assert table.producers == {}
