"""The fetcher's side of a fetch session (KIP-227), as Kafka's FetchSessionHandler.

The first request is full and opens a session; after that a request carries only the
partitions whose fetch position changed and the ones no longer wanted. Any failure
drops back to a full fetch, which opens a new session. No IO here: :meth:`build` says
what to send, :meth:`received` takes the answer's session fields.
"""

from __future__ import annotations

from kbroker.wire.errors import ErrorCode

NO_SESSION = 0
INITIAL_EPOCH = 0
FINAL_EPOCH = -1


def next_epoch(epoch: int) -> int:
    """Epochs run 1, 2, ... and wrap back to 1 (0 and -1 mean open and close)."""
    return 1 if epoch >= 0x7FFFFFFF else epoch + 1


class FetchSessionHandler:
    """What a fetcher tells one leader about its partitions, request after request."""

    def __init__(self) -> None:
        self.session_id = NO_SESSION
        self.epoch = INITIAL_EPOCH
        self._sent: dict[tuple[str, int], dict] = {}  # what the leader's session holds
        self._pending: dict[tuple[str, int], dict] = {}

    def build(self, wanted: dict[tuple[str, int], dict]) -> dict:
        """The session fields, ``topics`` and ``forgotten_topics_data`` of the next Fetch
        for the partitions in ``wanted`` (key -> its request fields)."""
        self._pending = dict(wanted)
        if self.session_id == NO_SESSION:
            changed, forgotten = wanted, []
        else:
            changed = {k: v for k, v in wanted.items() if self._sent.get(k) != v}
            forgotten = [k for k in self._sent if k not in wanted]
        return {
            "session_id": self.session_id,
            "session_epoch": self.epoch,
            "topics": _by_topic(changed.items(), lambda key, fields: fields),
            "forgotten_topics_data": _by_topic(
                ((key, None) for key in forgotten), lambda key, _: key[1]
            ),
        }

    def received(self, error_code: int, session_id: int) -> None:
        """The leader answered the last :meth:`build` with these session fields."""
        if error_code != ErrorCode.NONE or session_id == NO_SESSION:
            self.reset()
            return
        if self.session_id == NO_SESSION:
            self.session_id, self.epoch = session_id, next_epoch(INITIAL_EPOCH)
        else:
            self.epoch = next_epoch(self.epoch)
        self._sent = self._pending

    def reset(self) -> None:
        """Start over with a full fetch (after an error, or when the connection broke)."""
        self.session_id, self.epoch = NO_SESSION, INITIAL_EPOCH
        self._sent = {}


def _by_topic(items, entry) -> list[dict]:
    topics: dict[str, list] = {}
    for key, fields in items:
        topics.setdefault(key[0], []).append(entry(key, fields))
    return [{"topic": topic, "partitions": entries} for topic, entries in topics.items()]
