"""Captions waiting for their text, one per person per chat.

In a group several members can be mid-flow at once, so the key is (chat, user), never the
chat alone. An expired caption is kept until it is asked for, so the person can be told.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class Pending:
    caption: str
    caption_source: str
    created_at: float
    prompt_message_id: int | None = None


class Lookup(Enum):
    NONE = "none"
    EXPIRED = "expired"


class PendingCaptions:
    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._items: dict[tuple[int, int], Pending] = {}
        self._lock = threading.Lock()

    def put(
        self,
        chat_id: int,
        user_id: int,
        caption: str,
        caption_source: str,
        prompt_message_id: int | None = None,
    ) -> Pending:
        pending = Pending(caption, caption_source, self._clock(), prompt_message_id)
        with self._lock:
            self._items[(chat_id, user_id)] = pending
        return pending

    def peek(self, chat_id: int, user_id: int) -> Pending | None:
        """The live caption, if any, without taking it."""
        with self._lock:
            pending = self._items.get((chat_id, user_id))
        return pending if pending and not self._expired(pending) else None

    def take(self, chat_id: int, user_id: int) -> Pending | Lookup:
        """Remove and return the caption; say EXPIRED rather than NONE if it ran out."""
        with self._lock:
            pending = self._items.pop((chat_id, user_id), None)
        if pending is None:
            return Lookup.NONE
        return Lookup.EXPIRED if self._expired(pending) else pending

    def drop(self, chat_id: int, user_id: int) -> bool:
        """True if a live caption was dropped."""
        return isinstance(self.take(chat_id, user_id), Pending)

    def _expired(self, pending: Pending) -> bool:
        return self._clock() - pending.created_at > self.ttl_seconds
