"""Idempotent-producer sequence checks, as Kafka's ProducerStateManager makes them."""

from __future__ import annotations

import pytest

from kbroker.txn.producer_state import AbortedTxn, ProducerStateTable
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


def txn_header(producer_id=7, epoch=0, sequence=0, records=1) -> BatchHeader:
    return header(producer_id, epoch, sequence, records)._replace(attributes=0x10)


def test_open_transactions_bound_the_lso_and_an_abort_yields_its_index_entry():
    table = ProducerStateTable()
    assert table.last_stable_offset(10) == 10
    appended(table, txn_header(producer_id=1, records=2), 10)  # 10-11
    appended(table, txn_header(producer_id=2, records=1), 12)  # 12
    assert table.last_stable_offset(13) == 10
    # abort producer 1: its transaction 10..13, and the LSO then is producer 2's start
    assert table.record_marker(1, 0, False, 13, 14) == AbortedTxn(1, 10, 13, 12)
    assert table.last_stable_offset(14) == 12
    assert table.record_marker(2, 0, True, 14, 15) is None  # a commit is not indexed
    assert table.last_stable_offset(15) == 15
    appended(table, txn_header(producer_id=1, sequence=2), 15)
    # nothing else open: the LSO after the abort is the offset after the marker
    assert table.record_marker(1, 0, False, 16, 17) == AbortedTxn(1, 15, 16, 17)
    assert table.record_marker(1, 0, False, 17, 18) is None  # no transaction open


def test_a_marker_bumping_the_epoch_resets_sequences_and_fences():
    table = ProducerStateTable()
    appended(table, txn_header(epoch=0, sequence=0, records=3), 0)
    table.record_marker(7, 1, False, 3, 4)  # the coordinator fenced epoch 0
    with pytest.raises(KafkaError) as caught:
        table.check(txn_header(epoch=0, sequence=3))
    assert caught.value.code == ErrorCode.INVALID_PRODUCER_EPOCH
    with pytest.raises(KafkaError) as caught:
        table.check(txn_header(epoch=1, sequence=5))
    assert caught.value.code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    with pytest.raises(KafkaError) as caught:
        table.check_marker(7, 0)
    assert caught.value.code == ErrorCode.INVALID_PRODUCER_EPOCH
    table.check(txn_header(epoch=2, sequence=0))


def test_a_marker_from_an_older_coordinator_is_fenced_on_the_leader_only():
    table = ProducerStateTable()
    appended(table, txn_header(epoch=0, sequence=0, records=3), 0)
    table.check_marker(7, 0, coordinator_epoch=2)
    table.record_marker(7, 0, True, 3, 4, coordinator_epoch=2)
    appended(table, txn_header(epoch=0, sequence=3, records=1), 4)
    with pytest.raises(KafkaError) as caught:
        table.check_marker(7, 0, coordinator_epoch=1)  # a coordinator that lost its role
    assert caught.value.code == ErrorCode.TRANSACTION_COORDINATOR_FENCED
    table.check_marker(7, 0, coordinator_epoch=2)  # the same coordinator again: fine
    table.check_marker(7, 0, coordinator_epoch=3)  # its successor: fine
    table.record_marker(7, 0, False, 5, 6, coordinator_epoch=1)  # replayed: not checked
    assert table.producers[7].coordinator_epoch == 1


def test_unknown_producer_and_control_batches_from_clients():
    table = ProducerStateTable()
    with pytest.raises(KafkaError) as caught:
        table.check(header(producer_id=9, sequence=4))
    assert caught.value.code == ErrorCode.UNKNOWN_PRODUCER_ID
    with pytest.raises(KafkaError) as caught:
        table.check(header()._replace(attributes=0x30))
    assert caught.value.code == ErrorCode.INVALID_RECORD


def test_state_is_rebuilt_from_a_log(tmp_path):
    from kbroker.log.partition_log import PartitionLog
    from kbroker.wire.record import build_batch, end_txn_marker

    log = PartitionLog(str(tmp_path / "t-0"))
    for pid in (1, 2, 3):
        log.append(
            build_batch(
                [(None, b"v", None, None)],
                producer_id=pid,
                producer_epoch=0,
                base_sequence=0,
                transactional=True,
            )
        )
    for pid, commit in ((1, False), (2, True)):
        key, value = end_txn_marker(commit, 0)
        log.append(
            build_batch(
                [(key, value, None, None)],
                producer_id=pid,
                producer_epoch=0,
                transactional=True,
                control=True,
            )
        )
    table = ProducerStateTable()
    table.load(log)
    assert log.aborted_transactions(0, log.log_end_offset) == [AbortedTxn(1, 0, 3, 1)]
    assert table.ongoing == {3: 2}
    assert table.last_stable_offset(log.log_end_offset) == 2
    assert table.find_duplicate(txn_header(producer_id=2)).first_offset == 1
    log.close()
