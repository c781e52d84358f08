"""The records file under the running bot: many chats at once, and a file that fails.

A real `Application` polls our Bot API server on 127.0.0.1 with the tiny models; the
records file is a fresh one under tmp_path and is read back with the csv module.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.combine import combine
from core.errors import RecordsError
from core.records import COLUMNS, Record, RecordStore
from tests.bot_harness import bot_settings, running_bot
from tests.fake_botapi import FakeBotApi
from tests.file_faults import directory_in_place_of, read_only
from tests.test_bot import seen
from tests.tiny_models import SENTIMENT_LABELS

CHATS, PAIRS = 50, 10


def caption_for(chat_id: int, pair: int) -> str:
    return f"caption {chat_id}/{pair}: a quiet street, «rain» 🌧"


def text_for(chat_id: int, pair: int) -> str:
    """Text that CSV, line splitting and spreadsheets treat specially, unique per pair."""
    return f'=chat {chat_id} pair {pair}: "quoted", a comma\nsecond line שלום 😀'


def make_record(text: str) -> Record:
    return Record("a caption", text, f"a caption. {text}", "neutral", 0.5, datetime.now(UTC), 1, 1)


def read_raw_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.reader(file))


@pytest.fixture
def records_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "records.csv"


@pytest.fixture
def settings(api, tiny_models, records_path):
    # No rate limit or queue bound in the way: this is about the records file.
    return bot_settings(
        api, tiny_models, records_path, RATE_LIMIT_PER_MINUTE="10000", MAX_QUEUED_JOBS="1000"
    )


@pytest.fixture
async def bot(api, settings):
    async with running_bot(api, settings) as running:
        yield running


@pytest.mark.timeout(300)
async def test_500_analyses_from_50_chats_at_once_give_exactly_500_intact_rows(api, bot):
    people = [api.user(7000 + n, f"User{n}") for n in range(CHATS)]
    chats = [api.private_chat(person) for person in people]
    began = time.perf_counter()
    for pair in range(PAIRS):  # every chat's pair 0, then every chat's pair 1, ...
        for person, chat in zip(people, chats, strict=True):
            api.send_text(chat, person, caption_for(chat["id"], pair))
            api.send_text(chat, person, text_for(chat["id"], pair))

    answers = await asyncio.gather(
        *(api.wait_for_sent(chat["id"], 2 * PAIRS, timeout=240) for chat in chats)
    )
    elapsed = time.perf_counter() - began
    print(f"\n{CHATS * PAIRS} analyses from {CHATS} chats answered in {elapsed:.1f} s")

    for chat, sent in zip(chats, answers, strict=True):  # each answer is to its own pair
        for pair in range(PAIRS):
            asked, result = seen(sent[2 * pair]), seen(sent[2 * pair + 1])
            assert asked.startswith(f"📝 Caption: {caption_for(chat['id'], pair)}\n")
            assert f"💬 {text_for(chat['id'], pair)}" in result
    rows = read_raw_rows(bot.records_path)
    assert rows[0] == list(COLUMNS)
    assert len(rows) - 1 == CHATS * PAIRS
    assert all(len(row) == len(COLUMNS) for row in rows)
    found = []
    for row in rows[1:]:
        fields = dict(zip(COLUMNS, row, strict=True))
        match = re.fullmatch(r"caption (\d+)/(\d+): .*", fields["image_caption"])
        assert match, fields
        chat_id, pair = int(match[1]), int(match[2])
        assert fields["image_caption"] == caption_for(chat_id, pair)
        assert fields["user_text"] == text_for(chat_id, pair)
        assert fields["combined_input"] == combine(
            caption_for(chat_id, pair), text_for(chat_id, pair)
        )
        assert fields["chat_id"] == fields["user_id"] == str(chat_id)
        assert fields["caption_source"] == "manual"
        assert fields["label"] in SENTIMENT_LABELS.values()
        assert 0.0 <= float(fields["score"]) <= 1.0
        assert datetime.fromisoformat(fields["timestamp"]).utcoffset() is not None
        found.append((chat_id, pair))
    assert len(set(found)) == len(found)  # no duplicate
    assert set(found) == {(chat["id"], pair) for chat in chats for pair in range(PAIRS)}
    for chat in chats:  # one person's analyses are recorded in the order sent
        assert [pair for c, pair in found if c == chat["id"]] == list(range(PAIRS))
        history = RecordStore(bot.records_path).recent(chat["id"], PAIRS)
        assert [r.user_text for r in history] == [
            text_for(chat["id"], pair) for pair in reversed(range(PAIRS))
        ]


async def analyse(api: FakeBotApi, chat: dict, person: dict, text: str) -> str:
    """A typed caption, then its text; returns what the person sees as the result."""
    api.send_text(chat, person, f"a caption for {text}")
    await api.wait_for_sent(chat["id"])
    api.send_text(chat, person, text)
    (result,) = await api.wait_for_sent(chat["id"])
    return seen(result)


FAULTS = {"read-only file": read_only, "a directory in its place": directory_in_place_of}


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
async def test_an_unwritable_records_file_still_answers_logs_an_error_and_recovers(
    api, bot, records_path, caplog, fault
):
    ann = api.user(1, "Ann")
    chat = api.private_chat(ann)
    assert "💬 before" in await analyse(api, chat, ann, "before")

    with caplog.at_level(logging.ERROR), fault(records_path):
        assert "💬 while broken" in await analyse(api, chat, ann, "while broken")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    error = errors[0].exc_info[1]
    assert isinstance(error, RecordsError)
    assert f"Cannot write the records file {records_path}" in str(error)
    assert str(records_path) in caplog.text

    assert "💬 after" in await analyse(api, chat, ann, "after")
    rows = read_raw_rows(records_path)
    assert rows[0] == list(COLUMNS) and all(len(row) == len(COLUMNS) for row in rows)
    assert [row[1] for row in rows[1:]] == ["before", "after"]
    api.send_text(chat, ann, "/history")
    (history,) = await api.wait_for_sent(chat["id"])
    assert "after" in seen(history) and "before" in seen(history)
    assert "while broken" not in seen(history)


async def test_a_records_file_deleted_while_the_bot_runs_is_started_again(
    api, bot, records_path, caplog
):
    ann = api.user(1, "Ann")
    chat = api.private_chat(ann)
    await analyse(api, chat, ann, "before")
    api.send_text(chat, ann, "/history")
    await api.wait_for_sent(chat["id"])  # the index now knows the old file

    records_path.unlink()
    api.send_text(chat, ann, "/history")
    (empty,) = await api.wait_for_sent(chat["id"])
    assert "before" not in seen(empty)
    with caplog.at_level(logging.WARNING, logger="core.records"):
        assert "💬 after" in await analyse(api, chat, ann, "after")

    assert "was deleted or emptied while in use" in caplog.text
    rows = read_raw_rows(records_path)
    assert rows[0] == list(COLUMNS)
    assert [row[1] for row in rows[1:]] == ["after"]
    api.send_text(chat, ann, "/history")
    (history,) = await api.wait_for_sent(chat["id"])
    assert "after" in seen(history) and "before" not in seen(history)


async def test_a_row_torn_by_a_crash_before_start_is_set_aside_and_rows_append_cleanly(
    api, settings, records_path, caplog
):
    records_path.parent.mkdir(parents=True)
    RecordStore(records_path).append(make_record("before the crash"))
    intact = records_path.read_bytes()
    torn = b'a caption,"the bot was killed in the middle of this\n'
    with records_path.open("ab") as file:
        file.write(torn)

    side_file = records_path.with_name("records.csv.torn")
    with caplog.at_level(logging.WARNING, logger="core.records"):
        async with running_bot(api, settings):
            assert side_file.exists()  # set aside at start, before anyone writes
            assert records_path.read_bytes() == intact
            ann = api.user(1, "Ann")
            chat = api.private_chat(ann)
            assert "💬 after the restart" in await analyse(api, chat, ann, "after the restart")

    assert f"moved it to {side_file}" in caplog.text
    assert side_file.read_bytes().endswith(b" ---\n" + torn + b"\n")
    rows = read_raw_rows(records_path)
    assert records_path.read_bytes().startswith(intact)
    assert [row[1] for row in rows[1:]] == ["before the crash", "after the restart"]
    assert all(len(row) == len(COLUMNS) for row in rows)


async def test_history_that_cannot_be_read_says_so_without_showing_a_path(
    api, bot, records_path, caplog
):
    ann = api.user(1, "Ann")
    chat = api.private_chat(ann)
    assert "💬 first" in await analyse(api, chat, ann, "first")
    with caplog.at_level(logging.ERROR), directory_in_place_of(records_path):
        api.send_text(chat, ann, "/history")
        (answer,) = await api.wait_for_sent(chat["id"])
    assert seen(answer) == "The history can't be read right now. Please try again later."
    assert str(records_path) in caplog.text
