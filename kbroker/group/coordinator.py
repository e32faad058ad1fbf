"""The classic group coordinator as a sans-IO state machine.

It follows Kafka's ``GroupCoordinator``: each group moves through Empty,
PreparingRebalance, CompletingRebalance, Stable and Dead; JoinGroup and SyncGroup
answers that must wait for the rest of the group are delivered through callbacks the
caller passes in (the api layer resolves a future with them); time comes from the
injected ``clock`` and advances only when :meth:`GroupCoordinator.poll` is called,
which expires sessions, join and sync phases and old offsets. Committed offsets and
group metadata are written through the injected ``persist`` function (to
``__consumer_offsets``) and read back with :meth:`GroupCoordinator.load`.

Nothing here touches a socket, a file or the event loop.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import Enum

from kbroker.group import consumer_protocol
from kbroker.group import records as rec
from kbroker.group.records import OffsetAndMetadata
from kbroker.wire.errors import ErrorCode, KafkaError

log = logging.getLogger("kbroker.group")

NEW_MEMBER_JOIN_TIMEOUT_MS = 5 * 60 * 1000
CONSUMER_PROTOCOL = "consumer"

JoinCallback = Callable[[dict], None]
SyncCallback = Callable[[dict], None]
Persist = Callable[[str, list[tuple[bytes, bytes | None]]], None]


class GroupState(Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


@dataclass
class GroupConfig:
    """The broker settings the coordinator honours (Kafka's names and defaults).

    ``initial_rebalance_delay_ms`` defaults to 0 as in the ``server.properties`` Kafka
    ships (Kafka's built-in default is 3000).
    """

    min_session_timeout_ms: int = 6000
    max_session_timeout_ms: int = 1800000
    initial_rebalance_delay_ms: int = 0
    offsets_retention_ms: int = 7 * 24 * 3600 * 1000
    offsets_retention_check_interval_ms: int = 600000
    offset_metadata_max_bytes: int = 4096
    max_size: int = 2**31 - 1


@dataclass(frozen=True)
class JoinRequest:
    """What a JoinGroup asks, as the coordinator's join steps need it."""

    group_id: str
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout: int
    rebalance_timeout: int  # -1 (JoinGroup v0): the session timeout
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    require_known_member_id: bool  # v4+: a new dynamic member first gets its id

    def new_member(self, member_id: str) -> Member:
        return Member(
            member_id,
            self.group_instance_id,
            self.client_id,
            self.client_host,
            self.rebalance_timeout,
            self.session_timeout,
            self.protocol_type,
            list(self.protocols),
        )


@dataclass
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout: int
    session_timeout: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    join_callback: JoinCallback | None = None
    sync_callback: SyncCallback | None = None
    last_heartbeat: int = 0
    is_new: bool = False

    def metadata(self, protocol: str | None) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        return b""

    def matches(self, protocols: list[tuple[str, bytes]]) -> bool:
        return [(n, bytes(m)) for n, m in protocols] == [(n, bytes(m)) for n, m in self.protocols]

    def keep_alive(self, now: int) -> bool:
        if self.join_callback is not None:
            return not self.is_new or self.last_heartbeat + NEW_MEMBER_JOIN_TIMEOUT_MS > now
        return self.sync_callback is not None or self.last_heartbeat + self.session_timeout > now


@dataclass
class Group:
    group_id: str
    state: GroupState = GroupState.EMPTY
    state_timestamp: int = -1
    generation: int = 0
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)
    pending_members: dict[str, int] = field(default_factory=dict)  # member id -> deadline
    pending_sync: set[str] = field(default_factory=set)
    offsets: dict[tuple[str, int], OffsetAndMetadata] = field(default_factory=dict)
    join_deadline: int | None = None
    initial_delay: bool = False
    initial_delay_remaining: int = 0
    new_member_added: bool = False
    sync_deadline: int | None = None

    def is_(self, *states: GroupState) -> bool:
        return self.state in states

    @property
    def rebalance_timeout(self) -> int:
        return max((m.rebalance_timeout for m in self.members.values()), default=0)

    def candidate_protocols(self) -> set[str]:
        names: set[str] | None = None
        for member in self.members.values():
            mine = {name for name, _ in member.protocols}
            names = mine if names is None else names & mine
        return names or set()

    def supports(self, protocol_type: str, protocols: list[tuple[str, bytes]]) -> bool:
        if not self.members:
            return bool(protocol_type) and bool(protocols)
        return protocol_type == self.protocol_type and bool(
            {name for name, _ in protocols} & self.candidate_protocols()
        )

    def select_protocol(self) -> str:
        candidates = self.candidate_protocols()
        votes: dict[str, int] = {}
        for member in self.members.values():
            choice = next(name for name, _ in member.protocols if name in candidates)
            votes[choice] = votes.get(choice, 0) + 1
        return max(votes, key=lambda name: votes[name])  # ties: the first voted for

    def all_joined(self) -> bool:
        return not self.pending_members and all(
            m.join_callback is not None for m in self.members.values()
        )

    def static_fenced(self, member_id: str, instance_id: str | None) -> bool:
        if instance_id is None:
            return False
        current = self.static_members.get(instance_id)
        return current is not None and current != member_id

    def subscribed_topics(self) -> set[str] | None:
        """Topics the members subscribe to (consumer protocol), None if unknown."""
        if self.protocol_type != CONSUMER_PROTOCOL or self.protocol_name is None:
            return None
        topics: set[str] = set()
        for member in self.members.values():
            parsed = consumer_protocol.subscribed_topics(member.metadata(self.protocol_name))
            if parsed is None:
                return None
            topics.update(parsed)
        return topics


def _join_error(code: ErrorCode, member_id: str = "") -> dict:
    return {
        "error_code": code,
        "generation_id": -1,
        "protocol_type": None,
        "protocol_name": None,
        "leader": "",
        "skip_assignment": False,
        "member_id": member_id,
        "members": [],
    }


def _sync_result(code: ErrorCode, group: Group | None = None, assignment: bytes = b"") -> dict:
    return {
        "error_code": code,
        "protocol_type": group.protocol_type if group and code == ErrorCode.NONE else None,
        "protocol_name": group.protocol_name if group and code == ErrorCode.NONE else None,
        "assignment": assignment,
    }


class GroupCoordinator:
    """All groups this broker coordinates, and their committed offsets."""

    def __init__(
        self,
        config: GroupConfig | None = None,
        clock: Callable[[], int] | None = None,
        persist: Persist | None = None,
        new_id: Callable[[], str] | None = None,
    ) -> None:
        import time

        self.config = config or GroupConfig()
        self.clock = clock or (lambda: int(time.time() * 1000))
        self.persist = persist or (lambda group_id, records: None)
        self.new_id = new_id or (lambda: str(uuid.uuid4()))
        self.groups: dict[str, Group] = {}
        self._next_retention_check = self.clock() + self.config.offsets_retention_check_interval_ms

    # -- helpers --------------------------------------------------------------------
    def _transition(self, group: Group, state: GroupState) -> None:
        group.state = state
        group.state_timestamp = self.clock()

    def _group_record(self, group: Group) -> bytes:
        members = [
            rec.MemberRecord(
                m.member_id,
                m.group_instance_id,
                m.client_id,
                m.client_host,
                m.rebalance_timeout,
                m.session_timeout,
                m.metadata(group.protocol_name),
                m.assignment,
            )
            for m in group.members.values()
        ]
        return rec.group_value(
            rec.GroupRecord(
                group.protocol_type or "",
                group.generation,
                group.protocol_name,
                group.leader_id,
                group.state_timestamp,
                members,
            )
        )

    def _store_group(self, group: Group) -> ErrorCode:
        try:
            self.persist(
                group.group_id, [(rec.group_key(group.group_id), self._group_record(group))]
            )
        except KafkaError as exc:
            log.warning("storing group %r failed: %s", group.group_id, exc)
            return exc.code
        return ErrorCode.NONE

    def _join_result(self, group: Group, member: Member, leader_view: bool) -> dict:
        members = []
        if leader_view:
            members = [
                {
                    "member_id": m.member_id,
                    "group_instance_id": m.group_instance_id,
                    "metadata": m.metadata(group.protocol_name),
                }
                for m in group.members.values()
            ]
        return {
            "error_code": ErrorCode.NONE,
            "generation_id": group.generation,
            "protocol_type": group.protocol_type,
            "protocol_name": group.protocol_name,
            "leader": group.leader_id or "",
            "skip_assignment": False,
            "member_id": member.member_id,
            "members": members,
        }

    # -- JoinGroup ------------------------------------------------------------------
    def join(self, request: JoinRequest, callback: JoinCallback) -> None:
        """Handle a JoinGroup; ``callback`` gets the response fields, now or later."""
        if request.rebalance_timeout < 0:
            request = replace(request, rebalance_timeout=request.session_timeout)
        member_id = request.member_id
        if not request.group_id:
            return callback(_join_error(ErrorCode.INVALID_GROUP_ID, member_id))
        if not (
            self.config.min_session_timeout_ms
            <= request.session_timeout
            <= self.config.max_session_timeout_ms
        ):
            return callback(_join_error(ErrorCode.INVALID_SESSION_TIMEOUT, member_id))
        group = self.groups.get(request.group_id)
        if not member_id:
            if group is None:
                group = Group(request.group_id, state_timestamp=self.clock())
                self.groups[request.group_id] = group
            self._join_new_member(group, request, callback)
        else:
            if group is None:
                return callback(_join_error(ErrorCode.UNKNOWN_MEMBER_ID, member_id))
            self._join_current_member(group, request, callback)
        if group.is_(GroupState.PREPARING_REBALANCE):
            self._try_complete_join(group)

    def _join_new_member(self, group: Group, request: JoinRequest, callback: JoinCallback) -> None:
        if group.is_(GroupState.DEAD):
            return callback(_join_error(ErrorCode.COORDINATOR_NOT_AVAILABLE))
        if not group.supports(request.protocol_type, request.protocols):
            return callback(_join_error(ErrorCode.INCONSISTENT_GROUP_PROTOCOL))
        instance_id = request.group_instance_id
        new_member_id = f"{instance_id or request.client_id}-{self.new_id()}"
        if instance_id is not None and instance_id in group.static_members:
            return self._replace_static_member(
                group, group.static_members[instance_id], new_member_id, request, callback
            )
        if len(group.members) >= self.config.max_size:
            return callback(_join_error(ErrorCode.GROUP_MAX_SIZE_REACHED))
        if request.require_known_member_id and instance_id is None:
            group.pending_members[new_member_id] = self.clock() + request.session_timeout
            return callback(_join_error(ErrorCode.MEMBER_ID_REQUIRED, new_member_id))
        self._add_member_and_rebalance(group, request.new_member(new_member_id), callback)

    def _join_current_member(
        self, group: Group, request: JoinRequest, callback: JoinCallback
    ) -> None:
        member_id = request.member_id
        if group.is_(GroupState.DEAD):
            return callback(_join_error(ErrorCode.COORDINATOR_NOT_AVAILABLE, member_id))
        if not group.supports(request.protocol_type, request.protocols):
            return callback(_join_error(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, member_id))
        if member_id in group.pending_members:
            del group.pending_members[member_id]
            return self._add_member_and_rebalance(group, request.new_member(member_id), callback)
        if group.static_fenced(member_id, request.group_instance_id):
            return callback(_join_error(ErrorCode.FENCED_INSTANCE_ID, member_id))
        member = group.members.get(member_id)
        if member is None:
            return callback(_join_error(ErrorCode.UNKNOWN_MEMBER_ID, member_id))
        state = group.state
        if state is GroupState.PREPARING_REBALANCE:
            self._update_member_and_rebalance(group, member, request, callback)
        elif state is GroupState.COMPLETING_REBALANCE:
            if member.matches(request.protocols):
                # The member lost our JoinGroup answer: give it the generation again.
                callback(self._join_result(group, member, member_id == group.leader_id))
            else:
                self._update_member_and_rebalance(group, member, request, callback)
        elif state is GroupState.STABLE:
            if member_id == group.leader_id or not member.matches(request.protocols):
                # A leader's JoinGroup forces a rebalance (e.g. for topic metadata changes).
                self._update_member_and_rebalance(group, member, request, callback)
            else:
                callback(self._join_result(group, member, False))
        else:
            callback(_join_error(ErrorCode.UNKNOWN_MEMBER_ID, member_id))

    def _add_member_and_rebalance(
        self, group: Group, member: Member, callback: JoinCallback
    ) -> None:
        member.join_callback = callback
        member.is_new = True
        member.last_heartbeat = self.clock()
        if not group.members:
            group.protocol_type = member.protocol_type
        group.members[member.member_id] = member
        if member.group_instance_id is not None:
            group.static_members[member.group_instance_id] = member.member_id
        if group.leader_id is None:
            group.leader_id = member.member_id
        if group.is_(GroupState.PREPARING_REBALANCE) and group.initial_delay:
            group.new_member_added = True
        self._maybe_prepare_rebalance(group, f"adding new member {member.member_id}")

    def _update_member_and_rebalance(
        self, group: Group, member: Member, request: JoinRequest, callback: JoinCallback
    ) -> None:
        self._update_member(member, request, callback)
        self._maybe_prepare_rebalance(group, f"member {member.member_id} rejoining")

    def _update_member(self, member: Member, request: JoinRequest, callback: JoinCallback) -> None:
        member.session_timeout = request.session_timeout
        member.rebalance_timeout = request.rebalance_timeout
        member.protocols = list(request.protocols)
        if member.join_callback is not None and member.join_callback is not callback:
            # An older JoinGroup of this member is still waiting: it is superseded.
            member.join_callback(_join_error(ErrorCode.REBALANCE_IN_PROGRESS, member.member_id))
        member.join_callback = callback

    def _replace_static_member(
        self,
        group: Group,
        old_member_id: str,
        new_member_id: str,
        request: JoinRequest,
        callback: JoinCallback,
    ) -> None:
        current_leader = group.leader_id
        member = group.members.pop(old_member_id)
        if member.join_callback is not None:
            member.join_callback(_join_error(ErrorCode.FENCED_INSTANCE_ID, old_member_id))
            member.join_callback = None
        if member.sync_callback is not None:
            member.sync_callback(_sync_result(ErrorCode.FENCED_INSTANCE_ID))
            member.sync_callback = None
        member.member_id = new_member_id
        group.members[new_member_id] = member
        group.static_members[member.group_instance_id] = new_member_id
        if group.leader_id == old_member_id:
            group.leader_id = new_member_id
        if old_member_id in group.pending_sync:
            group.pending_sync.discard(old_member_id)
            group.pending_sync.add(new_member_id)
        member.last_heartbeat = self.clock()
        old_protocols = member.protocols
        self._update_member(member, request, callback)
        if group.is_(GroupState.STABLE):
            if group.select_protocol() == group.protocol_name:
                # Same protocol: the static member takes its place back, no rebalance. The
                # old leader id is returned so that the new member does not assign.
                member.join_callback = None
                code = self._store_group(group)
                if code != ErrorCode.NONE:
                    member.protocols = old_protocols
                    callback(_join_error(code))
                    return
                result = self._join_result(group, member, False)
                result["leader"] = current_leader or ""
                callback(result)
            else:
                self._prepare_rebalance(group, f"static member {new_member_id} changed protocol")
        elif group.is_(GroupState.COMPLETING_REBALANCE):
            self._prepare_rebalance(group, f"static member {new_member_id} rejoined")

    # -- rebalance phases -----------------------------------------------------------
    def _maybe_prepare_rebalance(self, group: Group, reason: str) -> None:
        if group.is_(GroupState.STABLE, GroupState.COMPLETING_REBALANCE, GroupState.EMPTY):
            self._prepare_rebalance(group, reason)

    def _prepare_rebalance(self, group: Group, reason: str) -> None:
        if group.is_(GroupState.COMPLETING_REBALANCE):
            for member in group.members.values():
                member.assignment = b""
            self._propagate_sync_error(group, ErrorCode.REBALANCE_IN_PROGRESS)
        group.pending_sync.clear()
        group.sync_deadline = None
        now = self.clock()
        delay = self.config.initial_rebalance_delay_ms
        if group.is_(GroupState.EMPTY) and delay > 0:
            group.initial_delay = True
            group.new_member_added = False
            group.initial_delay_remaining = max(group.rebalance_timeout - delay, 0)
            group.join_deadline = now + delay
        else:
            group.initial_delay = False
            group.join_deadline = now + group.rebalance_timeout
        log.info(
            "preparing to rebalance group %r in state %s with old generation %d: %s",
            group.group_id,
            group.state.value,
            group.generation,
            reason,
        )
        self._transition(group, GroupState.PREPARING_REBALANCE)
        self._try_complete_join(group)  # e.g. the last member left: Empty at once

    def _try_complete_join(self, group: Group) -> None:
        if (
            group.is_(GroupState.PREPARING_REBALANCE)
            and not group.initial_delay
            and group.all_joined()
        ):
            self._complete_join(group)

    def _complete_join(self, group: Group) -> None:
        now = self.clock()
        for member in list(group.members.values()):
            if member.join_callback is None and member.group_instance_id is None:
                self._remove_member(group, member)
        if group.leader_id is not None:
            leader = group.members.get(group.leader_id)
            if leader is None or leader.join_callback is None:
                joined = [m for m in group.members.values() if m.join_callback is not None]
                if not joined:
                    # Only static members that have not rejoined: wait for them (or for
                    # their sessions to expire).
                    group.join_deadline = now + max(group.rebalance_timeout, 1)
                    group.initial_delay = False
                    return
                group.leader_id = joined[0].member_id
        group.generation += 1
        group.join_deadline = None
        group.initial_delay = False
        if not group.members:
            group.protocol_name = None
            group.leader_id = None
            self._transition(group, GroupState.EMPTY)
            self._store_group(group)
            log.info("group %r is empty at generation %d", group.group_id, group.generation)
            return
        group.protocol_name = group.select_protocol()
        self._transition(group, GroupState.COMPLETING_REBALANCE)
        group.pending_sync = set(group.members)
        group.sync_deadline = now + group.rebalance_timeout
        log.info(
            "group %r: generation %d with %d members, protocol %s",
            group.group_id,
            group.generation,
            len(group.members),
            group.protocol_name,
        )
        for member in list(group.members.values()):
            callback = member.join_callback
            member.join_callback = None
            member.last_heartbeat = now
            member.is_new = False
            if callback is not None:
                callback(self._join_result(group, member, member.member_id == group.leader_id))

    def _remove_member(self, group: Group, member: Member) -> None:
        group.members.pop(member.member_id, None)
        if member.group_instance_id is not None:
            if group.static_members.get(member.group_instance_id) == member.member_id:
                del group.static_members[member.group_instance_id]
        group.pending_sync.discard(member.member_id)
        if group.leader_id == member.member_id:
            group.leader_id = next(iter(group.members), None)
        if member.join_callback is not None:
            callback, member.join_callback = member.join_callback, None
            callback(_join_error(ErrorCode.UNKNOWN_MEMBER_ID, ""))
        if member.sync_callback is not None:
            callback, member.sync_callback = member.sync_callback, None
            callback(_sync_result(ErrorCode.UNKNOWN_MEMBER_ID))

    def _remove_member_and_update_group(self, group: Group, member: Member, reason: str) -> None:
        log.info("removing member %s from group %r: %s", member.member_id, group.group_id, reason)
        self._remove_member(group, member)
        if group.is_(GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self._prepare_rebalance(group, reason)
        elif group.is_(GroupState.PREPARING_REBALANCE):
            self._try_complete_join(group)

    def _propagate_sync_error(self, group: Group, code: ErrorCode) -> None:
        for member in group.members.values():
            if member.sync_callback is not None:
                callback, member.sync_callback = member.sync_callback, None
                callback(_sync_result(code))

    # -- SyncGroup ------------------------------------------------------------------
    def sync(
        self,
        group_id: str,
        generation: int,
        member_id: str,
        group_instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: dict[str, bytes],
        callback: SyncCallback,
    ) -> None:
        group = self.groups.get(group_id)
        if group is None:
            return callback(_sync_result(ErrorCode.UNKNOWN_MEMBER_ID))
        if group.is_(GroupState.DEAD):
            return callback(_sync_result(ErrorCode.COORDINATOR_NOT_AVAILABLE))
        if group.static_fenced(member_id, group_instance_id):
            return callback(_sync_result(ErrorCode.FENCED_INSTANCE_ID))
        member = group.members.get(member_id)
        if member is None:
            return callback(_sync_result(ErrorCode.UNKNOWN_MEMBER_ID))
        if generation != group.generation:
            return callback(_sync_result(ErrorCode.ILLEGAL_GENERATION))
        if (protocol_type is not None and protocol_type != group.protocol_type) or (
            protocol_name is not None and protocol_name != group.protocol_name
        ):
            return callback(_sync_result(ErrorCode.INCONSISTENT_GROUP_PROTOCOL))
        if group.is_(GroupState.EMPTY):
            return callback(_sync_result(ErrorCode.UNKNOWN_MEMBER_ID))
        if group.is_(GroupState.PREPARING_REBALANCE):
            return callback(_sync_result(ErrorCode.REBALANCE_IN_PROGRESS))
        group.pending_sync.discard(member_id)
        member.last_heartbeat = self.clock()
        if group.is_(GroupState.STABLE):
            return callback(_sync_result(ErrorCode.NONE, group, member.assignment))
        # CompletingRebalance: wait for the leader's assignment.
        member.sync_callback = callback
        if member_id != group.leader_id:
            return
        for m in group.members.values():
            m.assignment = bytes(assignments.get(m.member_id, b""))
        code = self._store_group(group)
        if code != ErrorCode.NONE:
            for m in group.members.values():
                m.assignment = b""
            self._propagate_sync_error(group, code)
            self._prepare_rebalance(group, f"storing the assignment failed: {code.name}")
            return
        now = self.clock()
        for m in group.members.values():
            if m.sync_callback is not None:
                cb, m.sync_callback = m.sync_callback, None
                m.last_heartbeat = now
                cb(_sync_result(ErrorCode.NONE, group, m.assignment))
        group.sync_deadline = None
        self._transition(group, GroupState.STABLE)

    # -- Heartbeat ------------------------------------------------------------------
    def heartbeat(
        self, group_id: str, generation: int, member_id: str, group_instance_id: str | None
    ) -> ErrorCode:
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if group.is_(GroupState.DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if group.static_fenced(member_id, group_instance_id):
            return ErrorCode.FENCED_INSTANCE_ID
        member = group.members.get(member_id)
        if member is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if generation != group.generation:
            return ErrorCode.ILLEGAL_GENERATION
        member.last_heartbeat = self.clock()
        if group.is_(GroupState.PREPARING_REBALANCE):
            return ErrorCode.REBALANCE_IN_PROGRESS
        return ErrorCode.NONE

    # -- LeaveGroup -----------------------------------------------------------------
    def leave(
        self, group_id: str, leaving: list[tuple[str, str | None]]
    ) -> tuple[ErrorCode, list[ErrorCode]]:
        """Remove members (member id, instance id); the top-level and per-member errors."""
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.NONE, [ErrorCode.UNKNOWN_MEMBER_ID] * len(leaving)
        if group.is_(GroupState.DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, [ErrorCode.COORDINATOR_NOT_AVAILABLE] * len(
                leaving
            )
        errors = []
        for member_id, instance_id in leaving:
            if not member_id:
                current = group.static_members.get(instance_id) if instance_id else None
                if current is None:
                    errors.append(ErrorCode.UNKNOWN_MEMBER_ID)
                    continue
                member_id = current
            elif member_id in group.pending_members:
                del group.pending_members[member_id]
                self._try_complete_join(group)
                errors.append(ErrorCode.NONE)
                continue
            elif group.static_fenced(member_id, instance_id):
                errors.append(ErrorCode.FENCED_INSTANCE_ID)
                continue
            member = group.members.get(member_id)
            if member is None:
                errors.append(ErrorCode.UNKNOWN_MEMBER_ID)
                continue
            self._remove_member_and_update_group(group, member, "the member left the group")
            errors.append(ErrorCode.NONE)
        return ErrorCode.NONE, errors

    # -- timers ---------------------------------------------------------------------
    def poll(self) -> None:
        """Expire what is due at the clock's current time."""
        now = self.clock()
        for group in list(self.groups.values()):
            self._poll_group(group, now)
        if now >= self._next_retention_check:
            self._next_retention_check = now + self.config.offsets_retention_check_interval_ms
            self.expire_offsets()

    def _poll_group(self, group: Group, now: int) -> None:
        for member_id, deadline in list(group.pending_members.items()):
            if deadline <= now:
                del group.pending_members[member_id]
                self._try_complete_join(group)
        for member in list(group.members.values()):
            if member.member_id in group.members and not member.keep_alive(now):
                self._remove_member_and_update_group(
                    group, member, f"its session timed out ({member.session_timeout} ms)"
                )
        if (
            group.is_(GroupState.PREPARING_REBALANCE)
            and group.join_deadline is not None
            and group.join_deadline <= now
        ):
            if group.initial_delay and group.new_member_added and group.initial_delay_remaining > 0:
                delay = min(self.config.initial_rebalance_delay_ms, group.initial_delay_remaining)
                group.initial_delay_remaining -= delay
                group.new_member_added = False
                group.join_deadline = now + delay
            else:
                self._complete_join(group)
        if (
            group.is_(GroupState.COMPLETING_REBALANCE)
            and group.sync_deadline is not None
            and group.sync_deadline <= now
        ):
            late = [group.members[m] for m in group.pending_sync if m in group.members]
            group.sync_deadline = None
            for member in late:
                self._remove_member(group, member)
            self._prepare_rebalance(group, "members did not send SyncGroup in time")

    def next_deadline(self) -> int | None:
        """The earliest time :meth:`poll` has something to do (for an IO shell's timer)."""
        deadlines = [self._next_retention_check]
        for group in self.groups.values():
            deadlines.extend(group.pending_members.values())
            for m in group.members.values():
                if m.join_callback is None and m.sync_callback is None:
                    deadlines.append(m.last_heartbeat + m.session_timeout)
                elif m.join_callback is not None and m.is_new:
                    deadlines.append(m.last_heartbeat + NEW_MEMBER_JOIN_TIMEOUT_MS)
            if group.join_deadline is not None:
                deadlines.append(group.join_deadline)
            if group.sync_deadline is not None:
                deadlines.append(group.sync_deadline)
        return min(deadlines)

    # -- offsets --------------------------------------------------------------------
    def commit_offsets(
        self,
        group_id: str,
        generation: int,
        member_id: str,
        group_instance_id: str | None,
        offsets: dict[tuple[str, int], OffsetAndMetadata],
        retention_ms: int = -1,
    ) -> dict[tuple[str, int], ErrorCode]:
        """Validate and store commits; the error of each partition."""
        code = self._validate_commit(group_id, generation, member_id, group_instance_id)
        if code != ErrorCode.NONE:
            return {tp: code for tp in offsets}
        group = self.groups.get(group_id)
        now = self.clock()
        if group is None:
            group = self.groups[group_id] = Group(group_id, state_timestamp=now)
        results: dict[tuple[str, int], ErrorCode] = {}
        to_store: dict[tuple[str, int], OffsetAndMetadata] = {}
        for tp, value in offsets.items():
            if len((value.metadata or "").encode()) > self.config.offset_metadata_max_bytes:
                results[tp] = ErrorCode.OFFSET_METADATA_TOO_LARGE
                continue
            value.metadata = value.metadata or ""
            value.commit_timestamp = now
            value.expire_timestamp = now + retention_ms if retention_ms >= 0 else -1
            to_store[tp] = value
        if to_store:
            records = [
                (rec.offset_key(group_id, topic, partition), rec.offset_value(value))
                for (topic, partition), value in to_store.items()
            ]
            try:
                self.persist(group_id, records)
                store_code = ErrorCode.NONE
            except KafkaError as exc:
                log.warning("storing offsets of group %r failed: %s", group_id, exc)
                store_code = _commit_error(exc.code)
            for tp, value in to_store.items():
                if store_code == ErrorCode.NONE:
                    group.offsets[tp] = value
                results[tp] = store_code
        member = group.members.get(member_id)
        if member is not None:
            member.last_heartbeat = now
        return results

    def _validate_commit(
        self, group_id: str, generation: int, member_id: str, instance_id: str | None
    ) -> ErrorCode:
        group = self.groups.get(group_id)
        if group is None:
            # Not managed by us: a simple commit (generation -1) creates an Empty group.
            return ErrorCode.NONE if generation < 0 else ErrorCode.ILLEGAL_GENERATION
        if group.is_(GroupState.DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if generation < 0 and group.is_(GroupState.EMPTY):
            return ErrorCode.NONE
        if group.static_fenced(member_id, instance_id):
            return ErrorCode.FENCED_INSTANCE_ID
        if group.is_(GroupState.COMPLETING_REBALANCE):
            return ErrorCode.REBALANCE_IN_PROGRESS
        if member_id not in group.members:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if generation != group.generation:
            return ErrorCode.ILLEGAL_GENERATION
        return ErrorCode.NONE

    def fetch_offsets(
        self, group_id: str, partitions: Iterable[tuple[str, int]] | None
    ) -> dict[tuple[str, int], OffsetAndMetadata | None]:
        """Committed offsets of the partitions asked for (all of the group's with None)."""
        group = self.groups.get(group_id)
        offsets = group.offsets if group is not None else {}
        if partitions is None:
            return dict(sorted(offsets.items()))
        return {tp: offsets.get(tp) for tp in partitions}

    def delete_offsets(
        self, group_id: str, partitions: list[tuple[str, int]]
    ) -> tuple[ErrorCode, dict[tuple[str, int], ErrorCode]]:
        """OffsetDelete: drop committed offsets of topics the group does not consume."""
        group = self.groups.get(group_id)
        if group is None or group.is_(GroupState.DEAD):
            return ErrorCode.GROUP_ID_NOT_FOUND, {}
        subscribed: set[str] = set()
        if not group.is_(GroupState.EMPTY):
            topics = group.subscribed_topics()
            if topics is None:
                return ErrorCode.NON_EMPTY_GROUP, {}
            subscribed = topics
        results: dict[tuple[str, int], ErrorCode] = {}
        removed = []
        for tp in partitions:
            if tp[0] in subscribed:
                results[tp] = ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC
            else:
                results[tp] = ErrorCode.NONE
                if tp in group.offsets:
                    removed.append(tp)
        self._tombstone_offsets(group, removed)
        return ErrorCode.NONE, results

    def _tombstone_offsets(self, group: Group, partitions: list[tuple[str, int]]) -> None:
        if not partitions:
            return
        records = [(rec.offset_key(group.group_id, t, p), None) for t, p in partitions]
        try:
            self.persist(group.group_id, records)
        except KafkaError as exc:
            log.warning("writing tombstones for group %r failed: %s", group.group_id, exc)
        for tp in partitions:
            group.offsets.pop(tp, None)

    def expire_offsets(self) -> int:
        """Drop offsets past ``offsets.retention.minutes`` as Kafka 2.1+ does; the count."""
        now = self.clock()
        retention = self.config.offsets_retention_ms
        expired_total = 0
        for group in list(self.groups.values()):
            if group.is_(GroupState.EMPTY):
                candidates = {
                    tp: (
                        group.state_timestamp if group.state_timestamp >= 0 else v.commit_timestamp
                    )
                    for tp, v in group.offsets.items()
                }
            else:
                topics = group.subscribed_topics()
                if topics is None or group.is_(GroupState.DEAD):
                    continue
                candidates = {
                    tp: v.commit_timestamp for tp, v in group.offsets.items() if tp[0] not in topics
                }
            expired = []
            for tp, base in candidates.items():
                value = group.offsets[tp]
                if value.expire_timestamp >= 0:
                    if now >= value.expire_timestamp:
                        expired.append(tp)
                elif now - base >= retention:
                    expired.append(tp)
            if expired:
                log.info("expiring %d offsets of group %r", len(expired), group.group_id)
                self._tombstone_offsets(group, expired)
                expired_total += len(expired)
            if group.is_(GroupState.EMPTY) and not group.offsets:
                self._transition(group, GroupState.DEAD)
                del self.groups[group.group_id]
                self._tombstone_group(group)
        return expired_total

    def _tombstone_group(self, group: Group) -> None:
        try:
            self.persist(group.group_id, [(rec.group_key(group.group_id), None)])
        except KafkaError as exc:
            log.warning("writing tombstone of group %r failed: %s", group.group_id, exc)

    # -- admin ----------------------------------------------------------------------
    def list_groups(self, states: Iterable[str] = ()) -> list[Group]:
        wanted = {s.lower() for s in states}
        return [
            g
            for g in self.groups.values()
            if not g.is_(GroupState.DEAD) and (not wanted or g.state.value.lower() in wanted)
        ]

    def describe(self, group_id: str) -> Group | None:
        return self.groups.get(group_id)

    def delete_groups(self, group_ids: list[str]) -> dict[str, ErrorCode]:
        results = {}
        for group_id in group_ids:
            group = self.groups.get(group_id)
            if not group_id:
                results[group_id] = ErrorCode.INVALID_GROUP_ID
            elif group is None or group.is_(GroupState.DEAD):
                results[group_id] = ErrorCode.GROUP_ID_NOT_FOUND
            elif not group.is_(GroupState.EMPTY):
                results[group_id] = ErrorCode.NON_EMPTY_GROUP
            else:
                records = [(rec.offset_key(group_id, t, p), None) for t, p in group.offsets]
                records.append((rec.group_key(group_id), None))
                try:
                    self.persist(group_id, records)
                except KafkaError as exc:
                    results[group_id] = exc.code
                    continue
                self._transition(group, GroupState.DEAD)
                del self.groups[group_id]
                results[group_id] = ErrorCode.NONE
        return results

    # -- loading --------------------------------------------------------------------
    def unload(self, owned: Callable[[str], bool]) -> list[str]:
        """Forget the groups ``owned`` selects (their offsets partition moved to another
        coordinator, as Kafka's removeGroupsForPartition): waiting JoinGroup and SyncGroup
        requests are answered NOT_COORDINATOR, so members find the new coordinator."""
        removed = []
        for group_id in [g for g in self.groups if owned(g)]:
            group = self.groups.pop(group_id)
            group.state = GroupState.DEAD
            for member in group.members.values():
                if member.join_callback is not None:
                    callback, member.join_callback = member.join_callback, None
                    callback(_join_error(ErrorCode.NOT_COORDINATOR, member.member_id))
                if member.sync_callback is not None:
                    callback, member.sync_callback = member.sync_callback, None
                    callback(_sync_result(ErrorCode.NOT_COORDINATOR))
            removed.append(group_id)
        if removed:
            log.info("unloaded %d groups", len(removed))
        return removed

    def load(self, entries: Iterable[tuple[bytes | None, bytes | None]]) -> int:
        """Rebuild groups and offsets from ``__consumer_offsets`` records, oldest first
        (all of the topic at start-up, or one partition when this broker starts leading
        it); the number of groups loaded."""
        now = self.clock()
        loaded = 0
        metadata: dict[str, rec.GroupRecord | None] = {}
        offsets: dict[str, dict[tuple[str, int], OffsetAndMetadata]] = {}
        for key, value in entries:
            try:
                record = rec.decode(key, value)
            except Exception as exc:  # a record we cannot read must not stop start-up
                log.warning("skipping unreadable __consumer_offsets record: %s", exc)
                continue
            if isinstance(record, rec.OffsetRecord):
                group_offsets = offsets.setdefault(record.group, {})
                tp = (record.topic, record.partition)
                if record.value is None:
                    group_offsets.pop(tp, None)
                else:
                    group_offsets[tp] = record.value
            elif isinstance(record, rec.GroupMetadataRecord):
                metadata[record.group] = record.value
        for group_id in set(metadata) | set(offsets):
            value = metadata.get(group_id)
            group_offsets = offsets.get(group_id, {})
            if value is None and not group_offsets:
                continue
            group = Group(group_id, state_timestamp=now, offsets=group_offsets)
            if value is not None:
                group.generation = value.generation
                group.protocol_type = value.protocol_type or None
                group.protocol_name = value.protocol
                group.leader_id = value.leader
                if value.current_state_timestamp >= 0:
                    group.state_timestamp = value.current_state_timestamp
                for m in value.members:
                    member = Member(
                        m.member_id,
                        m.group_instance_id,
                        m.client_id,
                        m.client_host,
                        m.rebalance_timeout if m.rebalance_timeout >= 0 else m.session_timeout,
                        m.session_timeout,
                        value.protocol_type,
                        [(value.protocol or "", m.subscription)],
                        m.assignment,
                        last_heartbeat=now,
                    )
                    group.members[m.member_id] = member
                    if m.group_instance_id is not None:
                        group.static_members[m.group_instance_id] = m.member_id
            if group.members:
                group.state = GroupState.STABLE
                group.state_timestamp = now
            else:
                group.leader_id = None
            self.groups[group_id] = group
            loaded += 1
        log.info("loaded %d groups from __consumer_offsets", loaded)
        return loaded


def _commit_error(code: ErrorCode) -> ErrorCode:
    """Kafka maps log append errors to what a committing client understands."""
    if code in (
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.NOT_ENOUGH_REPLICAS,
        ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    ):
        return ErrorCode.COORDINATOR_NOT_AVAILABLE
    if code == ErrorCode.NOT_LEADER_OR_FOLLOWER:
        return ErrorCode.NOT_COORDINATOR
    if code in (ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.RECORD_LIST_TOO_LARGE):
        return ErrorCode.INVALID_COMMIT_OFFSET_SIZE
    return code
