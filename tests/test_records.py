"""Tests for core.records: the CSV records file shared by the bot and the CLI."""

import csv
import logging
import multiprocessing
import os
import re
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
from core.records import COLUMNS, Record, RecordStore, TornRow, _format_row
from tests.file_faults import directory_in_place_of, file_in_place_of_its_directory, read_only

# The original app's three real records, copied from shared/original-app.
ORIGINAL_RECORDS = Path(__file__).parent / "data" / "records-original.csv"
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


def recover_past_size_limit(path: str, limit: int) -> str:
    """Worker: set a torn row aside with the file size capped, as on a full disk."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        RecordStore(path).recover()
    except RecordsError as exc:
        return str(exc)
    return "recovered"


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


def test_text_that_utf8_cannot_encode_raises_records_error_and_writes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "records.csv"
    store = RecordStore(path)
    store.append(make_record(1, "fine"))
    before = path.read_bytes()

    with pytest.raises(RecordsError, match="surrogates not allowed"):
        store.append(make_record(1, "a lone surrogate \ud800"))
    assert path.read_bytes() == before


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

# Any code point but surrogates (which UTF-8 cannot hold), with the characters that CSV,
# line splitting and spreadsheets treat specially drawn more often.
awkward_text = st.text(
    st.characters(codec="utf-8") | st.sampled_from("\n\r\",\t \x00\u2028\x85\ufeff=+-@'")
)


@settings(deadline=None, max_examples=150)
@given(
    caption=awkward_text,
    text=awkward_text,
    combined=awkward_text,
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
@example("", "", "", "", 0.0, T0, 0, None, "")
@example(" lead and trail ", "a,b", "a. a,b", '"quoted" ""twice""', 1.0, T0, 1, 2, "manual")
@example("lf\nline", "crlf\r\nline", "lone\rcr", "ends in cr\r", -0.5, T0, -5, 6, "image")
@example("emoji 😀👍🏽", "日本語のテキスト", "שלום עולם", "\u2028\x85\x00", 1e-300, T0, 7, 8, "")
@example("\ufeffbom first", "\x00", "\x1b[31m", "\u202eevil", 0.25, T0, 7, 8, "image")
@example('"', "\n", "\r\n", ",", float("inf"), T0, 9, 10, "manual")
@example('=HYPERLINK("x")', "+1", "-1", "@SUM(A1)", 0.5, T0, 11, 12, "image")
@example("x\n,1,2,image", 'x\n"",5,6,image\n', "a,b,c,d", "1,2,3", 0.5, T0, 13, 14, "image")
def test_any_text_round_trips(
    caption: str,
    text: str,
    combined: str,
    label: str,
    score: float,
    timestamp: datetime,
    chat_id: int,
    user_id: int | None,
    caption_source: str,
) -> None:
    """Every field comes back exactly: through recent(), records(), a new store, and csv."""
    record = Record(
        image_caption=caption,
        user_text=text,
        combined_input=combined,
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
        older = make_record(chat_id, "an older row before it")
        store.append(older)
        store.append(record)
        store.append(make_record(chat_id + 1, "another chat after it"))

        assert store.recent(chat_id, 1) == [record]
        assert RecordStore(path).recent(chat_id, 2) == [record, older]
        assert list(RecordStore(path).records(chat_id)) == [older, record]
        assert list(store.records())[1] == record
        assert read_rows(path)[2][:4] == [caption, text, combined, label]


@settings(deadline=None, max_examples=40)
@given(
    rows=st.lists(st.tuples(st.sampled_from([-100, 1, 10, 11]), awkward_text), max_size=12),
)
def test_any_rows_of_any_chats_read_back_per_chat_in_order(rows: list[tuple[int, str]]) -> None:
    """The index finds each chat's rows, whatever text (quotes, newlines, commas) they hold."""
    records = [make_record(chat, text, user_id=n) for n, (chat, text) in enumerate(rows)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "records.csv"
        store = RecordStore(path)
        for record in records:
            store.append(record)
        fresh = RecordStore(path)

        assert list(fresh.records()) == records
        for chat in (-100, 1, 10, 11, 0):
            mine = [r for r in records if r.chat_id == chat]
            assert list(fresh.records(chat)) == mine
            assert store.recent(chat, 100) == mine[::-1]
            assert fresh.recent(chat, 100) == mine[::-1]


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


# --- a write cut short by a crash ----------------------------------------------------------

TORN_MARKER = re.compile(
    rb"--- (?P<stamp>\S+): (?P<size>\d+) bytes from byte (?P<offset>\d+) of (?P<name>\S+), "
    rb"left by an interrupted write; they follow, then a newline ---\n"
)


def torn_fragments(side_file: Path) -> list[tuple[int, bytes]]:
    """Parse the side file: (offset in the records file, the exact bytes) per recovery."""
    data = side_file.read_bytes()
    fragments = []
    pos = 0
    while pos < len(data):
        marker = TORN_MARKER.match(data, pos)
        assert marker is not None, f"no marker at byte {pos} of {data!r}"
        assert datetime.fromisoformat(marker["stamp"].decode()).utcoffset() == timedelta(0)
        size = int(marker["size"])
        fragment = data[marker.end() : marker.end() + size]
        assert data[marker.end() + size : marker.end() + size + 1] == b"\n"
        fragments.append((int(marker["offset"]), fragment))
        pos = marker.end() + size + 1
    return fragments


TORN_ROWS = {
    "cut inside quotes": b'a cat,"half a sentence, with a comma\n and a newline',
    "cut in a number": b"a cat,meow,a cat. meow,positive,0.9,2026-11-27T04:55:12+00:00,1,4",
    # Ends in a newline, but inside quotes: checking the last byte alone would miss it.
    "cut just after a newline in quotes": b'a cat,"first line\n',
    "cut inside a character": "a cat,caf\u00e9".encode()[:-1],
    "zeros left by a power cut": b"\x00" * 300,
}


@pytest.mark.parametrize("torn", TORN_ROWS.values(), ids=TORN_ROWS.keys())
def test_recover_at_start_sets_the_torn_row_aside_and_keeps_the_rows_before(
    tmp_path: Path, torn: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "records.csv"
    first = make_record(1, "complete")
    RecordStore(path).append(first)
    intact = path.read_bytes()
    with open(path, "ab") as f:  # the process died in the middle of this write
        f.write(torn)

    restarted = RecordStore(path)
    assert restarted.recent(1) == [first]  # reading never changes the file
    assert path.read_bytes() == intact + torn
    with caplog.at_level(logging.WARNING, logger="core.records"):
        recovered = restarted.recover()

    side_file = tmp_path / "records.csv.torn"
    assert recovered == TornRow(offset=len(intact), size=len(torn), side_file=side_file)
    assert restarted.torn_path == side_file
    assert path.read_bytes() == intact
    assert torn_fragments(side_file) == [(len(intact), torn)]
    (warning,) = caplog.records
    assert warning.levelno == logging.WARNING
    assert str(path) in warning.message and str(side_file) in warning.message

    second = make_record(1, "after the restart")
    restarted.append(second)
    assert restarted.recent(1) == [second, first]
    assert [row[1] for row in read_rows(path)[1:]] == ["complete", "after the restart"]
    assert restarted.recover() is None  # nothing more to do


def test_append_sets_a_torn_row_aside_itself(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process (the CLI) died mid-write while the bot runs: its next append copes."""
    path = tmp_path / "records.csv"
    running = RecordStore(path)
    first = make_record(1, "complete")
    running.append(first)
    assert running.recent(1) == [first]  # the index is warm
    intact = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b'other process,"cut\n')

    second = make_record(1, "from the running bot")
    with caplog.at_level(logging.WARNING, logger="core.records"):
        running.append(second)

    assert "moved it to" in caplog.text and str(running.torn_path) in caplog.text
    assert torn_fragments(running.torn_path) == [(intact, b'other process,"cut\n')]
    assert running.recent(1) == [second, first]
    assert RecordStore(path).recent(1) == [second, first]
    assert [row[1] for row in read_rows(path)[1:]] == ["complete", "from the running bot"]


def test_every_crash_adds_its_fragment_to_the_side_file(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    store = RecordStore(path)
    tears = [b"first crash,half", b'second crash,"with\nnewline', b"third"]
    offsets = []
    for n, tear in enumerate(tears):
        store.append(make_record(1, f"row {n}"))
        offsets.append(path.stat().st_size)
        with open(path, "ab") as f:
            f.write(tear)
        assert RecordStore(path).recover() is not None

    assert torn_fragments(store.torn_path) == list(zip(offsets, tears, strict=True))
    assert [r.user_text for r in store.records(1)] == ["row 0", "row 1", "row 2"]


@pytest.mark.parametrize("written", [1, 30, len(HEADER), len(HEADER) + 1 + 20])
def test_a_first_write_cut_short_is_set_aside_and_the_file_starts_again(
    tmp_path: Path, written: int
) -> None:
    """The header and the first row go in one write, so a crash can cut the header too."""
    path = tmp_path / "records.csv"
    RecordStore(path).append(make_record(1, "first row, lost with the crash"))
    whole = path.read_bytes()
    path.write_bytes(whole[:written])

    store = RecordStore(path)
    assert store.recent(1) == []
    recovered = store.recover()

    if written > len(HEADER):  # the header line is whole: it stays
        assert recovered == TornRow(len(HEADER) + 1, written - len(HEADER) - 1, store.torn_path)
        assert path.read_bytes() == whole[: len(HEADER) + 1]
    else:
        assert recovered == TornRow(0, written, store.torn_path)
        assert path.read_bytes() == b""
    assert torn_fragments(store.torn_path) == [
        (recovered.offset, whole[recovered.offset : written])
    ]
    new = make_record(1, "after the crash")
    store.append(new)
    assert read_rows(path)[0] == list(COLUMNS)
    assert store.recent(1) == [new]


def test_recover_leaves_a_missing_or_clean_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "data" / "records.csv"
    store = RecordStore(path)

    assert store.recover() is None
    assert not path.parent.exists()  # nothing created

    store.append(make_record())
    before = path.read_bytes()
    assert store.recover() is None
    assert RecordStore(path).recover() is None
    assert path.read_bytes() == before
    assert not store.torn_path.exists()


def test_original_five_column_file_with_a_torn_row_is_recovered_then_upgraded(
    tmp_path: Path,
) -> None:
    path = tmp_path / "records.csv"
    shutil.copy(ORIGINAL_RECORDS, path)
    size = path.stat().st_size
    torn = b"a cat,the original app died here"
    with open(path, "ab") as f:
        f.write(torn)
    store = RecordStore(path)

    assert store.recover() == TornRow(size, len(torn), store.torn_path)
    assert len(list(store.records())) == 3
    store.append(make_record(1, "after the upgrade"))
    assert [row[1] for row in read_rows(path)[1:]][-1] == "after the upgrade"
    assert len(read_rows(path)) == 1 + 3 + 1


def test_a_torn_row_stays_in_place_while_it_cannot_be_set_aside(tmp_path: Path) -> None:
    """Never drop it, and never append after it (that would glue two rows together)."""
    path = tmp_path / "records.csv"
    store = RecordStore(path)
    store.append(make_record(1, "complete"))
    with open(path, "ab") as f:
        f.write(b"torn")
    before = path.read_bytes()
    store.torn_path.mkdir()  # the side file cannot be written

    with pytest.raises(RecordsError, match="Cannot set aside") as error:
        store.recover()
    assert str(store.torn_path) in str(error.value)
    with pytest.raises(RecordsError, match="Cannot set aside"):
        store.append(make_record(1, "not now"))
    assert path.read_bytes() == before

    store.torn_path.rmdir()
    store.append(make_record(1, "once the side file can be written"))
    assert torn_fragments(store.torn_path) == [(len(before) - 4, b"torn")]
    assert [r.user_text for r in store.records(1)] == [
        "complete",
        "once the side file can be written",
    ]


def test_a_full_disk_while_setting_aside_keeps_the_torn_row_in_place(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    RecordStore(path).append(make_record(1, "complete"))
    with open(path, "ab") as f:
        f.write(b"torn row" * 10)
    before = path.read_bytes()

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        outcome = pool.apply(recover_past_size_limit, (str(path), 20))

    assert outcome.startswith("Cannot set aside the incomplete last row of")
    assert path.read_bytes() == before
    assert path.with_name("records.csv.torn").read_bytes() == b""  # no half marker left
    assert RecordStore(path).recover() == TornRow(len(before) - 80, 80, Path(f"{path}.torn"))


@settings(deadline=None, max_examples=60)
@given(
    earlier=st.lists(st.tuples(st.sampled_from([1, 2]), awkward_text), max_size=5),
    last=awkward_text,
    data=st.data(),
)
def test_any_cut_in_the_last_row_keeps_every_earlier_row_and_the_exact_fragment(
    earlier: list[tuple[int, str]], last: str, data: st.DataObject
) -> None:
    records = [make_record(chat, text) for chat, text in earlier]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "records.csv"
        store = RecordStore(path)
        for record in records:
            store.append(record)
        store.append(make_record(1, "the row being written"))  # makes sure the header is there
        store.append(make_record(2, last))
        whole = path.read_bytes()
        row_start = len(whole) - len(_format_row(make_record(2, last)))
        cut = data.draw(st.integers(row_start + 1, len(whole) - 1), label="cut")
        path.write_bytes(whole[:cut])

        restarted = RecordStore(path)
        assert restarted.recover() == TornRow(row_start, cut - row_start, restarted.torn_path)
        assert torn_fragments(restarted.torn_path) == [(row_start, whole[row_start:cut])]
        assert path.read_bytes() == whole[:row_start]
        again = make_record(2, last)
        restarted.append(again)
        expected = [*records, make_record(1, "the row being written"), again]
        assert list(restarted.records()) == expected
        assert restarted.recent(2, 100) == [r for r in expected if r.chat_id == 2][::-1]


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


# --- a file that fails while in use --------------------------------------------------------


def test_read_only_file_raises_records_error_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    store = RecordStore(path)
    before = make_record(1, "before")
    store.append(before)
    content = path.read_bytes()

    with read_only(path):
        with pytest.raises(RecordsError, match="Cannot write the records file") as error:
            store.append(make_record(1, "while read-only"))
        assert str(path) in str(error.value)
        assert store.recent(1) == [before]  # reading still works
    assert path.read_bytes() == content

    after = make_record(1, "after")
    store.append(after)
    assert store.recent(1) == [after, before]
    assert all(len(row) == len(COLUMNS) for row in read_rows(path))


def test_deleted_file_is_started_again_with_its_header(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "records.csv"
    store = RecordStore(path)
    for i in range(3):
        store.append(make_record(1 + i % 2, f"old {i}"))
    assert len(store.recent(1)) == 2  # the index is warm

    path.unlink()
    assert store.recent(1) == []
    assert list(store.records()) == []
    with caplog.at_level(logging.WARNING, logger="core.records"):
        new = make_record(2, "after the file was deleted")
        store.append(new)

    assert f"The records file {path} was deleted or emptied while in use" in caplog.text
    rows = read_rows(path)
    assert rows[0] == list(COLUMNS)
    assert [row[1] for row in rows[1:]] == ["after the file was deleted"]
    assert store.recent(1) == []
    assert store.recent(2) == [new]


def test_deleted_file_in_a_read_only_directory_fails_then_is_created(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    path = directory / "records.csv"
    store = RecordStore(path)
    store.append(make_record(1, "old"))
    path.unlink()

    with read_only(directory):
        with pytest.raises(RecordsError, match="Cannot write the records file") as error:
            store.append(make_record(1, "while the directory is read-only"))
        assert str(path) in str(error.value)
        assert store.recent(1) == []

    store.append(make_record(1, "after"))
    assert [row[1] for row in read_rows(path)] == ["user_text", "after"]


@pytest.mark.parametrize(
    "fault", [directory_in_place_of, file_in_place_of_its_directory], ids=lambda f: f.__name__
)
def test_path_that_breaks_while_in_use_fails_then_recovers(tmp_path: Path, fault) -> None:
    path = tmp_path / "data" / "records.csv"
    store = RecordStore(path)
    before = make_record(1, "before")
    store.append(before)
    assert store.recent(1) == [before]

    with fault(path):
        with pytest.raises(RecordsError, match="Cannot write the records file") as error:
            store.append(make_record(1, "while broken"))
        assert str(path) in str(error.value)
        with pytest.raises(RecordsError, match="Cannot read the records file"):
            store.recent(1)
        with pytest.raises(RecordsError, match="Cannot open the records file"):
            store.recover()

    after = make_record(1, "after")
    store.append(after)
    assert store.recent(1) == [after, before]
    assert [row[1] for row in read_rows(path)] == ["user_text", "before", "after"]


def test_recent_follows_a_file_replaced_under_it(tmp_path: Path) -> None:
    """Renamed over (a restore from backup): the index starts over on the new file."""
    path = tmp_path / "records.csv"
    store = RecordStore(path)
    for i in range(4):
        store.append(make_record(1, f"old {i}"))
    assert len(store.recent(1, 10)) == 4

    other = tmp_path / "backup.csv"
    backup = RecordStore(other)
    kept = [make_record(2, "from the backup, a longer row than the ones it replaces " * 3)]
    backup.append(kept[0])
    os.replace(other, path)

    assert store.recent(1) == []
    assert store.recent(2) == kept


def test_a_quote_left_open_mid_file_is_not_taken_for_a_torn_row(tmp_path: Path) -> None:
    """Megabytes after the last complete row are damage, not a crash: change nothing."""
    path = tmp_path / "records.csv"
    store = RecordStore(path)
    store.append(make_record(1, "before the damage"))
    rows = b"".join(_format_row(make_record(1, f"row {i} " + "x" * 300)) for i in range(4000))
    with open(path, "ab") as f:  # a hand edit dropped a closing quote, rows followed
        f.write(b'a cat,"unclosed,a cat. x,positive,0.5,2026-11-27T04:55:12+00:00,1,4,image\n')
        f.write(rows)
    before = path.read_bytes()
    assert len(before) > 1 << 20

    with pytest.raises(RecordsError, match="more than an interrupted write leaves"):
        store.recover()
    with pytest.raises(RecordsError, match="look for a quote left open"):
        store.append(make_record(1, "not appended"))
    assert path.read_bytes() == before
    assert not store.torn_path.exists()


@pytest.mark.parametrize("damage", ["stray quote", "quote left open"])
def test_a_hand_edit_that_unbalances_quotes_is_left_for_a_person(
    tmp_path: Path, damage: str
) -> None:
    """32 rows; a hand edit puts a quote into the second one. Reading and appending say where
    the file stops making sense, and change nothing: no valid row goes to the side file."""
    path = tmp_path / "records.csv"
    store = RecordStore(path)
    for i in range(32):
        store.append(make_record(1 if i < 20 else 2, f"row {i}"))
    data = path.read_bytes()
    edit = b'he said "hi' if damage == "stray quote" else b'"row 1'
    path.write_bytes(data.replace(b"row 1,", edit + b",", 1))
    before = path.read_bytes()
    if damage == "stray quote":
        assert len(read_rows(path)) == 1 + 32  # the csv module still reads every row

    for attempt in (
        lambda: RecordStore(path).recent(1, 20),
        lambda: list(RecordStore(path).records()),
        RecordStore(path).recover,
        lambda: RecordStore(path).append(make_record(1, "not appended")),
    ):
        with pytest.raises(RecordsError, match=r"cannot be indexed past byte \d+.*hand edit"):
            attempt()
    assert path.read_bytes() == before
    assert not store.torn_path.exists()


def test_a_symlinked_file_of_the_original_app_is_upgraded_where_it_lies(tmp_path: Path) -> None:
    real = tmp_path / "data" / "records.csv"
    real.parent.mkdir()
    shutil.copy(ORIGINAL_RECORDS, real)
    link = tmp_path / "records.csv"
    link.symlink_to(real)

    RecordStore(link).append(make_record(1, "after the upgrade"))

    assert link.is_symlink() and link.resolve() == real
    rows = read_rows(real)
    assert rows[0] == list(COLUMNS) and len(rows) == 1 + 3 + 1
    assert rows[-1][1] == "after the upgrade"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "records.csv"]
    assert sorted(p.name for p in real.parent.iterdir()) == ["records.csv"]
