"""Where the records live: the CSV file at RECORDS_PATH, or PostgreSQL with DATABASE_URL.

Both stores answer to `RecordsStore`, so the bot, `python -m core export` and
`/history` never ask which one they have. With DATABASE_URL the waiting captions move
to the same database (the bot opens them from the same `Database`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol

import pandas as pd

from core.config import Settings
from core.database import Database, describe
from core.records import Record, RecordStore
from core.records_postgres import PostgresRecordStore


class RecordsStore(Protocol):
    """One record per classified message. Every method is blocking, and raises
    RecordsError (DatabaseError for PostgreSQL) when the store cannot be used."""

    def recover(self) -> object:
        """Called once at start-up: set aside what a crash left half-written, if any."""

    def append(self, record: Record) -> None:
        """Add one record; safe while other threads and processes append too."""

    def recent(self, chat_id: int, n: int = 5) -> list[Record]:
        """Up to `n` records of this chat, newest first."""

    def records(self, chat_id: int | None = None) -> Iterator[Record]:
        """Every record of this chat, or of all chats, oldest first."""

    def moods(self, chat_id: int) -> pd.DataFrame:
        """This chat's timestamp (UTC), label, score and user id per record, oldest first."""

    def forget(self, user_id: int, chat_id: int | None = None) -> int:
        """Delete this person's records, in one chat or in all; return how many went."""


@contextlib.contextmanager
def open_database(settings: Settings) -> Iterator[Database | None]:
    """The database of DATABASE_URL, its schema up to date, closed on leaving; None without
    DATABASE_URL. Raises DatabaseError (one line naming DATABASE_URL) when it cannot be used."""
    if not settings.database_url:
        yield None
        return
    with Database.connect(settings.database_url) as database:
        yield database


def records_store(settings: Settings, database: Database | None) -> RecordsStore:
    return PostgresRecordStore(database) if database else RecordStore(settings.records_path)


@contextlib.contextmanager
def open_records(settings: Settings) -> Iterator[RecordsStore]:
    """The records store the settings choose, for as long as the block runs."""
    with open_database(settings) as database:
        yield records_store(settings, database)


def records_location(settings: Settings) -> str:
    """Where records go, for logs and messages; never with the database password."""
    if settings.database_url:
        return describe(settings.database_url)
    return str(settings.records_path.resolve())
