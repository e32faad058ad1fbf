"""Where producer-state snapshots live in a partition directory, and removing them.

The files are Kafka's ``<20-digit offset>.snapshot``; their content is the txn layer's
business (:mod:`kbroker.txn.snapshot`). The log only needs their names: a truncation
drops the snapshots past the new log end, retention those below the new log start.
Keeping this here lets the log manage its directory without importing the txn layer.
"""

from __future__ import annotations

import os

SNAPSHOT_SUFFIX = ".snapshot"


def snapshot_path(directory: str, offset: int) -> str:
    return os.path.join(directory, f"{offset:020d}{SNAPSHOT_SUFFIX}")


def list_snapshots(directory: str) -> list[int]:
    """The offsets of the snapshots in ``directory``, oldest first."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    offsets = []
    for name in names:
        stem, _, suffix = name.partition(".")
        if "." + suffix == SNAPSHOT_SUFFIX and len(stem) == 20 and stem.isdigit():
            offsets.append(int(stem))
    return sorted(offsets)


def delete_snapshot(directory: str, offset: int) -> None:
    try:
        os.unlink(snapshot_path(directory, offset))
    except FileNotFoundError:
        pass


def delete_above(directory: str, offset: int) -> None:
    """Truncation: snapshots past the new log end describe records that are gone."""
    for snap in list_snapshots(directory):
        if snap > offset:
            delete_snapshot(directory, snap)


def delete_below(directory: str, offset: int) -> None:
    for snap in list_snapshots(directory):
        if snap < offset:
            delete_snapshot(directory, snap)
