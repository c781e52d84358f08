"""Tests for core.records: the CSV records file shared by the bot and the CLI."""

import csv
import logging
import multiprocessing
import resource
import shutil
import signal
import tempfile
import threading
from datetime import UTC, datetime, timedelta, timezone
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from core.errors import RecordsError
from core.records import COLUMNS, Record, RecordStore

ORIGINAL_RECORDS = Path("/work/shared/original-app/records-original.csv")
HEADER = (
    "image_caption,user_text,combined_input,label,score,timestamp,chat_id,user_id,caption_source"
)
T0 = datetime(2026, 11, 27, 4, 55, 12, 123456, tzinfo=UTC)


def make_record(chat_id: int | None = 1, text: str = "hello", **changes: object) -> Record:
    fields: dict[str, object] = {
        "image_caption": "a dog on a beach",
        "user_text": text,
        "combined_input": f"a dog on a beach. {text}",
        "label": "positive",
        "score": 0.9854153990745544,
        "timestamp": T0,
        "chat_id": chat_id,
        "user_id": 42,
        "caption_source": "image",
    }
    fields.update(changes)
    return Record(**fields)  # type: ignore[arg-type]


def read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def append_rows(path: str, chat_id: int, count: int, start: Barrier) -> None:
    """Worker for the multi-process test: its own store, like the CLI next to the bot."""
    store = RecordStore(path)
    start.wait()
    for i in range(count):
        store.append(make_record(chat_id, f"process {chat_id}, row {i}\nsecond line"))


def append_past_size_limit(path: str, limit: int) -> str:
    """Worker: append with the file size capped, as on a full disk; return what happened."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        RecordStore(path).append(make_record(7, "x" * 10_000))
    except RecordsError as exc:
        return str(exc)
    return "appended"


# --- the file's layout -------------------------------------------------------------------


def test_columns_keep_the_original_five_first() -> None:
    assert ",".join(COLUMNS) == HEADER


def test_new_file_gets_the_header_once_and_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "data" / "nested" / "records.csv"
    store = RecordStore(path)
    store.append(make_record(1, "first"))
    store.append(make_record(1, "second"))

    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == HEADER
    assert lines.count(HEADER) == 1
    assert [row[1] for row in read_rows(path)[1:]] == ["first", "second"]


def test_existing_empty_file_gets_the_header(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    path.touch()
    RecordStore(path).append(make_record())

    rows = read_rows(path)
    assert rows[0] == list(COLUMNS)
    assert len(rows) == 2


def test_creating_a_store_does_not_touch_the_file(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "records.csv"
    store = RecordStore(path)

    assert store.path == path
    assert store.recent(1) == []
    assert not path.parent.exists()


def test_row_values_are_written_in_the_documented_formats(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    plus_two = timezone(timedelta(hours=2))
    RecordStore(path).append(
        make_record(-1001234, score=0.1 + 0.2, timestamp=T0.astimezone(plus_two), user_id=None)
    )

    row = dict(zip(COLUMNS, read_rows(path)[1], strict=True))
    assert row["score"] == "0.30000000000000004"
    assert row["timestamp"] == "2026-11-27T04:55:12.123456+00:00"
    assert row["chat_id"] == "-1001234"
    assert row["user_id"] == ""
    assert row["caption_source"] == "image"


def test_record_rejects_values_the_file_cannot_hold() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make_record(timestamp=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="caption_source"):
        make_record(caption_source="image,manual")


# --- concurrent appends ------------------------------------------------------------------


def test_threads_appending_at_once_lose_and_mix_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    store = RecordStore(path)
    start = threading.Barrier(20)

    def worker(chat_id: int) -> None:
        start.wait()
        for i in range(50):
            store.append(make_record(chat_id, f'thread {chat_id}, "row" {i}\r\nmore'))

    threads = [threading.Thread(target=worker, args=(chat,)) for chat in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    rows = read_rows(path)
    assert rows[0] == list(COLUMNS)
    assert all(len(row) == len(COLUMNS) for row in rows[1:])
    expected = {(str(c), f'thread {c}, "row" {i}\r\nmore') for c in range(20) for i in range(50)}
    assert len(rows) - 1 == len(expected)
    assert {(row[6], row[1]) for row in rows[1:]} == expected


@pytest.mark.parametrize("start_from", ["no file", "the original app's file"])
def test_processes_appending_at_once_lose_no_rows(tmp_path: Path, start_from: str) -> None:
    """All start together, so they race to write the header or to upgrade the old file."""
    path = tmp_path / "records.csv"
    old_rows = []
    if start_from == "the original app's file":
        shutil.copy(ORIGINAL_RECORDS, path)
        old_rows = read_rows(path)[1:]
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(4)
    chats = (100, 101, 102, 103)
    workers = [context.Process(target=append_rows, args=(str(path), c, 50, start)) for c in chats]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0

    rows = read_rows(path)
    assert rows.count(list(COLUMNS)) == 1
    assert all(len(row) == len(COLUMNS) for row in rows[1:])
    assert [row[:5] for row in rows[1 : 1 + len(old_rows)]] == old_rows
    expected = {(str(c), f"process {c}, row {i}\nsecond line") for c in chats for i in range(50)}
    assert len(rows) - 1 - len(old_rows) == len(expected)
    assert {(row[6], row[1]) for row in rows[1 + len(old_rows) :]} == expected


# --- any text round-trips ----------------------------------------------------------------

awkward_text = st.text(st.characters(codec="utf-8") | st.sampled_from('\n\r",\t '))


@settings(deadline=None, max_examples=150)
@given(
    caption=awkward_text,
    text=awkward_text,
    label=awkward_text,
    score=st.floats(allow_nan=False),
    timestamp=st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-9, minutes=-30))]),
    ),
    chat_id=st.integers(-(10**13), 10**13),
    user_id=st.none() | st.integers(0, 10**12),
    caption_source=st.sampled_from(["", "image", "manual"]),
)
@example("", "", "", 0.0, T0, 0, None, "")
@example(" lead and trail ", "a,b", '"quoted" ""twice""', 1.0, T0, 1, 2, "manual")
@example("lf\nline", "crlf\r\nline", "lone\rcr", -0.5, T0, -5, 6, "image")
@example("emoji 😀👍🏽", "日本語のテキスト", "\u2028\x85\x00\ufeff", 1e-300, T0, 7, 8, "image")
def test_any_text_round_trips(
    caption: str,
    text: str,
    label: str,
    score: float,
    timestamp: datetime,
    chat_id: int,
    user_id: int | None,
    caption_source: str,
) -> None:
    record = Record(
        image_caption=caption,
        user_text=text,
        combined_input=f"{caption}. {text}",
        label=label,
        score=score,
        timestamp=timestamp,
        chat_id=chat_id,
        user_id=user_id,
        caption_source=caption_source,
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "records.csv"
        store = RecordStore(path)
        store.append(make_record(chat_id, "an older row before it"))
        store.append(record)
        store.append(make_record(chat_id + 1, "another chat after it"))

        assert store.recent(chat_id, 1) == [record]
        assert RecordStore(path).recent(chat_id, 1) == [record]
        assert read_rows(path)[2][:4] == [caption, text, f"{caption}. {text}", label]


# --- the original app's five-column file ---------------------------------------------------


def test_original_five_column_file_reads_and_is_upgraded_on_first_append(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "records.csv"
    shutil.copy(ORIGINAL_RECORDS, path)
    original = read_rows(path)
    before = path.read_bytes()
    store = RecordStore(path)

    assert store.recent(1) == []
    assert path.read_bytes() == before

    new = make_record(1, "after the upgrade")
    with caplog.at_level(logging.INFO, logger="core.records"):
        store.append(new)
        store.append(make_record(2, "a second append does not upgrade again"))

    assert [r.message for r in caplog.records].count(
        f"Upgraded {path} from the original five-column format (3 rows kept)"
    ) == 1
    rows = read_rows(path)
    assert rows[0] == list(COLUMNS)
    assert len(rows) == 1 + 3 + 2
    for old, upgraded in zip(original[1:], rows[1:4], strict=True):
        assert upgraded[:5] == old
        assert upgraded[5:] == ["", "", "", ""]
    assert [float(row[4]) for row in rows[1:4]] == [
        0.9854153990745544,
        0.932631492614746,
        0.988825500011444,
    ]
    assert rows[4][1] == "after the upgrade"
    assert store.recent(1) == [new]
    assert RecordStore(path).recent(1) == [new]
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_store_that_indexed_the_original_file_sees_the_upgrade_by_another(
    tmp_path: Path,
) -> None:
    path = tmp_path / "records.csv"
    shutil.copy(ORIGINAL_RECORDS, path)
    reader = RecordStore(path)
    assert reader.recent(3) == []

    new = make_record(3, "written by the CLI")
    RecordStore(path).append(new)

    assert reader.recent(3) == [new]


# --- recent ------------------------------------------------------------------------------


def test_recent_returns_newest_first_up_to_n(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "records.csv")
    records = [make_record(1, f"message {i}", timestamp=T0 + timedelta(i)) for i in range(8)]
    for record in records:
        store.append(record)

    assert store.recent(1) == records[::-1][:5]
    assert store.recent(1, n=2) == [records[7], records[6]]
    assert store.recent(1, n=100) == records[::-1]
    assert store.recent(1, n=0) == []


def test_recent_keeps_chats_apart(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "records.csv")
    for i in range(6):
        store.append(make_record(10 + i % 3, f"message {i}"))

    assert [r.user_text for r in store.recent(10)] == ["message 3", "message 0"]
    assert [r.user_text for r in store.recent(11)] == ["message 4", "message 1"]
    assert store.recent(99) == []
    assert store.recent(1) == []  # a prefix of 10, 11, 12 is not a match


def test_recent_sees_rows_appended_by_another_store(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    bot = RecordStore(path)
    bot.append(make_record(5, "from the bot"))
    assert [r.user_text for r in bot.recent(5)] == ["from the bot"]

    RecordStore(path).append(make_record(5, "from the cli"))

    assert [r.user_text for r in bot.recent(5)] == ["from the cli", "from the bot"]


def test_recent_notices_a_file_rewritten_in_place(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    store = RecordStore(path)
    store.append(make_record(1, "old"))
    assert len(store.recent(1)) == 1

    with open(path, "r+", newline="", encoding="utf-8") as f:  # same inode, new content
        f.truncate()
    other = RecordStore(path)
    for i in range(3):
        other.append(make_record(2, f"new {i}, longer than the old row was"))

    assert store.recent(1) == []
    assert [r.user_text for r in store.recent(2, 1)] == ["new 2, longer than the old row was"]


@pytest.mark.parametrize(
    "torn",
    [
        'a cat,"half a sentence, with a comma\n and a newline',  # cut inside quotes
        "a cat,meow,a cat. meow,positive,0.9,2026-11-27T04:55:12+00:00,1,4",  # cut in a number
    ],
)
def test_torn_last_row_is_ignored_then_dropped_by_the_next_append(
    tmp_path: Path, torn: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "records.csv"
    store = RecordStore(path)
    first = make_record(1, "complete")
    store.append(first)
    with open(path, "a", newline="", encoding="utf-8") as f:
        f.write(torn)

    assert store.recent(1) == [first]
    assert RecordStore(path).recent(1) == [first]

    second = make_record(1, "after the torn row")
    with caplog.at_level(logging.WARNING, logger="core.records"):
        store.append(second)

    assert "Dropped an incomplete last row" in caplog.text
    assert store.recent(1) == [second, first]
    assert [row[1] for row in read_rows(path)[1:]] == ["complete", "after the torn row"]


# --- errors ------------------------------------------------------------------------------


def test_path_under_a_regular_file_raises_records_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    store = RecordStore(blocker / "records.csv")

    with pytest.raises(RecordsError, match="not-a-directory"):
        store.append(make_record())
    with pytest.raises(RecordsError, match="not-a-directory"):
        store.recent(1)


def test_directory_as_path_raises_records_error(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)

    with pytest.raises(RecordsError, match="Cannot write the records file"):
        store.append(make_record())
    with pytest.raises(RecordsError, match="Cannot read the records file"):
        store.recent(1)


@pytest.mark.parametrize("content", ["name,email\nAda,ada@example.org\n", "x" * 5000])
def test_file_with_another_header_is_refused_and_left_alone(tmp_path: Path, content: str) -> None:
    path = tmp_path / "records.csv"
    path.write_text(content, encoding="utf-8")
    store = RecordStore(path)

    with pytest.raises(RecordsError, match="not a records file"):
        store.append(make_record())
    with pytest.raises(RecordsError, match="not a records file"):
        store.recent(1)
    assert path.read_text(encoding="utf-8") == content


def test_header_cut_short_reads_as_empty_but_is_not_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    path.write_text(HEADER[:30], encoding="utf-8")
    store = RecordStore(path)

    assert store.recent(1) == []
    with pytest.raises(RecordsError, match="does not start with the records header"):
        store.append(make_record())


def test_full_disk_raises_records_error_and_leaves_no_half_row(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    store = RecordStore(path)
    store.append(make_record(7, "before the disk filled up"))
    size = path.stat().st_size

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        outcome = pool.apply(append_past_size_limit, (str(path), size + 100))

    assert "Cannot write the records file" in outcome
    assert str(path) in outcome
    assert path.stat().st_size == size
    store.append(make_record(7, "after space was freed"))
    assert [r.user_text for r in store.recent(7)] == [
        "after space was freed",
        "before the disk filled up",
    ]
