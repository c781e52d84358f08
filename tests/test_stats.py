"""core.stats: a chat's moods counted per day or week with pandas, drawn with matplotlib."""

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from core.records import MOOD_COLUMNS, Record, RecordStore
from core.stats import chat_stats, summarize

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def record(chat_id: int, user_id: int, label: str, when: datetime, score: float = 0.9) -> Record:
    return Record("a caption", "a text", "a caption. a text", label, score, when, chat_id, user_id)


def store_with(tmp_path: Path, *records: Record) -> RecordStore:
    store = RecordStore(tmp_path / "records.csv")
    for one in records:
        store.append(one)
    return store


def test_counts_only_this_chats_results_in_the_period(tmp_path: Path) -> None:
    store = store_with(
        tmp_path,
        record(1, 10, "positive", NOW - timedelta(hours=1)),
        record(1, 10, "positive", NOW - timedelta(days=3)),
        record(1, 11, "negative", NOW - timedelta(days=29)),
        record(1, 11, "neutral", NOW - timedelta(days=31)),  # before the 30 days
        record(2, 10, "negative", NOW),  # another chat
    )

    stats = chat_stats(store, 1, 30, "UTC", NOW)

    assert stats is not None
    assert (stats.total, stats.days, stats.weekly) == (3, 30, False)
    assert stats.counts == {"positive": 2, "neutral": 0, "negative": 1}
    assert [(p.user_id, p.total) for p in stats.people] == [(10, 2), (11, 1)]
    assert stats.people[1].counts == {"positive": 0, "neutral": 0, "negative": 1}
    everything = chat_stats(store, 1, None, "UTC", NOW)
    assert everything is not None and everything.total == 4


def test_the_chart_is_a_png_at_least_800_pixels_wide(tmp_path: Path) -> None:
    store = store_with(tmp_path, record(1, 10, "positive", NOW))
    stats = chat_stats(store, 1, 30, "UTC", NOW)
    assert stats is not None
    with Image.open(io.BytesIO(stats.png)) as image:
        assert image.format == "PNG"
        assert image.width >= 800


def test_days_end_at_midnight_in_the_configured_time_zone(tmp_path: Path) -> None:
    """23:30 UTC on 2 December is already 3 December in Berlin (UTC+1), not in New York."""
    late = datetime(2026, 12, 2, 23, 30, tzinfo=UTC)
    store = store_with(tmp_path, record(1, 10, "positive", late))
    assert chat_stats(store, 1, 1, "Europe/Berlin", NOW) is not None
    assert chat_stats(store, 1, 1, "UTC", NOW) is None
    assert chat_stats(store, 1, 1, "America/New_York", NOW) is None
    assert chat_stats(store, 1, 2, "America/New_York", NOW) is not None


def test_no_results_in_the_period_gives_none(tmp_path: Path) -> None:
    store = store_with(tmp_path, record(1, 10, "positive", NOW - timedelta(days=40)))
    assert chat_stats(store, 1, 30, "UTC", NOW) is None
    assert chat_stats(store, 2, None, "UTC", NOW) is None
    assert chat_stats(RecordStore(tmp_path / "missing.csv"), 1, None, "UTC", NOW) is None


@pytest.mark.parametrize(("days", "weekly"), [(60, False), (61, True), (365, True)])
def test_long_periods_are_counted_per_week(tmp_path: Path, days: int, weekly: bool) -> None:
    store = store_with(tmp_path, record(1, 10, "neutral", NOW))
    stats = chat_stats(store, 1, days, "UTC", NOW)
    assert stats is not None and stats.weekly is weekly


def test_the_five_most_active_people_come_first(tmp_path: Path) -> None:
    moods = pd.DataFrame(
        {
            "timestamp": pd.to_datetime([NOW] * 21, utc=True),
            "label": ["Positive"] * 21,  # labels as some models spell them
            "score": [0.5] * 21,
            "user_id": pd.array([u for u in range(1, 7) for _ in range(u)], dtype="Int64"),
        },
        columns=list(MOOD_COLUMNS),
    )
    stats = summarize(moods, 7, "UTC", NOW)
    assert stats is not None
    assert [(p.user_id, p.total) for p in stats.people] == [(6, 6), (5, 5), (4, 4), (3, 3), (2, 2)]
    assert stats.counts["positive"] == 21


def test_moods_skips_unreadable_rows_and_keeps_the_rest(tmp_path: Path, caplog) -> None:
    store = store_with(tmp_path, record(1, 10, "positive", NOW), record(1, 11, "negative", NOW))
    text = store.path.read_text(encoding="utf-8").replace(",0.9,", ",not a number,", 1)
    store.path.write_text(text, encoding="utf-8")

    moods = RecordStore(store.path).moods(1)

    assert list(moods.columns) == list(MOOD_COLUMNS)
    assert moods["user_id"].tolist() == [11]
    assert "Skipped 1 unreadable rows of chat 1" in caplog.text


def test_moods_reads_rows_whose_texts_span_lines_and_hold_quotes(tmp_path: Path) -> None:
    texts = ['"quoted"\nsecond line, comma', "plain", 'ends in a quote "\n\n"', "last"]
    store = RecordStore(tmp_path / "records.csv")
    for user_id, text in enumerate(texts):
        store.append(Record(text, text, text, "neutral", 0.5, NOW, 1, user_id))
        store.append(Record(text, text, text, "positive", 0.5, NOW, 2, 99))

    moods = RecordStore(store.path).moods(1)

    assert moods["user_id"].tolist() == [0, 1, 2, 3]
    assert moods["label"].tolist() == ["neutral"] * 4
