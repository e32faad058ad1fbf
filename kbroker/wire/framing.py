"""Kafka's size-prefixed frames, cut out of a byte stream with no IO.

Both ends of a connection use it: the listener for requests and a broker's own client
connection to a peer (replica fetching) for responses. Each byte is copied at most once,
into its frame's buffer; with a ``BufferedProtocol`` a large frame is read from the
socket straight into that buffer.
"""

from __future__ import annotations

from collections import deque

from kbroker.wire.primitives import INT32


class FrameError(Exception):
    """The stream announced a frame we refuse to read; the connection must be closed."""


class FrameReader:
    """Collects whole frames; a size prefix beyond ``max_size`` stops reception at once."""

    def __init__(self, max_size: int, limit_name: str) -> None:
        self.max_size = max_size
        self.limit_name = limit_name  # named in the error: the setting that bounds frames
        self._prefix = bytearray()  # the size prefix of the next frame, as it arrives
        self._frame: bytearray | None = None  # the frame being filled
        self._filled = 0
        self._ready: deque[bytearray] = deque()
        self.error: FrameError | None = None

    def receive_data(self, data) -> None:
        """Take bytes from the socket (the body of a refused frame is never buffered)."""
        view = memoryview(data)
        pos, end = 0, len(view)
        while pos < end and self.error is None:
            if self._frame is None:
                take = min(4 - len(self._prefix), end - pos)
                self._prefix += view[pos : pos + take]
                pos += take
                if len(self._prefix) < 4:
                    return
                (size,) = INT32.unpack_from(self._prefix, 0)
                self._prefix.clear()
                if size < 0 or size > self.max_size:
                    self.error = FrameError(
                        f"frame of {size} bytes exceeds {self.limit_name} ({self.max_size})"
                    )
                    return
                self._frame, self._filled = bytearray(size), 0
            frame = self._frame
            take = min(len(frame) - self._filled, end - pos)
            frame[self._filled : self._filled + take] = view[pos : pos + take]
            self._filled += take
            pos += take
            if self._filled == len(frame):
                self._ready.append(frame)
                self._frame = None

    def get_buffer(self, scratch: bytearray) -> memoryview:
        """Where the next socket read should land (for a ``BufferedProtocol``).

        Mid-frame, the rest of that frame's own buffer; between frames, ``scratch``,
        whose bytes then go through :meth:`buffer_updated` as :meth:`receive_data`
        would take them.
        """
        frame = self._frame
        if frame is not None and self.error is None:
            return memoryview(frame)[self._filled :]
        return memoryview(scratch)

    def buffer_updated(self, buffer: memoryview, nbytes: int) -> None:
        """``nbytes`` arrived in ``buffer`` (the last :meth:`get_buffer` answer)."""
        if buffer.obj is self._frame:
            self._filled += nbytes
            if self._filled == len(self._frame):
                self._ready.append(self._frame)
                self._frame = None
        else:
            self.receive_data(buffer[:nbytes])

    @property
    def has_frame(self) -> bool:
        """A whole frame (or an error) is waiting for :meth:`next_frame`."""
        return bool(self._ready) or self.error is not None

    def next_frame(self) -> bytearray | None:
        """The next whole frame, or None until more data arrives; raises a stream error
        once the frames before it are taken."""
        if self._ready:
            return self._ready.popleft()
        if self.error is not None:
            raise self.error
        return None
