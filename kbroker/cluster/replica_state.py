"""Leader-side replication state of one partition, sans-IO (Kafka's Partition and Replica).

The leader of a partition tracks, for every follower in the assignment, the log end offset
(LEO) its last Fetch named and when it was last caught up to the leader. From those it
derives the high watermark (the smallest LEO over the ISR, never moving backwards), decides
when the ISR shrinks (a follower not caught up within ``replica.lag.time.max.ms``) or
expands (a follower whose LEO reached the high watermark and the start of the leader's
epoch), and completes acks=all produce waiters once the high watermark passes them.

Nothing here waits or writes: ISR changes are *proposed* (``maybe_shrink_isr``,
``maybe_expand_isr``) and take effect for the in-sync-replica count once the caller has
recorded them with a conditional write and calls :meth:`LeaderReplicaState.isr_committed`
(or :meth:`isr_failed`). While a change is in flight the high watermark is computed over
the *maximal* ISR (current members plus those being added), as Kafka does, so it never
advances past a replica that is about to count. Times are milliseconds from the caller's
clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kbroker.wire.errors import ErrorCode

UNKNOWN_OFFSET = -1


@dataclass
class FollowerState:
    """What the leader knows of one follower (Kafka's ReplicaState)."""

    replica_id: int
    log_end_offset: int = UNKNOWN_OFFSET
    log_start_offset: int = UNKNOWN_OFFSET
    # the leader's LEO when this follower last fetched, and when that was
    last_fetch_leader_leo: int = UNKNOWN_OFFSET
    last_fetch_time_ms: int = 0
    last_caught_up_time_ms: int = 0

    def is_caught_up(self, leader_leo: int, now_ms: int, lag_time_max_ms: int) -> bool:
        return (
            self.log_end_offset == leader_leo
            or now_ms - self.last_caught_up_time_ms <= lag_time_max_ms
        )


@dataclass(eq=False)
class AckWaiter:
    """One acks=all produce to one partition, waiting for the ISR to reach its end.

    ``required_offset`` is the batch's last offset + 1. ``token`` is the caller's (a future,
    a callback); this module never looks at it. ``error`` is set when ``done``.
    """

    required_offset: int
    deadline_ms: int
    min_insync_replicas: int
    token: Any = None
    done: bool = False
    error: ErrorCode = ErrorCode.NONE


@dataclass
class LeaderReplicaState:
    """Replication state of a partition this broker leads.

    ``replicas`` is the assignment (leader included), ``isr`` the committed ISR as the
    controller (ZooKeeper) has it, ``isr_version`` that record's version for conditional
    writes. Build one with :meth:`become_leader`.
    """

    leader_id: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: frozenset[int]
    isr_version: int
    leader_log_end_offset: int
    high_watermark: int
    leader_epoch_start_offset: int
    followers: dict[int, FollowerState] = field(default_factory=dict)
    # the ISR change sent to be recorded and not yet confirmed, if any
    pending_isr: frozenset[int] | None = None
    waiters: list[AckWaiter] = field(default_factory=list)

    # --- leadership -------------------------------------------------------------------

    @classmethod
    def become_leader(
        cls,
        leader_id: int,
        leader_epoch: int,
        replicas: Iterable[int],
        isr: Iterable[int],
        isr_version: int,
        leader_log_end_offset: int,
        high_watermark: int,
        now_ms: int,
    ) -> LeaderReplicaState:
        """A new leader: followers' offsets are unknown until they fetch.

        ``high_watermark`` is the one the local log had (checkpointed or as a follower);
        ``leader_log_end_offset`` becomes the start offset of this leader epoch.
        Followers in the ISR count as caught up now, the others as never.
        """
        replicas = tuple(replicas)
        isr = frozenset(isr)
        state = cls(
            leader_id=leader_id,
            leader_epoch=leader_epoch,
            replicas=replicas,
            isr=isr,
            isr_version=isr_version,
            leader_log_end_offset=leader_log_end_offset,
            high_watermark=min(high_watermark, leader_log_end_offset),
            leader_epoch_start_offset=leader_log_end_offset,
        )
        for replica in replicas:
            if replica != leader_id:
                state.followers[replica] = FollowerState(
                    replica, last_caught_up_time_ms=now_ms if replica in isr else 0
                )
        state._maybe_advance_high_watermark()
        return state

    def update_leadership(
        self,
        leader_epoch: int,
        replicas: Iterable[int],
        isr: Iterable[int],
        isr_version: int,
        now_ms: int,
    ) -> bool:
        """The controller sent a new state in which this broker stays leader.

        A new leader epoch (ZooKeeper controllers bump it on every change) resets each
        follower's caught-up time, keeping its offsets, and starts the epoch at the current
        LEO. Any in-flight ISR change is dropped: the controller's record wins. Returns
        whether the high watermark advanced.
        """
        replicas = tuple(replicas)
        isr = frozenset(isr)
        new_epoch = leader_epoch > self.leader_epoch
        self.replicas = replicas
        self.isr = isr
        self.isr_version = isr_version
        self.pending_isr = None
        for replica in replicas:
            if replica != self.leader_id and replica not in self.followers:
                self.followers[replica] = FollowerState(replica)
        for replica in list(self.followers):
            if replica not in replicas:
                del self.followers[replica]
        if new_epoch:
            self.leader_epoch = leader_epoch
            self.leader_epoch_start_offset = self.leader_log_end_offset
            for follower in self.followers.values():
                follower.last_caught_up_time_ms = now_ms if follower.replica_id in isr else 0
                if follower.replica_id not in isr:
                    # out of the ISR (a dead broker, say): it rejoins only on a fetch in this
                    # epoch, never on what it had before (with an idle log, its old LEO would
                    # look caught up and a dead broker would be put back in the ISR)
                    follower.log_end_offset = UNKNOWN_OFFSET
        return self._maybe_advance_high_watermark()

    def resign(self, error: ErrorCode = ErrorCode.NOT_LEADER_OR_FOLLOWER) -> list[AckWaiter]:
        """Leadership moved away: every waiter fails (NOT_LEADER_OR_FOLLOWER)."""
        return self._finish_all(error)

    # --- offsets ----------------------------------------------------------------------

    @property
    def maximal_isr(self) -> frozenset[int]:
        """The committed ISR plus any member an in-flight expansion adds."""
        if self.pending_isr is None:
            return self.isr
        return self.isr | self.pending_isr

    def leader_appended(self, leader_log_end_offset: int) -> bool:
        """The leader's log grew; returns whether the high watermark advanced."""
        self.leader_log_end_offset = leader_log_end_offset
        return self._maybe_advance_high_watermark()

    def follower_fetched(
        self,
        replica_id: int,
        fetch_offset: int,
        leader_log_end_offset: int,
        now_ms: int,
        log_start_offset: int = UNKNOWN_OFFSET,
    ) -> bool:
        """A follower fetched from ``fetch_offset`` (its LEO) while the leader's LEO was
        ``leader_log_end_offset``. Returns whether the high watermark advanced.

        Raises KeyError for a replica outside the assignment (the caller answers it with
        an error, as Kafka does).
        """
        follower = self.followers[replica_id]
        if fetch_offset >= leader_log_end_offset:
            caught_up = max(follower.last_caught_up_time_ms, now_ms)
        elif fetch_offset >= follower.last_fetch_leader_leo:
            # it now has all the leader had at its previous fetch
            caught_up = max(follower.last_caught_up_time_ms, follower.last_fetch_time_ms)
        else:
            caught_up = follower.last_caught_up_time_ms
        follower.last_caught_up_time_ms = caught_up
        follower.log_end_offset = fetch_offset
        follower.log_start_offset = log_start_offset
        follower.last_fetch_leader_leo = max(leader_log_end_offset, follower.last_fetch_leader_leo)
        follower.last_fetch_time_ms = now_ms
        self.leader_log_end_offset = max(self.leader_log_end_offset, leader_log_end_offset)
        return self._maybe_advance_high_watermark()

    def _maybe_advance_high_watermark(self) -> bool:
        new = self.leader_log_end_offset
        for replica in self.maximal_isr:
            if replica == self.leader_id:
                continue
            follower = self.followers.get(replica)
            if follower is None:
                continue  # an ISR member outside the assignment cannot hold anything back
            new = min(new, follower.log_end_offset)
        if new > self.high_watermark:
            self.high_watermark = new
            return True
        return False

    # --- ISR --------------------------------------------------------------------------

    def out_of_sync_replicas(self, now_ms: int, replica_lag_time_max_ms: int) -> set[int]:
        """ISR followers not caught up to the leader's LEO within the lag time."""
        leo = self.leader_log_end_offset
        return {
            replica
            for replica in self.isr
            if replica != self.leader_id
            and replica in self.followers
            and not self.followers[replica].is_caught_up(leo, now_ms, replica_lag_time_max_ms)
        }

    def maybe_shrink_isr(self, now_ms: int, replica_lag_time_max_ms: int) -> frozenset[int] | None:
        """Propose the ISR without the lagging followers, or None (nothing to drop, or a
        change already in flight). The leader always stays. Record the result, then call
        :meth:`isr_committed` or :meth:`isr_failed`."""
        if self.pending_isr is not None:
            return None
        lagging = self.out_of_sync_replicas(now_ms, replica_lag_time_max_ms)
        if not lagging:
            return None
        self.pending_isr = frozenset(self.isr - lagging) | {self.leader_id}
        return self.pending_isr

    def is_follower_in_sync(self, replica_id: int) -> bool:
        """A follower may join the ISR: its LEO reached the HW and this epoch's start."""
        follower = self.followers.get(replica_id)
        if follower is None:
            return False
        leo = follower.log_end_offset
        return leo >= self.high_watermark and leo >= self.leader_epoch_start_offset

    def maybe_expand_isr(self) -> frozenset[int] | None:
        """Propose the ISR with every follower that caught up, or None. Record the result,
        then call :meth:`isr_committed` or :meth:`isr_failed`."""
        if self.pending_isr is not None:
            return None
        joining = {
            replica
            for replica in self.followers
            if replica not in self.isr and self.is_follower_in_sync(replica)
        }
        if not joining:
            return None
        self.pending_isr = self.isr | joining
        return self.pending_isr

    def isr_committed(self, isr: Iterable[int], isr_version: int) -> bool:
        """The proposed ISR was recorded (at ``isr_version``). Returns whether the high
        watermark advanced (a shrink can let it)."""
        self.isr = frozenset(isr)
        self.isr_version = isr_version
        self.pending_isr = None
        return self._maybe_advance_high_watermark()

    def isr_failed(self) -> None:
        """The conditional write lost (the record changed under us): drop the proposal and
        wait for the controller's state (:meth:`update_leadership` or resignation)."""
        self.pending_isr = None

    # --- acks=all ---------------------------------------------------------------------

    def check_append(self, min_insync_replicas: int) -> ErrorCode:
        """Before an acks=all append: NOT_ENOUGH_REPLICAS while the ISR is too small."""
        if len(self.isr) < min_insync_replicas:
            return ErrorCode.NOT_ENOUGH_REPLICAS
        return ErrorCode.NONE

    def add_waiter(
        self,
        required_offset: int,
        deadline_ms: int,
        min_insync_replicas: int,
        token: Any = None,
    ) -> AckWaiter:
        """Wait for the HW to reach ``required_offset`` (last offset + 1) by ``deadline_ms``.

        The returned waiter may already be ``done`` (a one-member ISR, say); otherwise
        :meth:`poll_waiters` completes it later.
        """
        waiter = AckWaiter(required_offset, deadline_ms, min_insync_replicas, token)
        if not self._try_complete(waiter):
            self.waiters.append(waiter)
        return waiter

    def _try_complete(self, waiter: AckWaiter) -> bool:
        if self.high_watermark < waiter.required_offset:
            return False
        waiter.done = True
        # written locally before the ISR shrank below the minimum: Kafka's
        # NOT_ENOUGH_REPLICAS_AFTER_APPEND (the producer may retry; a duplicate is possible)
        if len(self.isr) < waiter.min_insync_replicas:
            waiter.error = ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
        else:
            waiter.error = ErrorCode.NONE
        return True

    def poll_waiters(self, now_ms: int) -> list[AckWaiter]:
        """Complete the waiters the HW passed, and time out (REQUEST_TIMED_OUT) those whose
        deadline is reached; returns those that finished, in the order they were added."""
        finished: list[AckWaiter] = []
        remaining: list[AckWaiter] = []
        for waiter in self.waiters:
            if self._try_complete(waiter):
                finished.append(waiter)
            elif now_ms >= waiter.deadline_ms:
                waiter.done = True
                waiter.error = ErrorCode.REQUEST_TIMED_OUT
                finished.append(waiter)
            else:
                remaining.append(waiter)
        self.waiters = remaining
        return finished

    def next_deadline_ms(self) -> int | None:
        """The earliest deadline among pending waiters (for the caller's timer)."""
        return min((w.deadline_ms for w in self.waiters), default=None)

    def _finish_all(self, error: ErrorCode) -> list[AckWaiter]:
        finished = self.waiters
        self.waiters = []
        for waiter in finished:
            waiter.done = True
            waiter.error = error
        return finished
