"""The transaction index (Kafka's ``.txnindex``): its bytes, order, truncation, lookup."""

from __future__ import annotations

import os

import pytest

from kbroker.log.errors import CorruptIndex
from kbroker.log.txn_index import ENTRY_SIZE, AbortedTxn, TransactionIndex

# version 0 | producer id 7 | first offset 10 | last offset 13 | last stable offset 12
KNOWN_ABORT = bytes.fromhex(
    "0000"  # version 0
    "0000000000000007"  # producer id 7
    "000000000000000a"  # first offset 10
    "000000000000000d"  # last offset 13 (the ABORT marker)
    "000000000000000c"  # last stable offset 12
)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "00000000000000000010.txnindex")


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_an_entry_is_kafkas_34_byte_aborted_txn(path):
    index = TransactionIndex(path, 10)
    assert not os.path.exists(path)  # no file until there is an entry
    index.append(AbortedTxn(7, 10, 13, 12))
    assert ENTRY_SIZE == 34
    assert read(path) == KNOWN_ABORT
    index.append(AbortedTxn(9, 5, 20, 21))  # a transaction begun in an earlier segment
    assert read(path) == KNOWN_ABORT + bytes.fromhex(
        "00000000000000000009000000000000000500000000000000140000000000000015"
    )
    assert TransactionIndex.load(path, 10).entries() == [
        AbortedTxn(7, 10, 13, 12),
        AbortedTxn(9, 5, 20, 21),
    ]


def test_entries_follow_in_marker_order(path):
    index = TransactionIndex(path, 10)
    with pytest.raises(ValueError):
        index.append(AbortedTxn(1, 0, 9, 10))  # the marker is below the segment
    index.append(AbortedTxn(1, 10, 13, 14))
    for last in (12, 13):
        with pytest.raises(ValueError):
            index.append(AbortedTxn(2, 11, last, 14))
    assert read(path) == AbortedTxn(1, 10, 13, 14).encode()
    assert index.last_offset == 13


def test_truncation_drops_the_entries_whose_marker_is_at_or_past_the_offset(path):
    index = TransactionIndex(path, 10)
    entries = [AbortedTxn(1, 10, 13, 14), AbortedTxn(2, 11, 20, 21), AbortedTxn(1, 22, 30, 31)]
    for txn in entries:
        index.append(txn)
    index.truncate_to(31)  # nothing at or past 31
    assert len(read(path)) == 3 * ENTRY_SIZE
    index.truncate_to(20)
    assert read(path) == entries[0].encode()
    assert index.entries() == entries[:1]
    index.append(AbortedTxn(3, 15, 16, 17))  # appends go on after the cut
    index.truncate_to(10)
    assert not os.path.exists(path) and index.last_offset is None


def test_collect_stops_at_an_entry_whose_lso_closes_the_range(path):
    index = TransactionIndex(path, 0)
    a = AbortedTxn(1, 0, 5, 2)  # producer 2's transaction from 2 was still open
    b = AbortedTxn(2, 2, 8, 9)  # nothing open after it
    c = AbortedTxn(1, 9, 12, 13)
    for txn in (a, b, c):
        index.append(txn)
    found: list[AbortedTxn] = []
    assert index.collect(0, 3, found) is True  # b's LSO (9) reaches 3: c cannot overlap
    assert found == [a, b]
    found = []
    assert index.collect(6, 9, found) is True
    assert found == [b]
    found = []
    assert index.collect(0, 20, found) is False  # a later segment may hold an overlap
    assert found == [a, b, c]
    found = []
    assert index.collect(13, 20, found) is False and found == []


@pytest.mark.parametrize(
    "data, reason",
    [
        (KNOWN_ABORT + b"\x00", "size 35 is not a multiple of 34"),
        (b"\x00\x01" + KNOWN_ABORT[2:], "entry version 1"),
        (KNOWN_ABORT + KNOWN_ABORT, "out of order"),
    ],
)
def test_a_corrupt_file_is_refused_naming_it(path, data, reason):
    with open(path, "wb") as f:
        f.write(data)
    with pytest.raises(CorruptIndex) as caught:
        TransactionIndex.load(path, 10)
    assert path in str(caught.value) and reason in str(caught.value)


def test_a_marker_below_the_segment_base_is_corrupt(path):
    with open(path, "wb") as f:
        f.write(KNOWN_ABORT)  # marker at 13
    assert TransactionIndex.load(path, 13).entries() == [AbortedTxn(7, 10, 13, 12)]
    with pytest.raises(CorruptIndex, match="out of order"):
        TransactionIndex.load(path, 14)


def test_rename_and_clear_move_and_remove_the_file(path):
    index = TransactionIndex(path, 10)
    assert index.rename(path + ".deleted") is False  # no file yet
    index = TransactionIndex(path, 10)
    index.append(AbortedTxn(7, 10, 13, 12))
    index.flush()
    assert index.rename(path + ".deleted") is True
    assert read(path + ".deleted") == KNOWN_ABORT and not os.path.exists(path)
    index.clear()
    assert not os.path.exists(path + ".deleted") and len(index) == 0
