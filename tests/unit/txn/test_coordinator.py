"""The transaction coordinator's state machine, with a fake clock and in-memory storage."""

from __future__ import annotations

from kbroker.txn.coordinator import MARKER_PENDING, TransactionCoordinator, TxnConfig, TxnState
from kbroker.txn.records import txn_key
from kbroker.wire.errors import ErrorCode, KafkaError


class Harness:
    def __init__(self, **config) -> None:
        self.now = 1_000
        self.log: list[tuple[bytes, bytes | None]] = []
        self.markers: list[tuple[int, int, bool, list]] = []
        self.fail_persist = False
        self.next_pid = 100
        self.coordinator = self.make(**config)

    def make(self, **config) -> TransactionCoordinator:
        return TransactionCoordinator(
            self.allocate,
            persist=self.persist,
            write_markers=self.write_markers,
            config=TxnConfig(**config),
            clock=lambda: self.now,
        )

    def allocate(self) -> int:
        self.next_pid += 1
        return self.next_pid

    def persist(self, transactional_id: str, value: bytes | None) -> None:
        if self.fail_persist:
            raise KafkaError(ErrorCode.NOT_ENOUGH_REPLICAS)
        self.log.append((txn_key(transactional_id), value))

    def write_markers(self, transactional_id, pid, epoch, commit, partitions):
        self.markers.append((pid, epoch, commit, list(partitions)))
        return {tp: ErrorCode.NONE for tp in partitions}


def test_init_allocates_then_bumps_the_epoch():
    h = Harness()
    c = h.coordinator
    assert c.init_producer_id("t", 60_000) == (ErrorCode.NONE, 101, 0)
    assert c.init_producer_id("t", 60_000) == (ErrorCode.NONE, 101, 1)
    assert c.describe("t").state == TxnState.EMPTY
    # idempotent producers get a fresh id each time
    assert c.init_producer_id(None, 0) == (ErrorCode.NONE, 102, 0)


def test_init_validates_the_timeout_and_the_id():
    c = Harness(max_timeout_ms=1000).coordinator
    assert c.init_producer_id("t", 1001)[0] == ErrorCode.INVALID_TRANSACTION_TIMEOUT
    assert c.init_producer_id("t", 0)[0] == ErrorCode.INVALID_TRANSACTION_TIMEOUT
    assert c.init_producer_id("", 1000)[0] == ErrorCode.INVALID_REQUEST


def test_commit_writes_markers_and_completes():
    h = Harness()
    c = h.coordinator
    _, pid, epoch = c.init_producer_id("t", 60_000)
    assert c.add_partitions("t", pid, epoch, [("a", 0), ("b", 1)]) == ErrorCode.NONE
    meta = c.describe("t")
    assert (meta.state, meta.start_ms) == (TxnState.ONGOING, 1_000)
    h.now += 5
    assert c.add_partitions("t", pid, epoch, [("a", 1)]) == ErrorCode.NONE
    assert meta.start_ms == 1_000  # the transaction's start stays
    assert c.end_transaction("t", pid, epoch, True) == ErrorCode.NONE
    assert h.markers == [(pid, epoch, True, [("a", 0), ("a", 1), ("b", 1)])]
    assert (meta.state, meta.partitions) == (TxnState.COMPLETE_COMMIT, set())
    # a retried EndTxn is answered again; the opposite outcome is refused
    assert c.end_transaction("t", pid, epoch, True) == ErrorCode.NONE
    assert c.end_transaction("t", pid, epoch, False) == ErrorCode.INVALID_TXN_STATE
    # nothing open: ending is an invalid state
    c.init_producer_id("t", 60_000)
    assert c.end_transaction("t", pid, epoch + 1, False) == ErrorCode.INVALID_TXN_STATE


def test_states_are_persisted_in_order():
    h = Harness()
    c = h.coordinator
    _, pid, epoch = c.init_producer_id("t", 60_000)
    c.add_partitions("t", pid, epoch, [("a", 0)])
    c.end_transaction("t", pid, epoch, False)
    reloaded = h.make()
    reloaded.load(h.log)
    meta = reloaded.describe("t")
    assert (meta.producer_id, meta.producer_epoch, meta.state) == (
        pid,
        epoch,
        TxnState.COMPLETE_ABORT,
    )
    from kbroker.txn.records import decode

    states = [decode(k, v)[1].status for k, v in h.log]
    assert states == [0, 1, 3, 5]  # Empty, Ongoing, PrepareAbort, CompleteAbort


def test_a_new_instance_fences_the_zombie_and_aborts_its_transaction():
    h = Harness()
    c = h.coordinator
    _, pid, epoch = c.init_producer_id("t", 60_000)
    c.add_partitions("t", pid, epoch, [("a", 0)])
    code, pid2, epoch2 = c.init_producer_id("t", 60_000)
    assert (code, pid2, epoch2) == (ErrorCode.NONE, pid, epoch + 2)
    assert h.markers == [(pid, epoch + 1, False, [("a", 0)])]  # aborted with the fencing epoch
    assert c.add_partitions("t", pid, epoch, [("a", 0)]) == ErrorCode.PRODUCER_FENCED
    assert c.end_transaction("t", pid, epoch, True) == ErrorCode.PRODUCER_FENCED
    assert c.add_partitions("t", pid + 7, epoch2, [("a", 0)]) == (
        ErrorCode.INVALID_PRODUCER_ID_MAPPING
    )


def test_kip360_recovery_bump_and_its_retry():
    c = Harness().coordinator
    _, pid, epoch = c.init_producer_id("t", 60_000)
    assert c.init_producer_id("t", 60_000, pid, epoch) == (ErrorCode.NONE, pid, epoch + 1)
    # the answer was lost: the retry with the old epoch gets the same answer
    assert c.init_producer_id("t", 60_000, pid, epoch) == (ErrorCode.NONE, pid, epoch + 1)
    assert c.init_producer_id("t", 60_000, pid, epoch + 1) == (ErrorCode.NONE, pid, epoch + 2)
    # an epoch older than the last two is a zombie
    assert c.init_producer_id("t", 60_000, pid, epoch)[0] == ErrorCode.PRODUCER_FENCED
    assert c.init_producer_id("t", 60_000, pid + 50, 0)[0] == ErrorCode.INVALID_PRODUCER_ID_MAPPING


def test_an_exhausted_epoch_rotates_the_producer_id():
    c = Harness().coordinator
    _, pid, _ = c.init_producer_id("t", 60_000)
    c.describe("t").producer_epoch = 32766
    code, new_pid, epoch = c.init_producer_id("t", 60_000)
    assert (code, epoch) == (ErrorCode.NONE, 0) and new_pid != pid


def test_timed_out_transactions_are_aborted_and_the_producer_fenced():
    h = Harness(abort_check_interval_ms=100)
    c = h.coordinator
    _, pid, epoch = c.init_producer_id("t", 1_000)
    c.add_partitions("t", pid, epoch, [("a", 0)])
    h.now += 1_000
    c.poll()
    assert c.describe("t").state == TxnState.ONGOING  # not past the timeout yet
    h.now += 101
    c.poll()
    assert h.markers == [(pid, epoch + 1, False, [("a", 0)])]
    assert c.describe("t").state == TxnState.COMPLETE_ABORT
    assert c.end_transaction("t", pid, epoch, True) == ErrorCode.PRODUCER_FENCED


def test_idle_ids_expire_with_a_tombstone():
    h = Harness(id_expiration_ms=500, expire_check_interval_ms=100)
    c = h.coordinator
    c.init_producer_id("t", 1_000)
    h.now += 600
    c.poll()
    assert c.describe("t") is None
    assert h.log[-1] == (txn_key("t"), None)
    reloaded = h.make()
    reloaded.load(h.log)
    assert reloaded.describe("t") is None


def test_a_failed_write_changes_nothing():
    h = Harness()
    c = h.coordinator
    _, pid, epoch = c.init_producer_id("t", 60_000)
    h.fail_persist = True
    assert c.add_partitions("t", pid, epoch, [("a", 0)]) == ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert c.describe("t").state == TxnState.EMPTY


def test_interrupted_commit_is_finished_after_a_restart():
    h = Harness()
    c = h.coordinator
    _, pid, epoch = c.init_producer_id("t", 60_000)
    c.add_partitions("t", pid, epoch, [("a", 0)])
    h.markers_ok = False
    c.write_markers = lambda *args: {("a", 0): ErrorCode.NOT_LEADER_OR_FOLLOWER}
    assert c.end_transaction("t", pid, epoch, True) == ErrorCode.NONE
    assert c.describe("t").state == TxnState.PREPARE_COMMIT
    assert c.add_partitions("t", pid, epoch, [("a", 0)]) == ErrorCode.CONCURRENT_TRANSACTIONS
    reloaded = h.make()
    reloaded.load(h.log)
    reloaded.recover()
    assert h.markers == [(pid, epoch, True, [("a", 0)])]
    assert reloaded.describe("t").state == TxnState.COMPLETE_COMMIT


def test_verify_and_list():
    h = Harness()
    c = h.coordinator
    _, pid, epoch = c.init_producer_id("t", 60_000)
    c.add_partitions("t", pid, epoch, [("a", 0)])
    c.init_producer_id("u", 60_000)
    assert c.verify_partitions("t", pid, epoch, [("a", 0), ("a", 1)]) == {
        ("a", 0): ErrorCode.NONE,
        ("a", 1): ErrorCode.INVALID_TXN_STATE,
    }
    found, unknown = c.list(["Ongoing", "Bogus"])
    assert ([m.transactional_id for m in found], unknown) == (["t"], ["Bogus"])
    assert {m.transactional_id for m in c.list()[0]} == {"t", "u"}
    assert [m.transactional_id for m in c.list(producer_ids=[pid])[0]] == ["t"]
    h.now += 50
    assert [m.transactional_id for m in c.list(min_duration_ms=10)[0]] == ["t"]
    assert c.list(min_duration_ms=100)[0] == []


def test_pending_markers_complete_on_resume_and_are_not_written_twice():
    h = Harness()
    c = h.coordinator
    _, pid, epoch = c.init_producer_id("t", 60_000)
    c.add_partitions("t", pid, epoch, [("a", 0), ("b", 0)])
    calls = []

    def markers(txn_id, pid, epoch, commit, partitions):
        calls.append(list(partitions))
        # ("b", 0) is led by another broker: its marker is on its way
        return {tp: MARKER_PENDING if tp == ("b", 0) else ErrorCode.NONE for tp in partitions}

    c.write_markers = markers
    assert c.end_transaction("t", pid, epoch, True) == ErrorCode.NONE
    assert c.ending("t") and c.describe("t").state == TxnState.PREPARE_COMMIT
    c.write_markers = lambda txn_id, pid, epoch, commit, partitions: (
        calls.append(list(partitions)) or {tp: ErrorCode.NONE for tp in partitions}
    )
    c.resume("t")  # the other broker wrote it
    assert calls == [[("a", 0), ("b", 0)], [("b", 0)]]
    assert c.describe("t").state == TxnState.COMPLETE_COMMIT and not c.ending("t")


def test_unload_forgets_the_ids_of_a_partition_and_load_brings_them_back():
    h = Harness()
    c = h.coordinator
    for name in ("t1", "t2"):
        c.init_producer_id(name, 60_000)
    _, pid, epoch = c.init_producer_id("t1", 60_000)
    assert c.unload(lambda txn_id: txn_id == "t1") == ["t1"]
    assert c.describe("t1") is None and c.describe("t2") is not None
    c.load([(k, v) for k, v in h.log if k == txn_key("t1")])
    meta = c.describe("t1")
    assert (meta.producer_id, meta.producer_epoch) == (pid, epoch)
