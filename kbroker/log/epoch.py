"""The leader epoch cache: which epoch started at which offset (leader-epoch-checkpoint)."""

from __future__ import annotations

import os

from .checkpoint import LEADER_EPOCH_CHECKPOINT, CorruptCheckpoint, read_lines, write_lines

UNDEFINED_EPOCH = -1
UNDEFINED_OFFSET = -1


class LeaderEpochCache:
    def __init__(self, directory: str):
        self.path = os.path.join(directory, LEADER_EPOCH_CHECKPOINT)
        try:
            self._entries = [(int(e), int(o)) for e, o in read_lines(self.path, 2)]
        except (CorruptCheckpoint, ValueError):
            self._entries = []  # rebuilt as batches are appended; Kafka does the same

    @property
    def entries(self) -> list[tuple[int, int]]:
        """(epoch, start offset) pairs, oldest first."""
        return list(self._entries)

    @property
    def latest_epoch(self) -> int:
        return self._entries[-1][0] if self._entries else UNDEFINED_EPOCH

    def assign(self, epoch: int, start_offset: int) -> bool:
        """Record that ``epoch`` starts at ``start_offset`` (no-op if already known)."""
        if epoch < 0:
            return False
        entries = self._entries
        if entries and entries[-1][0] == epoch and start_offset >= entries[-1][1]:
            return False
        kept = [(e, o) for e, o in entries if e < epoch and o < start_offset]
        kept.append((epoch, start_offset))
        self._entries = kept
        self._write()
        return True

    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """OffsetsForLeaderEpoch: (largest epoch <= ``epoch``, end offset of that epoch)."""
        if epoch == UNDEFINED_EPOCH or not self._entries:
            return UNDEFINED_EPOCH, UNDEFINED_OFFSET
        if epoch == self.latest_epoch:
            return epoch, log_end_offset
        floor = None
        for e, o in self._entries:
            if e > epoch:
                return (floor if floor is not None else epoch), o
            floor = e
        return UNDEFINED_EPOCH, UNDEFINED_OFFSET

    def epoch_for_offset(self, offset: int) -> int:
        epoch = UNDEFINED_EPOCH
        for e, o in self._entries:
            if o > offset:
                break
            epoch = e
        return epoch

    def truncate_from_end(self, end_offset: int) -> None:
        """Drop epochs that start at or after ``end_offset`` (the log was truncated)."""
        kept = [(e, o) for e, o in self._entries if o < end_offset]
        if len(kept) != len(self._entries):
            self._entries = kept
            self._write()

    def truncate_from_start(self, start_offset: int) -> None:
        """The log now starts at ``start_offset``: the epoch holding it starts there."""
        below = [entry for entry in self._entries if entry[1] < start_offset]
        if not below:
            return
        rest = [entry for entry in self._entries if entry[1] >= start_offset]
        if not rest or rest[0][1] != start_offset:
            rest.insert(0, (below[-1][0], start_offset))
        self._entries = rest
        self._write()

    def clear(self) -> None:
        self._entries = []
        self._write()

    def _write(self) -> None:
        write_lines(self.path, (f"{e} {o}" for e, o in self._entries))

    def delete(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
