"""Records in PostgreSQL: the same `RecordsStore` as the CSV file, one row per record.

Each call is one transaction, so a record is stored whole or not at all, and any number
of bot and CLI processes can append at once. `/history` reads a chat's newest rows through
the (chat_id, timestamp, id) index, newest first by time, then by the order they came in.

`import_records()` loads an existing records file. Each imported row carries a key made
of its content and how many identical rows came before it in the file, so importing the
same file again, or the file after it grew, adds only the rows not imported yet, and two
identical rows of the original app (no chat, no time) both stay.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC

import pandas as pd

from core.database import Database, unstorable
from core.errors import RecordsError
from core.records import COLUMNS, MOOD_COLUMNS, Record

log = logging.getLogger(__name__)

_FIELDS = ", ".join(f'"{column}"' for column in COLUMNS)
_SELECT = f"SELECT {_FIELDS} FROM records"
_INSERT = f"INSERT INTO records ({_FIELDS}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
_IMPORT = f"""
    INSERT INTO records ({_FIELDS}, import_key)
    SELECT {_FIELDS},
        sha256(digest || int8send(row_number() OVER (PARTITION BY digest ORDER BY ord)))
    FROM import_rows ORDER BY ord
    ON CONFLICT (import_key) DO NOTHING"""


@dataclass(frozen=True)
class Imported:
    """What `import_records()` did."""

    read: int  # records in the file
    added: int  # new in the database
    skipped: int  # records PostgreSQL cannot hold (a NUL character), left out


class PostgresRecordStore:
    """Appends records to the `records` table and reads them back as `Record`s."""

    def __init__(self, database: Database) -> None:
        self._database = database

    @property
    def location(self) -> str:
        return self._database.location

    def recover(self) -> None:
        """Nothing to set aside: a transaction cut short by a crash leaves no row at all."""

    def append(self, record: Record) -> None:
        row = _row(record)
        with self._database.connection() as connection:
            connection.execute(_INSERT, row)

    def recent(self, chat_id: int, n: int = 5) -> list[Record]:
        """Return up to `n` records of this chat, newest first."""
        if n <= 0:
            return []
        with self._database.connection() as connection:
            rows = connection.execute(
                f'{_SELECT} WHERE chat_id = %s ORDER BY "timestamp" DESC, id DESC LIMIT %s',
                (chat_id, n),
            ).fetchall()
        return [_record(row) for row in rows]

    def records(self, chat_id: int | None = None) -> Iterator[Record]:
        """Every record of this chat (oldest first), or of all chats (in the order stored).

        Streamed through a server-side cursor: an export of millions of rows holds a
        few thousand in memory at a time.
        """
        with self._database.connection() as connection, connection.cursor("records") as cursor:
            cursor.itersize = 5000
            if chat_id is None:
                cursor.execute(f"{_SELECT} ORDER BY id")
            else:
                cursor.execute(f'{_SELECT} WHERE chat_id = %s ORDER BY "timestamp", id', (chat_id,))
            for row in cursor:
                yield _record(row)

    def moods(self, chat_id: int) -> pd.DataFrame:
        """This chat's records as a table of `MOOD_COLUMNS`, oldest first, for statistics."""
        with self._database.connection() as connection:
            rows = connection.execute(
                'SELECT "timestamp", label, score, user_id FROM records '
                'WHERE chat_id = %s ORDER BY "timestamp", id',
                (chat_id,),
            ).fetchall()
        table = pd.DataFrame(rows, columns=list(MOOD_COLUMNS))
        table["timestamp"] = pd.to_datetime(table["timestamp"], utc=True)
        table["score"] = table["score"].astype(float)
        table["user_id"] = table["user_id"].astype("Int64")
        return table

    def forget(self, user_id: int, chat_id: int | None = None) -> int:
        """Delete this person's records, in one chat or in all; return how many went."""
        with self._database.connection() as connection:
            if chat_id is None:
                cursor = connection.execute("DELETE FROM records WHERE user_id = %s", (user_id,))
            else:
                cursor = connection.execute(
                    "DELETE FROM records WHERE user_id = %s AND chat_id = %s", (user_id, chat_id)
                )
            return cursor.rowcount

    def import_records(self, records: Iterable[Record]) -> Imported:
        """Add the records not imported before, all in one transaction."""
        read = skipped = 0
        with self._database.connection() as connection:
            connection.execute(
                "CREATE TEMPORARY TABLE import_rows ON COMMIT DROP AS "
                f"SELECT 0::bigint AS ord, ''::bytea AS digest, {_FIELDS} FROM records WITH NO DATA"
            )
            copy_sql = f"COPY import_rows (ord, digest, {_FIELDS}) FROM STDIN"
            with connection.cursor().copy(copy_sql) as copy:
                for record in records:
                    read += 1
                    try:
                        row = _row(record)
                    except RecordsError as error:
                        log.warning("Not imported, record %d: %s", read, error)
                        skipped += 1
                        continue
                    copy.write_row((read, _digest(row), *row))
            added = connection.execute(_IMPORT).rowcount
        return Imported(read=read, added=added, skipped=skipped)


def _row(record: Record) -> tuple[object, ...]:
    """The record as the table's columns; RecordsError for text no database can hold."""
    texts = (record.image_caption, record.user_text, record.combined_input, record.label)
    reason = unstorable(texts)
    if reason:
        raise RecordsError(f"Cannot store a record: {reason}")
    stamp, chat_id, user_id = record.timestamp, record.chat_id, record.user_id
    return (*texts, float(record.score), stamp, chat_id, user_id, record.caption_source)


def _digest(row: Sequence[object]) -> bytes:
    stamp = row[5]
    fields = [*row[:5], None if stamp is None else stamp.astimezone(UTC).isoformat(), *row[6:]]
    return hashlib.sha256(json.dumps(fields, ensure_ascii=False).encode()).digest()


def _record(row: Sequence) -> Record:
    caption, text, combined, label, score, stamp, chat_id, user_id, source = row
    return Record(
        image_caption=caption,
        user_text=text,
        combined_input=combined,
        label=label,
        score=score,
        timestamp=None if stamp is None else stamp.astimezone(UTC),
        chat_id=chat_id,
        user_id=user_id,
        caption_source=source,
    )
