"""Consumer groups with each Python client: assignment, leave, session timeout, commits.

Every member is a separate process (group_member.py) that commits synchronously after
each batch and reports a record only once its commit succeeded, so across the group
every produced message must be reported exactly once, whatever rebalances happen.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from compat_helpers import topic_name
from group_helpers import (
    BROKER_SETTINGS,
    CLIENTS,
    Member,
    SteadyProducer,
    create_topic,
    produce,
    wait_until,
)


def settled_rebalances(broker, group: str, quiet: float = 2.0, timeout: float = 30.0) -> int:
    """The broker's count of rebalances of ``group`` once it has not moved for ``quiet`` s."""
    deadline = time.monotonic() + timeout
    count = broker.stderr_text().count(f"rebalance group '{group}'")
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = broker.stderr_text().count(f"rebalance group '{group}'")
        if now != count:
            count, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return count
    raise AssertionError(f"group {group!r} still rebalancing after {timeout} s")


@pytest.fixture
def group_broker(broker_factory):
    return broker_factory(BROKER_SETTINGS)


@pytest.fixture
def members():
    started: list[Member] = []
    yield started
    for member in started:
        member.cleanup()


def _values(members_: list[Member]) -> Counter:
    return Counter(int(v) for m in members_ for _, _, v in m.committed())


@pytest.mark.parametrize("client", CLIENTS)
def test_three_members_share_six_partitions_then_take_over(client, group_broker, members):
    bootstrap = group_broker.bootstrap
    topic = topic_name(f"grp-{client}")
    create_topic(bootstrap, topic, 6)
    producer = SteadyProducer(bootstrap, topic, 6)
    trio = [Member(client, bootstrap, topic, "trio") for _ in range(3)]
    members.extend(trio)

    def spread(group, sizes):
        return (
            all(m.assignment is not None for m in group)
            and sorted(len(m.assignment) for m in group) == sizes
            and sorted(p for m in group for p in m.assignment) == list(range(6))
        )

    wait_until(lambda: spread(trio, [2, 2, 2]), 30, "2 partitions each", trio)

    # a graceful close: the two others share all six partitions
    trio[0].close()
    assert trio[0].events[-1] == {"event": "closed"}
    wait_until(lambda: spread(trio[1:], [3, 3]), 30, "3 partitions each", trio)

    # kill -9: the last one takes everything once the session times out
    trio[1].kill()
    wait_until(lambda: spread(trio[2:], [6]), 30, "all partitions to the survivor", trio)

    sent = producer.stop()
    wait_until(lambda: sum(_values(trio).values()) >= sent, 30, f"{sent} messages", trio)
    counts = _values(trio)
    assert sorted(counts) == list(range(sent))  # no gaps
    assert set(counts.values()) == {1}  # none twice: commits are synchronous
    trio[2].close()


@pytest.mark.parametrize("client", CLIENTS)
def test_commit_restart_resume(client, group_broker, members):
    bootstrap = group_broker.bootstrap
    topic = topic_name(f"resume-{client}")
    create_topic(bootstrap, topic, 3)
    produce(bootstrap, topic, [f"{i}" for i in range(30)], 3)
    first = Member(client, bootstrap, topic, "resumers")
    members.append(first)
    first.wait_for(lambda: len(first.committed()) == 30, what="30 committed records")
    first.close()

    group_broker.restart()
    produce(bootstrap, topic, [f"{i}" for i in range(30, 45)], 3)
    second = Member(client, bootstrap, topic, "resumers")
    members.append(second)
    second.wait_for(lambda: len(second.committed()) >= 15, what="15 new records")
    # it resumed at the committed offsets: the new records only (offsets 10-14 of each)
    assert sorted(second.committed()) == sorted(
        (i % 3, 10 + (i - 30) // 3, str(i)) for i in range(30, 45)
    )
    second.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_two_groups_each_get_every_message(client, group_broker, members):
    bootstrap = group_broker.bootstrap
    topic = topic_name(f"two-{client}")
    create_topic(bootstrap, topic, 2)
    produce(bootstrap, topic, [f"{i}" for i in range(40)], 2)
    pair = [Member(client, bootstrap, topic, group) for group in ("left", "right")]
    members.extend(pair)
    for member in pair:
        member.wait_for(lambda m=member: len(m.committed()) >= 40, what="40 records")
        assert sorted(int(v) for _, _, v in member.committed()) == list(range(40))
        member.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_static_member_restart_causes_no_rebalance(client, group_broker, members):
    bootstrap = group_broker.bootstrap
    topic = topic_name(f"static-{client}")
    create_topic(bootstrap, topic, 4)
    options = {"session_ms": 6000}
    a = Member(client, bootstrap, topic, "statics", instance="member-a", **options)
    b = Member(client, bootstrap, topic, "statics", instance="member-b", **options)
    members.extend([a, b])
    wait_until(
        lambda: a.assignment and b.assignment and len(a.assignment) == len(b.assignment) == 2,
        30,
        "two partitions each",
        [a, b],
    )
    # kafka-python's leader may rejoin once after its first metadata refresh (1 s here):
    # count the rebalances once the group has settled, as a user watching it would
    rebalances = settled_rebalances(group_broker, "statics")
    a_history, a_revoked = a.assignments(), a.revoked()
    b_partitions = b.assignment
    b.kill()
    again = Member(client, bootstrap, topic, "statics", instance="member-b", **options)
    members.append(again)
    again.wait_for(lambda: again.assignment == b_partitions, what="b's old partitions back")
    # a never saw a rebalance: its assignment history is unchanged
    assert a.assignments() == a_history
    assert a.revoked() == a_revoked
    # and the coordinator did not start one
    assert group_broker.stderr_text().count("rebalance group 'statics'") == rebalances
    again.close()
    a.close()
