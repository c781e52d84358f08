"""Captions waiting for their text, one per person per chat.

In a group several members can be mid-flow at once, so the key is (chat, user), never the
chat alone. An expired caption is kept until it is asked for, so the person can be told.
With a path, the captions are saved on every change, so a restart or a deploy between a
photo and its text loses nothing. With DATABASE_URL they live in PostgreSQL instead
(bot.pending_postgres), with the same methods and the same expiry rules below.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pending:
    caption: str
    caption_source: str
    created_at: float
    prompt_message_id: int | None = None


class Lookup(Enum):
    NONE = "none"
    EXPIRED = "expired"


def is_expired(pending: Pending, ttl_seconds: float, now: float) -> bool:
    return now - pending.created_at > ttl_seconds


def forget_before(ttl_seconds: float, now: float) -> float:
    """Expired captions are kept a day (to tell their owner), not forever."""
    return now - max(2 * ttl_seconds, 24 * 3600)


class PendingCaptions:
    def __init__(
        self,
        ttl_seconds: float,
        clock: Callable[[], float] = time.time,
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._path = Path(path) if path is not None else None
        self._items: dict[tuple[int, int], Pending] = self._load()
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
            self._forget_long_expired()
            self._items[(chat_id, user_id)] = pending
            self._save()
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
            if pending is not None:
                self._save()
        if pending is None:
            return Lookup.NONE
        return Lookup.EXPIRED if self._expired(pending) else pending

    def drop(self, chat_id: int, user_id: int) -> bool:
        """True if a live caption was dropped."""
        return isinstance(self.take(chat_id, user_id), Pending)

    def _expired(self, pending: Pending) -> bool:
        return is_expired(pending, self.ttl_seconds, self._clock())

    def _forget_long_expired(self) -> None:
        horizon = forget_before(self.ttl_seconds, self._clock())
        for key in [key for key, p in self._items.items() if p.created_at < horizon]:
            del self._items[key]

    def _load(self) -> dict[tuple[int, int], Pending]:
        if self._path is None or not self._path.exists():
            return {}
        try:
            items = {}
            for key, fields in json.loads(self._path.read_text(encoding="utf-8")).items():
                chat, user = key.split(":")
                items[(int(chat), int(user))] = Pending(**fields)
            return items
        except (OSError, ValueError, TypeError) as error:
            log.error(
                "Waiting captions in %s could not be read (%s); starting empty", self._path, error
            )
            return {}

    def _save(self) -> None:
        """Atomic: a crash mid-write leaves the previous file, never half of one."""
        if self._path is None:
            return
        data = {f"{chat}:{user}": asdict(p) for (chat, user), p in self._items.items()}
        temporary = self._path.with_name(self._path.name + ".tmp")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
            os.replace(temporary, self._path)
        except OSError as error:
            log.error("Waiting captions could not be saved to %s: %s", self._path, error)
