"""The PostgreSQL database of DATABASE_URL: one connection pool, and the schema it needs.

`Database.connect()` makes one direct connection first, so a database that is down, a
wrong password or a missing database stop the caller at once with one line naming
DATABASE_URL, before anything else starts. On that connection it creates or migrates
the schema: the migrations below run in order, each once, recorded in `schema_version`,
under an advisory lock, so the bot and the CLI starting together never race. Then a
psycopg_pool pool serves every call: connections are checked before use, so the first
call after a database restart does not fail on a dead connection, and a call waits at
most `wait_seconds` for one before it fails with DatabaseError.

The calls are blocking: the bot runs them in threads, never on its event loop.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from core.errors import DatabaseError

log = logging.getLogger(__name__)

_LOCK = 0x6D6F6F64  # pg_advisory_xact_lock key: one migrating process at a time
# Each migration runs once, in order. Never edit one that has shipped: add the next.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE IF NOT EXISTS records (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                image_caption text NOT NULL,
                user_text text NOT NULL,
                combined_input text NOT NULL,
                label text NOT NULL,
                score double precision NOT NULL,
                "timestamp" timestamptz,
                chat_id bigint,
                user_id bigint,
                caption_source text NOT NULL DEFAULT ''
                    CHECK (caption_source IN ('', 'image', 'manual')),
                import_key bytea UNIQUE
            )""",
            # /history reads it backwards (newest first), statistics forwards (a time range).
            'CREATE INDEX IF NOT EXISTS records_chat_time ON records (chat_id, "timestamp", id)',
            # Forgetting a person, in every chat or in one.
            "CREATE INDEX IF NOT EXISTS records_user_chat ON records (user_id, chat_id)",
            """CREATE TABLE IF NOT EXISTS pending_captions (
                chat_id bigint NOT NULL,
                user_id bigint NOT NULL,
                caption text NOT NULL,
                caption_source text NOT NULL,
                created_at double precision NOT NULL,
                prompt_message_id bigint,
                PRIMARY KEY (chat_id, user_id)
            )""",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


class Database:
    """A pool of connections to one PostgreSQL database whose schema is up to date."""

    def __init__(self, pool: ConnectionPool, location: str) -> None:
        self._pool = pool
        self.location = location  # the URL without its password, for messages

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        pool_size: int = 10,
        wait_seconds: float = 5.0,
        reconnect_seconds: float = 10.0,
        connect_timeout: int = 5,
    ) -> Database:
        """Check that the database answers, bring its schema up to date, open the pool.

        After an outage the pool retries with a doubling delay; `reconnect_seconds` caps
        that series, and the next call starts a new one, so the bot is back within about
        that long of the database. Raises DatabaseError with one line naming DATABASE_URL
        (never its password).
        """
        location = describe(url)
        options = {"connect_timeout": connect_timeout, "application_name": "mood-bot"}
        try:
            with psycopg.connect(url, **options) as connection:
                migrate(connection)
        except psycopg.Error as error:
            raise DatabaseError(
                f"Cannot use the database of DATABASE_URL ({location}): {one_line(error)}"
            ) from None
        pool = ConnectionPool(
            url,
            kwargs=options,
            min_size=1,
            max_size=pool_size,
            timeout=wait_seconds,
            reconnect_timeout=reconnect_seconds,
            check=ConnectionPool.check_connection,
            name="records",
            open=True,
        )
        log.info("Records and waiting captions are kept in %s", location)
        return cls(pool, location)

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A connection for one transaction: committed when the block ends, rolled back
        when it raises. A database that cannot be reached raises DatabaseError."""
        try:
            with self._pool.connection() as connection:
                yield connection
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            raise DatabaseError(
                f"The database {self.location} is unavailable: {one_line(error)}"
            ) from error

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def migrate(connection: psycopg.Connection) -> None:
    """Apply the migrations this database has not had yet, in one transaction."""
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        row = connection.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        current = row[0] if row else 0
        if current > SCHEMA_VERSION:
            raise DatabaseError(
                f"The database has schema version {current}, newer than this code's "
                f"{SCHEMA_VERSION}: run the newer code, or point DATABASE_URL elsewhere"
            )
        for version, statements in MIGRATIONS:
            if version <= current:
                continue
            for statement in statements:
                connection.execute(statement)
            connection.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
            log.info("Database schema migrated to version %d", version)


def unstorable(texts: Iterable[str]) -> str | None:
    """Why PostgreSQL's text type cannot hold one of these texts; None when it can."""
    for text in texts:
        if "\x00" in text:
            return "PostgreSQL text cannot hold a NUL character"
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:  # a lone surrogate
            return error.reason
    return None


def describe(url: str) -> str:
    """postgresql://user@host:port/dbname: where the data goes, without the password."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.Error as error:
        raise DatabaseError(f"DATABASE_URL cannot be read: {one_line(error)}") from None
    user = parts.get("user")
    host = parts.get("host") or parts.get("hostaddr") or "localhost"
    port = parts.get("port") or "5432"
    dbname = parts.get("dbname") or user or ""
    return f"postgresql://{f'{user}@' if user else ''}{host}:{port}/{dbname}"


def one_line(error: BaseException) -> str:
    """libpq's messages run over several lines; a log line or an exit message must not."""
    return " ".join(str(error).split()) or type(error).__name__
