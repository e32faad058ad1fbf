"""Kafka's checkpoint files: a version line, a count line, then one entry per line.

``recovery-point-offset-checkpoint``, ``replication-offset-checkpoint`` and
``log-start-offset-checkpoint`` hold "topic partition offset" lines;
``leader-epoch-checkpoint`` holds "epoch start_offset" lines. Writes are atomic:
a ``.tmp`` file is written, synced and renamed over the old one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

VERSION = 0

RECOVERY_POINT_CHECKPOINT = "recovery-point-offset-checkpoint"
REPLICATION_CHECKPOINT = "replication-offset-checkpoint"
LOG_START_CHECKPOINT = "log-start-offset-checkpoint"
LEADER_EPOCH_CHECKPOINT = "leader-epoch-checkpoint"


class CorruptCheckpoint(ValueError):
    pass


def write_lines(path: str, entries: Iterable[str], sync: bool = True) -> None:
    entries = list(entries)
    text = f"{VERSION}\n{len(entries)}\n" + "".join(line + "\n" for line in entries)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, text.encode())
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if sync:
        dir_fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def read_lines(path: str, fields: int) -> list[list[str]]:
    """The entry lines split into ``fields`` fields; [] if the file does not exist."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    if len(lines) < 2:
        raise CorruptCheckpoint(f"{path}: missing version or count line")
    try:
        version, count = int(lines[0]), int(lines[1])
    except ValueError as exc:
        raise CorruptCheckpoint(f"{path}: bad header") from exc
    if version != VERSION:
        raise CorruptCheckpoint(f"{path}: unsupported version {version}")
    entries = [line.split() for line in lines[2:] if line.strip()]
    if len(entries) != count or any(len(e) != fields for e in entries):
        raise CorruptCheckpoint(f"{path}: expected {count} entries of {fields} fields")
    return entries


def write_offsets(path: str, offsets: Mapping[tuple[str, int], int], sync: bool = True) -> None:
    """Write "topic partition offset" lines."""
    write_lines(path, (f"{t} {p} {o}" for (t, p), o in sorted(offsets.items())), sync)


def read_offsets(path: str) -> dict[tuple[str, int], int]:
    try:
        return {(t, int(p)): int(o) for t, p, o in read_lines(path, 3)}
    except ValueError as exc:
        raise CorruptCheckpoint(f"{path}: {exc}") from exc
