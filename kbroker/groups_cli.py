"""``kbroker groups list|describe``: a small admin client speaking our own codec.

It asks a running broker with ListGroups, DescribeGroups, OffsetFetch and ListOffsets,
and prints groups, members, assignments, committed offsets and lag.
"""

from __future__ import annotations

import socket
import struct

from kbroker.group.consumer_protocol import assigned_partitions
from kbroker.wire.primitives import INT32
from kbroker.wire.registry import default_registry
from kbroker.wire.types import Writer, skip_tagged_fields

CLIENT_ID = "kbroker-cli"
LATEST = -1


class BrokerConnection:
    """One blocking connection; ``call`` sends a request and returns the decoded response."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.registry = default_registry()
        self.correlation = 0

    def call(self, key: int, version: int, body: dict) -> dict:
        self.correlation += 1
        api = self.registry.apis[key]
        flexible = api.is_flexible(version)
        out = Writer()
        out += struct.pack(">hhi", key, version, self.correlation)
        out += struct.pack(">h", len(CLIENT_ID)) + CLIENT_ID.encode()
        if flexible:
            out.append(0)
        full = {}
        decoder_defaults = self._defaults(key, version)
        full.update(decoder_defaults)
        full.update(body)
        self.registry.encode_request(key, version, full, out)
        self.sock.sendall(INT32.pack(len(out)) + bytes(out))
        size = INT32.unpack(self._read(4))[0]
        frame = self._read(size)
        pos = 4
        if flexible and key != 18:
            pos = skip_tagged_fields(frame, pos)
        return self.registry.decode_response(key, version, frame, pos)[0]

    def _defaults(self, key: int, version: int) -> dict:
        api = self.registry.apis[key]
        return {f.name: f.make_default() for f in api.request if version in f.versions}

    def _read(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            data += chunk
        return bytes(data)

    def close(self) -> None:
        self.sock.close()


def list_groups(conn: BrokerConnection) -> list[dict]:
    return conn.call(16, 4, {"states_filter": []})["groups"]


def describe(conn: BrokerConnection, group_id: str) -> dict:
    """A group's state, members with assignments, and committed offsets with lag."""
    (group,) = conn.call(15, 5, {"groups": [group_id], "include_authorized_operations": False})[
        "groups"
    ]
    members = []
    for m in group["members"]:
        assignment = (
            assigned_partitions(m["member_assignment"])
            if group["protocol_type"] == "consumer"
            else None
        )
        members.append(
            {
                "member_id": m["member_id"],
                "group_instance_id": m["group_instance_id"],
                "client_id": m["client_id"],
                "client_host": m["client_host"],
                "assignment": assignment or {},
            }
        )
    fetched = conn.call(9, 8, {"groups": [{"group_id": group_id, "topics": None}]})
    committed = {
        (t["name"], p["partition_index"]): p["committed_offset"]
        for t in fetched["groups"][0]["topics"]
        for p in t["partitions"]
    }
    ends: dict[tuple[str, int], int] = {}
    if committed:
        by_topic: dict[str, list[int]] = {}
        for topic, partition in committed:
            by_topic.setdefault(topic, []).append(partition)
        listed = conn.call(
            2,
            7,
            {
                "replica_id": -1,
                "topics": [
                    {
                        "name": topic,
                        "partitions": [{"partition_index": p, "timestamp": LATEST} for p in parts],
                    }
                    for topic, parts in by_topic.items()
                ],
            },
        )
        for t in listed["topics"]:
            for p in t["partitions"]:
                if p["error_code"] == 0:
                    ends[(t["name"], p["partition_index"])] = p["offset"]
    owner = {
        (topic, p): m["member_id"]
        for m in members
        for topic, parts in m["assignment"].items()
        for p in parts
    }
    offsets = [
        {
            "topic": topic,
            "partition": partition,
            "committed": offset,
            "log_end": ends.get((topic, partition)),
            "lag": None if (topic, partition) not in ends else ends[(topic, partition)] - offset,
            "member": owner.get((topic, partition)),
        }
        for (topic, partition), offset in sorted(committed.items())
    ]
    return {
        "group_id": group["group_id"],
        "state": group["group_state"],
        "protocol_type": group["protocol_type"],
        "protocol": group["protocol_data"],
        "members": members,
        "offsets": offsets,
    }


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def run(args) -> int:
    conn = BrokerConnection(args.host, args.port)
    try:
        if args.groups_command == "list":
            rows = [["GROUP", "STATE", "PROTOCOL TYPE"]]
            rows += [
                [g["group_id"], g["group_state"], g["protocol_type"]]
                for g in sorted(list_groups(conn), key=lambda g: g["group_id"])
            ]
            print(_table(rows))
            return 0
        status = 0
        names = args.group or [g["group_id"] for g in list_groups(conn)]
        for name in names:
            info = describe(conn, name)
            print(
                f"group {info['group_id']}: {info['state']} "
                f"({info['protocol_type'] or '-'}/{info['protocol'] or '-'}), "
                f"{len(info['members'])} members"
            )
            if info["state"] == "Dead":
                status = 1
            if info["members"]:
                rows = [["MEMBER", "INSTANCE", "CLIENT", "HOST", "ASSIGNMENT"]]
                for m in info["members"]:
                    assignment = ", ".join(
                        f"{topic}-{p}"
                        for topic, parts in sorted(m["assignment"].items())
                        for p in parts
                    )
                    rows.append(
                        [
                            m["member_id"],
                            m["group_instance_id"] or "-",
                            m["client_id"],
                            m["client_host"],
                            assignment or "-",
                        ]
                    )
                print(_table(rows))
            if info["offsets"]:
                rows = [["TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG", "MEMBER"]]
                for o in info["offsets"]:
                    rows.append(
                        [
                            o["topic"],
                            str(o["partition"]),
                            str(o["committed"]),
                            "-" if o["log_end"] is None else str(o["log_end"]),
                            "-" if o["lag"] is None else str(o["lag"]),
                            o["member"] or "-",
                        ]
                    )
                print(_table(rows))
            print()
        return status
    finally:
        conn.close()


def add_parser(commands) -> None:
    groups = commands.add_parser("groups", help="list or describe consumer groups")
    groups.add_argument("--host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    groups.add_argument("--port", type=int, default=9092, help="broker port (default 9092)")
    sub = groups.add_subparsers(dest="groups_command", required=True)
    sub.add_parser("list", help="list the groups")
    describe_cmd = sub.add_parser("describe", help="members, assignments, offsets and lag")
    describe_cmd.add_argument("group", nargs="*", help="groups to describe (default: all)")
