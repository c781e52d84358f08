"""Captions waiting for their text, in PostgreSQL: `PendingCaptions` with DATABASE_URL.

One row per person per chat. Taking a caption is one `DELETE … RETURNING`, so two bot
processes can never both complete the same caption, and a restart or a second host
sees every caption still waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.pending import Lookup, Pending, forget_before, is_expired
from core.database import Database, unstorable
from core.errors import BadTextError

_COLUMNS = "caption, caption_source, created_at, prompt_message_id"


class PostgresPendingCaptions:
    def __init__(
        self, database: Database, ttl_seconds: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._database = database
        self.ttl_seconds = ttl_seconds
        self._clock = clock

    def put(
        self,
        chat_id: int,
        user_id: int,
        caption: str,
        caption_source: str,
        prompt_message_id: int | None = None,
    ) -> Pending:
        reason = unstorable([caption])
        if reason:
            raise BadTextError(f"This caption cannot be kept ({reason}): please type it again.")
        pending = Pending(caption, caption_source, self._clock(), prompt_message_id)
        with self._database.connection() as connection:
            connection.execute(
                "DELETE FROM pending_captions WHERE created_at < %s",
                (forget_before(self.ttl_seconds, pending.created_at),),
            )
            connection.execute(
                f"INSERT INTO pending_captions (chat_id, user_id, {_COLUMNS}) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (chat_id, user_id) DO UPDATE SET "
                "caption = excluded.caption, caption_source = excluded.caption_source, "
                "created_at = excluded.created_at, prompt_message_id = excluded.prompt_message_id",
                (chat_id, user_id, caption, caption_source, pending.created_at, prompt_message_id),
            )
        return pending

    def peek(self, chat_id: int, user_id: int) -> Pending | None:
        """The live caption, if any, without taking it."""
        with self._database.connection() as connection:
            row = connection.execute(
                f"SELECT {_COLUMNS} FROM pending_captions WHERE chat_id = %s AND user_id = %s",
                (chat_id, user_id),
            ).fetchone()
        pending = Pending(*row) if row else None
        return pending if pending and not self._expired(pending) else None

    def take(self, chat_id: int, user_id: int) -> Pending | Lookup:
        """Remove and return the caption; say EXPIRED rather than NONE if it ran out."""
        with self._database.connection() as connection:
            row = connection.execute(
                "DELETE FROM pending_captions WHERE chat_id = %s AND user_id = %s "
                f"RETURNING {_COLUMNS}",
                (chat_id, user_id),
            ).fetchone()
        if row is None:
            return Lookup.NONE
        pending = Pending(*row)
        return Lookup.EXPIRED if self._expired(pending) else pending

    def drop(self, chat_id: int, user_id: int) -> bool:
        """True if a live caption was dropped."""
        return isinstance(self.take(chat_id, user_id), Pending)

    def _expired(self, pending: Pending) -> bool:
        return is_expired(pending, self.ttl_seconds, self._clock())
