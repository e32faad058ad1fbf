"""Leader-side replication state: HW, ISR shrink/expand and acks=all waiters, fake clock."""

from kbroker.cluster.replica_state import LeaderReplicaState
from kbroker.wire.errors import ErrorCode

T0 = 1_700_000_000_000
LAG = 30_000


def leader(isr=(1, 2, 3), leo=10, hw=10, replicas=(1, 2, 3), epoch=5, now=T0):
    return LeaderReplicaState.become_leader(
        leader_id=1,
        leader_epoch=epoch,
        replicas=replicas,
        isr=isr,
        isr_version=7,
        leader_log_end_offset=leo,
        high_watermark=hw,
        now_ms=now,
    )


def test_new_leader_knows_no_follower_offsets():
    state = leader(leo=10, hw=8)
    assert state.high_watermark == 8
    assert state.leader_epoch_start_offset == 10
    assert state.followers[2].log_end_offset == -1
    assert state.followers[2].last_caught_up_time_ms == T0
    assert 1 not in state.followers
    # the checkpointed HW can never be above the log end
    assert leader(leo=5, hw=9).high_watermark == 5


def test_out_of_isr_follower_starts_never_caught_up():
    state = leader(isr=(1, 2))
    assert state.followers[3].last_caught_up_time_ms == 0
    assert state.followers[2].last_caught_up_time_ms == T0


def test_high_watermark_is_min_leo_over_isr():
    state = leader(leo=10, hw=8)
    assert state.leader_appended(15) is False  # followers unknown: HW holds
    assert state.follower_fetched(2, 12, 15, T0 + 1) is False  # 3 still unknown
    assert state.high_watermark == 8
    assert state.follower_fetched(3, 11, 15, T0 + 2) is True
    assert state.high_watermark == 11
    assert state.follower_fetched(3, 15, 15, T0 + 3) is True
    assert state.high_watermark == 12
    assert state.follower_fetched(2, 15, 15, T0 + 4) is True
    assert state.high_watermark == 15


def test_high_watermark_never_moves_backwards():
    state = leader(leo=10, hw=10)
    state.follower_fetched(2, 10, 10, T0)
    state.follower_fetched(3, 10, 10, T0)
    assert state.high_watermark == 10
    # a follower that truncated and fetches from below the HW does not lower it
    assert state.follower_fetched(2, 4, 10, T0 + 1) is False
    assert state.high_watermark == 10


def test_single_member_isr_follows_leader_leo():
    state = leader(isr=(1,), leo=3, hw=3)
    assert state.leader_appended(7) is True
    assert state.high_watermark == 7
    # a follower outside the ISR does not hold the HW back
    state.follower_fetched(2, 0, 7, T0)
    assert state.high_watermark == 7


def test_unknown_replica_raises_key_error():
    state = leader()
    try:
        state.follower_fetched(9, 0, 10, T0)
    except KeyError:
        pass
    else:
        raise AssertionError("expected KeyError")


def test_last_caught_up_time_rules():
    state = leader(leo=10, hw=10)
    f = state.followers[2]
    # fetch at the leader's LEO: caught up now
    state.follower_fetched(2, 10, 10, T0 + 100)
    assert f.last_caught_up_time_ms == T0 + 100
    assert f.last_fetch_leader_leo == 10 and f.last_fetch_time_ms == T0 + 100
    # leader moved to 20; follower still at 10: not caught up at this fetch, but it has all
    # the leader had at its previous fetch (10), so it was caught up as of that fetch
    state.leader_appended(20)
    state.follower_fetched(2, 10, 20, T0 + 200)
    assert f.last_caught_up_time_ms == T0 + 100
    # it reaches 15 < 20 (the LEO at its previous fetch): no progress in caught-up time
    state.leader_appended(30)
    state.follower_fetched(2, 15, 30, T0 + 300)
    assert f.last_caught_up_time_ms == T0 + 100
    # it fetches 30, the leader's LEO at its previous fetch, while the leader is at 40
    state.leader_appended(40)
    state.follower_fetched(2, 30, 40, T0 + 400)
    assert f.last_caught_up_time_ms == T0 + 300  # the time of the fetch that saw LEO 30
    assert f.log_end_offset == 30


def test_shrink_isr_after_lag_time():
    state = leader(leo=10, hw=10, now=T0)
    state.follower_fetched(2, 10, 10, T0 + 1000)
    state.leader_appended(20)
    # 3 never fetched; its caught-up time is the leadership start T0
    assert state.maybe_shrink_isr(T0 + LAG, LAG) is None  # exactly at the limit: in sync
    assert state.out_of_sync_replicas(T0 + LAG + 1, LAG) == {3}
    # 2 is caught up as of T0+1000
    proposal = state.maybe_shrink_isr(T0 + LAG + 1, LAG)
    assert proposal == frozenset({1, 2})
    assert state.pending_isr == frozenset({1, 2})
    # a second proposal waits for the first to be recorded
    assert state.maybe_shrink_isr(T0 + LAG + 5000, LAG) is None
    # the committed ISR still counts 3 for acks until recorded
    assert state.isr == frozenset({1, 2, 3})
    state.follower_fetched(2, 20, 20, T0 + LAG + 2)
    assert state.high_watermark == 10  # 3 still holds it (maximal ISR)
    assert state.isr_committed(proposal, 8) is True
    assert state.high_watermark == 20
    assert state.isr_version == 8 and state.pending_isr is None


def test_follower_at_leader_leo_is_never_out_of_sync():
    state = leader(leo=10, hw=10)
    state.follower_fetched(2, 10, 10, T0)
    state.follower_fetched(3, 10, 10, T0)
    # no appends for a long time: the followers are at the LEO, nothing to shrink
    assert state.maybe_shrink_isr(T0 + 10 * LAG, LAG) is None


def test_shrink_to_leader_alone():
    state = leader(isr=(1, 2), replicas=(1, 2), leo=10, hw=10)
    state.leader_appended(11)
    assert state.maybe_shrink_isr(T0 + LAG + 1, LAG) == frozenset({1})
    assert state.isr_committed({1}, 8) is True
    assert state.high_watermark == 11


def test_shrink_proposal_lost_is_dropped():
    state = leader(leo=10, hw=10)
    state.leader_appended(11)
    assert state.maybe_shrink_isr(T0 + LAG + 1, LAG) == frozenset({1})
    state.isr_failed()
    assert state.pending_isr is None and state.isr == frozenset({1, 2, 3})
    assert state.maybe_shrink_isr(T0 + LAG + 2, LAG) == frozenset({1})


def test_expand_isr_when_follower_reaches_hw_and_epoch_start():
    state = leader(isr=(1, 2), leo=10, hw=10)
    state.follower_fetched(2, 10, 10, T0)
    state.leader_appended(14)
    state.follower_fetched(2, 14, 14, T0 + 1)
    assert state.high_watermark == 14
    state.follower_fetched(3, 9, 14, T0 + 2)
    assert state.is_follower_in_sync(3) is False
    assert state.maybe_expand_isr() is None
    state.follower_fetched(3, 13, 14, T0 + 3)  # below the HW 14
    assert state.maybe_expand_isr() is None
    state.follower_fetched(3, 14, 14, T0 + 4)
    assert state.maybe_expand_isr() == frozenset({1, 2, 3})
    # from now on 3 counts for the HW, before the change is recorded
    state.leader_appended(20)
    state.follower_fetched(2, 20, 20, T0 + 5)
    assert state.high_watermark == 14
    state.follower_fetched(3, 18, 20, T0 + 6)
    assert state.high_watermark == 18
    assert state.isr_committed({1, 2, 3}, 8) is False
    assert state.isr == frozenset({1, 2, 3})


def test_expand_needs_leader_epoch_start_offset():
    # leader's log ends at 10 when it takes over; checkpointed HW is 6
    state = leader(isr=(1,), replicas=(1, 2), leo=10, hw=6)
    assert state.high_watermark == 10  # ISR is the leader alone
    state = leader(isr=(1, 2), replicas=(1, 2, 3), leo=10, hw=6)
    state.follower_fetched(3, 8, 10, T0)  # >= HW 6 but below the epoch start 10
    assert state.is_follower_in_sync(3) is False
    state.follower_fetched(3, 10, 10, T0 + 1)
    assert state.is_follower_in_sync(3) is True


def test_update_leadership_new_epoch_resets_caught_up_time():
    state = leader(leo=10, hw=10)
    state.follower_fetched(2, 10, 10, T0 + 5)
    state.leader_appended(12)
    state.maybe_shrink_isr(T0 + LAG + 6, LAG)
    # the controller (a broker died) sends epoch 6 with ISR {1, 2}
    state.update_leadership(6, (1, 2, 3), (1, 2), 11, T0 + LAG + 10)
    assert state.leader_epoch == 6
    assert state.leader_epoch_start_offset == 12
    assert state.pending_isr is None
    assert state.followers[2].log_end_offset == 10  # offsets kept
    assert state.followers[2].last_caught_up_time_ms == T0 + LAG + 10
    assert state.followers[3].last_caught_up_time_ms == 0
    assert state.isr == frozenset({1, 2}) and state.isr_version == 11


def test_follower_dropped_by_the_controller_rejoins_only_by_fetching():
    # an idle partition: every follower's LEO equals the leader's; broker 3 dies and the
    # controller's new epoch leaves it out of the ISR
    state = leader(leo=0, hw=0)
    state.follower_fetched(2, 0, 0, T0)
    state.follower_fetched(3, 0, 0, T0)
    state.update_leadership(6, (1, 2, 3), (1, 2), 9, T0 + 1)
    assert state.is_follower_in_sync(3) is False
    assert state.maybe_expand_isr() is None  # its old LEO 0 does not bring it back
    state.follower_fetched(3, 0, 0, T0 + 2)  # it returns and fetches in epoch 6
    assert state.maybe_expand_isr() == frozenset({1, 2, 3})


def test_update_leadership_shrinks_assignment_and_advances_hw():
    state = leader(leo=10, hw=10)
    state.follower_fetched(2, 10, 10, T0)
    state.leader_appended(12)
    state.follower_fetched(2, 12, 12, T0)
    assert state.high_watermark == 10
    assert state.update_leadership(6, (1, 2), (1, 2), 8, T0) is True
    assert 3 not in state.followers
    assert state.high_watermark == 12


def test_acks_all_not_enough_replicas_at_append():
    state = leader(isr=(1,), replicas=(1, 2, 3))
    assert state.check_append(2) == ErrorCode.NOT_ENOUGH_REPLICAS
    assert state.check_append(1) == ErrorCode.NONE
    state = leader()
    assert state.check_append(3) == ErrorCode.NONE
    assert state.check_append(4) == ErrorCode.NOT_ENOUGH_REPLICAS


def test_acks_all_waiter_completes_when_isr_has_it():
    state = leader(leo=10, hw=10)
    state.leader_appended(13)  # a batch at offsets 10..12
    waiter = state.add_waiter(13, T0 + 30_000, 2, token="req-1")
    assert not waiter.done
    state.follower_fetched(2, 13, 13, T0 + 1)
    assert state.poll_waiters(T0 + 1) == []
    assert state.follower_fetched(3, 12, 13, T0 + 2) is True
    assert state.poll_waiters(T0 + 2) == []
    assert state.follower_fetched(3, 13, 13, T0 + 3) is True
    assert state.poll_waiters(T0 + 3) == [waiter]
    assert waiter.done and waiter.error == ErrorCode.NONE and waiter.token == "req-1"
    assert state.waiters == []


def test_acks_all_single_member_isr_completes_at_once():
    state = leader(isr=(1,), leo=10, hw=10)
    state.leader_appended(11)
    waiter = state.add_waiter(11, T0 + 1000, 1)
    assert waiter.done and waiter.error == ErrorCode.NONE
    assert state.waiters == []


def test_acks_all_not_enough_replicas_after_append():
    state = leader(isr=(1, 2), replicas=(1, 2), leo=10, hw=10)
    state.leader_appended(11)
    assert state.check_append(2) == ErrorCode.NONE
    waiter = state.add_waiter(11, T0 + 60_000, 2)
    # follower falls out; the ISR shrinks to the leader alone and the HW passes the batch
    proposal = state.maybe_shrink_isr(T0 + LAG + 1, LAG)
    assert proposal == frozenset({1})
    assert state.poll_waiters(T0 + LAG + 1) == []
    state.isr_committed(proposal, 8)
    assert state.poll_waiters(T0 + LAG + 2) == [waiter]
    assert waiter.error == ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND


def test_acks_all_timeout_and_order():
    state = leader(leo=10, hw=10)
    state.leader_appended(12)
    first = state.add_waiter(11, T0 + 100, 2)
    second = state.add_waiter(12, T0 + 50, 2)
    assert state.next_deadline_ms() == T0 + 50
    assert state.poll_waiters(T0 + 49) == []
    assert state.poll_waiters(T0 + 50) == [second]
    assert second.error == ErrorCode.REQUEST_TIMED_OUT
    state.follower_fetched(2, 11, 12, T0 + 60)
    state.follower_fetched(3, 11, 12, T0 + 60)
    assert state.poll_waiters(T0 + 60) == [first]
    assert first.error == ErrorCode.NONE
    assert state.next_deadline_ms() is None


def test_resign_fails_waiters():
    state = leader(leo=10, hw=10)
    state.leader_appended(12)
    a = state.add_waiter(11, T0 + 100, 2)
    b = state.add_waiter(12, T0 + 100, 2)
    assert state.resign() == [a, b]
    assert a.error == b.error == ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert state.waiters == []
