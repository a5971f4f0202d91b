"""What a spent gateway connection's containers become: the seam's adapters swap a library's
empty queues for these after the handshake (`trim_after_handshake`), one shape for both."""

from __future__ import annotations


class ListQueue(list):
    """A FIFO queue that a QUIC library keeps as a `collections.deque` (760 bytes each, empty),
    as a list (72 bytes): a connection queues a few items (events, path challenges, datagram
    frames) between two reads, so `popleft`'s copy is short. Everything the libraries do with
    those deques (append, popleft, [0], len, truth) is list behaviour or this one method."""

    __slots__ = ()

    def popleft(self):
        return self.pop(0)
