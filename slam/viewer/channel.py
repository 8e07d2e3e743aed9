"""A drop-oldest multiprocessing queue: the producer never blocks, the consumer sees the newest items.

multiprocessing.Queue has no drop-oldest mode: when it is full the producer takes the oldest item out itself.
The feeder thread is told not to be joined at exit, so a consumer that died with the pipe full cannot hang
the producer's process when it ends.
"""

from __future__ import annotations

import queue
from typing import Any

_TRIES = 4
_FLUSH_WAIT_S = 0.02  # the oldest item may still be on its way through the feeder thread into the pipe


def make_queue(context, maxsize: int):
    q = context.Queue(maxsize=maxsize)
    q.cancel_join_thread()
    return q


def put_latest(q, item: Any) -> int:
    """Put `item` without waiting for the consumer, taking the oldest items out to make room; returns how many
    were dropped. Should the oldest never come through (a racing consumer took it, or the feeder thread was not
    scheduled), the new item is the one dropped after a few tries: the caller is never held for long."""
    dropped = 0
    for _ in range(_TRIES):
        try:
            q.put_nowait(item)
            return dropped
        except queue.Full:
            try:
                q.get(timeout=_FLUSH_WAIT_S)
                dropped += 1
            except queue.Empty:
                pass
    return dropped + 1


def take_all(q, timeout: float) -> list[Any]:
    """Everything waiting, oldest first, after waiting up to `timeout` for the first item (empty: none came)."""
    items: list[Any] = []
    try:
        items.append(q.get(timeout=timeout))
    except queue.Empty:
        return items
    while True:
        try:
            items.append(q.get_nowait())
        except queue.Empty:
            return items
