"""What kbroker's Partition does with a log and its producer state, for the txn tests."""

from __future__ import annotations

from kbroker.log.partition_log import PartitionLog
from kbroker.txn import snapshot
from kbroker.txn.producer_state import ProducerStateTable
from kbroker.wire.records import split_batches


class Owner:
    """What Partition does: a table fed by appends, snapshots written by the log's hook."""

    def __init__(self, plog: PartitionLog) -> None:
        self.log = plog
        self.table = ProducerStateTable()
        self.table.load(plog)
        plog.on_snapshot = lambda offset: snapshot.write(
            plog.directory, offset, self.table, plog.log_start_offset
        )

    def produce(self, data: bytes) -> None:
        (header,) = split_batches(data)
        self.table.check(header)
        appended = self.log.append(data)
        self.table.record(header, appended.base_offset)


def record_replays(monkeypatch) -> list:
    """The headers ProducerStateTable.replay is given from now on (what start-up re-reads)."""
    replayed = []
    original = ProducerStateTable.replay
    monkeypatch.setattr(
        ProducerStateTable,
        "replay",
        lambda self, header, data: replayed.append(header) or original(self, header, data),
    )
    return replayed
