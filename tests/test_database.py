"""Tests for core.database: the schema made at start, and a database that is down.

Every test runs against a real PostgreSQL server started by the tests (conftest.py);
the outage tests stop and start a server of their own.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from core.database import SCHEMA_VERSION, Database
from core.errors import DatabaseError
from core.records_postgres import PostgresRecordStore
from tests.postgres_server import PostgresServer, _free_port, once_it_answers
from tests.test_records import make_record


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {name for (name,) in rows}


def versions(url: str) -> list[int]:
    with psycopg.connect(url) as connection:
        return [v for (v,) in connection.execute("SELECT version FROM schema_version").fetchall()]


def test_the_schema_is_made_at_start_once_however_many_start_together(database_url: str) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        databases = list(pool.map(lambda _: Database.connect(database_url), range(4)))
    for database in databases:
        database.close()
    Database.connect(database_url).close()
    assert {"records", "pending_captions", "schema_version"} <= tables(database_url)
    assert versions(database_url) == [SCHEMA_VERSION]


def test_records_survive_a_second_start(database_url: str) -> None:
    first = Database.connect(database_url)
    PostgresRecordStore(first).append(make_record(3, "kept"))
    first.close()
    second = Database.connect(database_url)
    assert [r.user_text for r in PostgresRecordStore(second).recent(3)] == ["kept"]
    second.close()


def test_a_schema_newer_than_the_code_is_refused_untouched(database_url: str) -> None:
    Database.connect(database_url).close()
    with psycopg.connect(database_url) as connection:
        connection.execute(
            "INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION + 1,)
        )
    with pytest.raises(DatabaseError, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        Database.connect(database_url)


def test_history_and_forgetting_are_served_by_indexes(database: Database) -> None:
    store = PostgresRecordStore(database)
    for number in range(50):
        store.append(make_record(number % 5, f"row {number}", user_id=number % 3))
    with database.connection() as connection:
        connection.execute("ANALYZE records")
        # 50 rows fit one page, which a plain scan reads fastest: ask what the index can do.
        connection.execute("SET LOCAL enable_seqscan = off")
        connection.execute("SET LOCAL enable_bitmapscan = off")
        history = plan(
            connection,
            'SELECT * FROM records WHERE chat_id = 1 ORDER BY "timestamp" DESC, id DESC LIMIT 20',
        )
        statistics = plan(
            connection,
            "SELECT label, count(*) FROM records WHERE chat_id = 1 "
            "AND \"timestamp\" >= now() - interval '7 days' GROUP BY label",
        )
        forget = plan(connection, "DELETE FROM records WHERE user_id = 2 AND chat_id = 1")
    assert "Index Scan Backward using records_chat_time" in history and "Sort" not in history
    assert "records_chat_time" in statistics
    assert "records_user_chat" in forget


def plan(connection: psycopg.Connection, query: str) -> str:
    return "\n".join(row[0] for row in connection.execute(f"EXPLAIN {query}").fetchall())


def test_a_database_that_is_down_gives_one_line_naming_database_url_without_password() -> None:
    port = _free_port()
    with pytest.raises(DatabaseError) as raised:
        Database.connect(f"postgresql://ann:s3cret@127.0.0.1:{port}/moods")
    message = str(raised.value)
    where = f"postgresql://ann@127.0.0.1:{port}/moods"
    assert message.startswith(f"Cannot use the database of DATABASE_URL ({where}): ")
    assert "Connection refused" in message
    assert "\n" not in message and "s3cret" not in message


def test_a_missing_database_is_named_in_the_error(postgres_server: PostgresServer) -> None:
    with pytest.raises(DatabaseError, match='database "nowhere" does not exist'):
        Database.connect(postgres_server.url("nowhere"))


@pytest.fixture(scope="module")
def own_server():
    """A server these tests may stop: the session's is shared with every other test."""
    with PostgresServer() as server:
        yield server


def test_while_the_server_is_down_calls_fail_cleanly_then_work_again(
    own_server: PostgresServer,
) -> None:
    url = own_server.create_database()
    database = Database.connect(url, wait_seconds=1, reconnect_seconds=2)
    store = PostgresRecordStore(database)
    store.append(make_record(1, "before"))
    own_server.stop()
    try:
        with pytest.raises(DatabaseError, match="is unavailable") as raised:
            store.append(make_record(1, "while down"))
        assert "\n" not in str(raised.value)
        with pytest.raises(DatabaseError):
            store.recent(1)
    finally:
        own_server.start()
    once_it_answers(lambda: store.recent(1))
    store.append(make_record(1, "after"))
    assert [r.user_text for r in store.recent(1, 5)] == ["after", "before"]
    database.close()
