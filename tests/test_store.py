"""One suite, both stores: the CSV file and PostgreSQL must behave the same to their users.

Each test runs twice, against the records file under tmp_path and against a fresh
database on the session's real PostgreSQL server. `Stores.reopen()` builds new store
objects (and, for PostgreSQL, a new connection pool), as a restarted bot would.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from bot.app import stores
from bot.pending import Lookup, Pending, PendingCaptions
from bot.pending_postgres import PostgresPendingCaptions
from core.config import Settings
from core.database import Database
from core.store import RecordsStore
from tests.test_pending import Clock
from tests.test_records import T0, make_record


@dataclass
class Stores:
    """Opens the stores the settings choose, as the bot does, and closes what it opened."""

    settings: Settings
    clock: Clock = field(default_factory=Clock)
    _databases: list[Database] = field(default_factory=list)

    def reopen(self) -> tuple[RecordsStore, PendingCaptions | PostgresPendingCaptions]:
        database = None
        if self.settings.database_url:
            database = Database.connect(self.settings.database_url)
            self._databases.append(database)
        return stores(self.settings, database, self.clock)

    def close(self) -> None:
        for database in self._databases:
            database.close()


@pytest.fixture(params=["csv", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def opened(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stores]:
    env = {"RECORDS_PATH": str(tmp_path / "records.csv"), "PENDING_PATH": str(tmp_path / "p.json")}
    if kind == "postgres":
        env["DATABASE_URL"] = request.getfixturevalue("database_url")
    stores = Stores(Settings.from_env(env, dotenv_path=None))
    yield stores
    stores.close()


@pytest.fixture
def store(opened: Stores) -> RecordsStore:
    return opened.reopen()[0]


TEXTS = [
    "plain",
    'a "quoted", comma, and\nsecond line',
    '=HYPERLINK("http://evil.example")',
    "emoji 😀 and RTL שלום",
    "  leading spaces\r\nand a CRLF",
]


def test_a_record_comes_back_exactly_as_it_went_in(store: RecordsStore) -> None:
    written = [
        make_record(chat, text, timestamp=T0 + timedelta(seconds=number), score=1 / 3)
        for number, (chat, text) in enumerate(zip([1, -100123, 1, 2, 1], TEXTS, strict=True))
    ]
    written.append(make_record(None, "no chat", user_id=None, caption_source="manual"))
    for record in written:
        store.append(record)
    assert list(store.records()) == written
    assert list(store.records(1)) == [written[0], written[2], written[4]]
    assert store.recent(-100123, 5) == [written[1]]


def test_500_appends_at_once_give_exactly_500_records(store: RecordsStore) -> None:
    def append(number: int) -> None:
        store.append(make_record(number % 7, f'row {number}\n"quoted", too'))

    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(append, range(500)))
    texts = [record.user_text for record in store.records()]
    assert len(texts) == 500
    assert sorted(texts) == sorted(f'row {number}\n"quoted", too' for number in range(500))
    assert sum(len(list(store.records(chat))) for chat in range(7)) == 500


def test_recent_gives_one_chats_newest_records_and_nothing_of_another_chat(
    store: RecordsStore,
) -> None:
    for number in range(6):
        moment = T0 + timedelta(minutes=number)
        store.append(make_record(10, f"ten {number}", timestamp=moment))
        store.append(make_record(-20, f"group {number}", timestamp=moment))
    assert [r.user_text for r in store.recent(10, 3)] == ["ten 5", "ten 4", "ten 3"]
    assert [r.user_text for r in store.recent(-20, 20)] == [f"group {n}" for n in range(5, -1, -1)]
    assert store.recent(30, 5) == []
    assert store.recent(10, 0) == []


def test_records_written_by_one_store_object_are_read_by_another(opened: Stores) -> None:
    first, _ = opened.reopen()
    first.append(make_record(5, "before the restart"))
    second, _ = opened.reopen()
    second.append(make_record(5, "after the restart"))
    texts = [r.user_text for r in first.recent(5, 5)]
    assert texts == ["after the restart", "before the restart"]


def test_a_waiting_caption_survives_a_restart(opened: Stores) -> None:
    _, before = opened.reopen()
    before.put(-5, 1, 'Ann\'s boat ⛵ "quoted"', "image", prompt_message_id=42)
    before.put(-5, 2, "Bob's dog", "manual")
    assert before.take(-5, 2).caption == "Bob's dog"
    _, after = opened.reopen()
    assert after.peek(-5, 1) == Pending('Ann\'s boat ⛵ "quoted"', "image", opened.clock.now, 42)
    assert after.take(-5, 1) == Pending('Ann\'s boat ⛵ "quoted"', "image", opened.clock.now, 42)
    assert after.take(-5, 2) is Lookup.NONE
    assert opened.reopen()[1].take(-5, 1) is Lookup.NONE


def test_an_expired_caption_is_reported_once_then_forgotten(opened: Stores) -> None:
    _, pending = opened.reopen()
    pending.put(1, 10, "a cat", "image")
    opened.clock.now += pending.ttl_seconds + 1
    assert pending.peek(1, 10) is None
    assert pending.take(1, 10) is Lookup.EXPIRED
    assert pending.drop(1, 10) is False


def test_forget_deletes_one_persons_records_in_one_chat_or_in_all(store: RecordsStore) -> None:
    for chat in (1, 2):
        store.append(make_record(chat, "Ann's", user_id=7))
        store.append(make_record(chat, "Bob's", user_id=8))
    assert store.forget(7, chat_id=1) == 1
    assert [(r.chat_id, r.user_text) for r in store.records()] == [
        (1, "Bob's"),
        (2, "Ann's"),
        (2, "Bob's"),
    ]
    assert store.forget(7) == 1
    assert store.forget(7) == 0
    assert [r.user_id for r in store.records()] == [8, 8]


def test_moods_give_one_chats_records_for_statistics(store: RecordsStore) -> None:
    for second, (chat, user) in enumerate([(1, 7), (2, 8), (1, None), (1, 7)]):
        store.append(make_record(chat, "x", user_id=user, timestamp=T0 + timedelta(seconds=second)))
    moods = store.moods(1)
    assert list(moods.columns) == ["timestamp", "label", "score", "user_id"]
    assert moods["timestamp"].tolist() == [T0 + timedelta(seconds=s) for s in (0, 2, 3)]
    assert moods["user_id"].tolist() == [7, pd.NA, 7]
    assert store.moods(3).empty


def test_records_of_a_store_never_written_are_none(store: RecordsStore) -> None:
    assert list(store.records()) == [] and store.recent(1) == []
