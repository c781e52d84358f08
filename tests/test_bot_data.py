"""/stats, /export and /forget end to end: a real Application over real HTTP to our Bot API.

The records file is filled beforehand with results of several people in several chats, so
each test can check that a chat only ever sees, exports or loses its own rows.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

from core.records import Record, RecordStore
from tests.bot_harness import bot_settings, running_bot
from tests.test_bot import seen

GROUP, OTHER_GROUP = 500, 600


def result(chat_id: int, user_id: int, label: str, text: str, days_ago: float = 0) -> Record:
    when = datetime.now(UTC) - timedelta(days=days_ago)
    return Record("a caption", text, f"a caption. {text}", label, 0.8, when, chat_id, user_id)


@pytest.fixture
def settings(api, tiny_models, tmp_path):
    return bot_settings(api, tiny_models, tmp_path / "records.csv")


@pytest.fixture
def group(api):
    return api.group_chat(GROUP, "Friends")


@pytest.fixture
def store(settings, group, ann, bob) -> RecordStore:
    """Ann and Bob in the group and in their private chats, and strangers in another group."""
    store = RecordStore(settings.records_path)
    rows = [
        result(group["id"], ann["id"], "positive", '=HYPERLINK("http://x")'),
        result(group["id"], ann["id"], "positive", "lovely", days_ago=2),
        result(group["id"], ann["id"], "negative", "+1 awful", days_ago=10),
        result(group["id"], bob["id"], "neutral", "@bob so so", days_ago=1),
        result(group["id"], bob["id"], "positive", "fine", days_ago=45),  # outside 30 days
        result(-OTHER_GROUP, 77, "negative", "other group"),
        result(-OTHER_GROUP, 78, "negative", "other group"),
        result(ann["id"], ann["id"], "neutral", "ann alone"),
        result(bob["id"], bob["id"], "positive", "bob alone"),
    ]
    for row in rows:
        store.append(row)
    return store


@pytest.fixture
async def bot(api, settings, store):
    async with running_bot(api, settings) as running:
        yield running


def texts(bot, chat_id: int | None = None, user_id: int | None = None) -> list[str]:
    return [
        row["user_text"]
        for row in bot.rows()
        if (chat_id is None or row["chat_id"] == str(chat_id))
        and (user_id is None or row["user_id"] == str(user_id))
    ]


# ------------------------------------------------------------------------------ /stats


async def test_stats_sends_a_chart_whose_caption_counts_only_this_chat(api, bot, group, ann, bob):
    api.set_member_status(group, bob, "member")
    api.send_text(group, ann, "/stats")
    (sent,) = await api.wait_for_sent(group["id"])

    assert sent["kind"] == "photo"
    with Image.open(io.BytesIO(sent["file"])) as chart:
        assert chart.format == "PNG" and chart.width >= 800
    caption = seen({"text": sent["caption"], "parse_mode": sent["parse_mode"]})
    lines = caption.splitlines()
    assert lines[0] == "4 results in the last 30 days: 😊 2 · 😐 1 · 😞 1"
    assert lines[2:] == [
        "Most active:",
        "Ann: 3 · 😊 67% · 😐 0% · 😞 33%",
        "Bob: 1 · 😊 0% · 😐 100% · 😞 0%",
    ]


async def test_stats_all_and_a_number_of_days_choose_the_period(api, bot, group, ann, bob):
    api.set_member_status(group, bob, "member")
    api.send_text(group, ann, "/stats all")
    api.send_text(group, ann, "/stats 1")
    everything, today = await api.wait_for_sent(group["id"], 2)
    assert everything["caption"].startswith("5 results so far: 😊 3 · 😐 1 · 😞 1")
    assert today["caption"].startswith("1 result in the last day: 😊 1 · 😐 0 · 😞 0")


async def test_stats_in_a_private_chat_has_no_breakdown_per_person(api, bot, ann):
    chat = api.private_chat(ann)
    api.send_text(chat, ann, "/stats")
    (sent,) = await api.wait_for_sent(chat["id"])
    assert sent["caption"] == "1 result in the last 30 days: 😊 0 · 😐 1 · 😞 0"


async def test_stats_without_results_or_with_a_bad_period_answers_in_words(api, bot, ann):
    lonely = api.group_chat(700, "Quiet")
    api.send_text(lonely, ann, "/stats")
    api.send_text(lonely, ann, "/stats 366")
    api.send_text(lonely, ann, "/stats soon")
    replies = await api.wait_for_sent(lonely["id"], 3)
    assert [seen(reply) for reply in replies] == [
        "No results in this chat in the last 30 days.",
        "Use /stats, /stats N with N from 1 to 365 days, or /stats all.",
        "Use /stats, /stats N with N from 1 to 365 days, or /stats all.",
    ]


async def test_a_member_whose_name_cannot_be_read_is_shown_by_id(api, bot, group, ann, bob):
    """Bob never wrote where the server saw him, so getChatMember fails for him."""
    api.send_text(group, ann, "/stats")
    (sent,) = await api.wait_for_sent(group["id"])
    assert f"user {bob['id']}: 1 · 😊 0% · 😐 100% · 😞 0%" in sent["caption"]


# ----------------------------------------------------------------------------- /export


def exported_rows(sent: dict) -> list[dict[str, str]]:
    data = bytes(sent["file"])
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


async def test_a_group_admin_exports_only_this_chats_rows_formula_safe(api, bot, group, ann):
    api.set_member_status(group, ann, "administrator")
    api.send_text(group, ann, "/export")
    (sent,) = await api.wait_for_sent(group["id"])

    assert sent["kind"] == "document" and sent["file_name"] == f"mood-results-{group['id']}.csv"
    assert sent["caption"] == "5 results from this chat."
    rows = exported_rows(sent)
    assert {row["chat_id"] for row in rows} == {str(group["id"])}
    assert [row["user_text"] for row in rows] == [
        '\'=HYPERLINK("http://x")',
        "lovely",
        "'+1 awful",
        "'@bob so so",
        "fine",
    ]


async def test_the_groups_creator_may_export_too(api, bot, group, ann):
    api.set_member_status(group, ann, "creator")
    api.send_text(group, ann, "/export")
    (sent,) = await api.wait_for_sent(group["id"])
    assert len(exported_rows(sent)) == 5


async def test_a_group_member_who_is_not_an_admin_gets_one_line_and_no_file(api, bot, group, bob):
    api.set_member_status(group, bob, "member")
    api.send_text(group, bob, "/export")
    (sent,) = await api.wait_for_sent(group["id"])
    assert seen(sent) == "Sorry, in a group only its administrators can export the results."
    assert not [call for call, _ in api.calls if call == "sendDocument"]


async def test_in_a_private_chat_a_person_exports_their_own_chat(api, bot, ann):
    chat = api.private_chat(ann)
    api.send_text(chat, ann, "/export")
    (sent,) = await api.wait_for_sent(chat["id"])
    assert [row["user_text"] for row in exported_rows(sent)] == ["ann alone"]


async def test_an_export_over_50_mb_is_refused_with_the_shell_command(api, bot, ann, monkeypatch):
    monkeypatch.setattr("bot.data_commands.TELEGRAM_UPLOAD_LIMIT", 100)
    chat = api.private_chat(ann)
    api.send_text(chat, ann, "/export")
    (sent,) = await api.wait_for_sent(chat["id"])
    assert "over Telegram's 50 MB limit" in seen(sent)
    assert f"python -m core export --chat {ann['id']} --out FILE" in seen(sent)
    assert not [call for call, _ in api.calls if call == "sendDocument"]


# ----------------------------------------------------------------------------- /forget


def buttons(sent: dict) -> dict[str, str]:
    """Button text -> callback data of the inline keyboard under a message."""
    rows = sent["reply_markup"]["inline_keyboard"]
    return {button["text"]: button["callback_data"] for row in rows for button in row}


async def test_forget_deletes_nothing_before_the_press_and_only_the_askers_rows_after(
    api, bot, group, ann, bob
):
    before = bot.rows()
    api.send_text(group, ann, "/forget")
    (asked,) = await api.wait_for_sent(group["id"])
    assert seen(asked).startswith("Delete all your results in this chat?")
    yes = buttons(asked)["Yes, delete them"]
    assert bot.rows() == before

    api.press_button(bob, asked["message"], yes)  # someone else presses
    await api.wait_until(lambda: len(api.answered_callbacks) == 1, "Bob's press is answered")
    assert api.answered_callbacks[0]["text"] == "Only the person who asked can answer this."
    assert bot.rows() == before and api.edits == []

    api.press_button(ann, asked["message"], yes)
    await api.wait_until(lambda: api.edits, "the question is edited")
    assert api.edits[0]["text"] == "Done: deleted 3 results of yours in this chat."
    assert texts(bot, group["id"], ann["id"]) == []
    asker = (str(group["id"]), str(ann["id"]))
    kept = [row for row in before if (row["chat_id"], row["user_id"]) != asker]
    assert bot.rows() == kept
    assert texts(bot, ann["id"]) == ["ann alone"]  # her private chat is another chat

    api.send_text(group, ann, "/stats")
    api.send_text(group, ann, "/history")
    chart, history = await api.wait_for_sent(group["id"], 2)
    assert chart["caption"].startswith("1 result in the last 30 days")
    assert "lovely" not in seen(history) and "so so" in seen(history)


async def test_cancel_deletes_nothing(api, bot, ann):
    chat = api.private_chat(ann)
    before = bot.rows()
    api.send_text(chat, ann, "/forget")
    (asked,) = await api.wait_for_sent(chat["id"])
    api.press_button(ann, asked["message"], buttons(asked)["Cancel"])
    await api.wait_until(lambda: api.edits, "the question is edited")
    assert api.edits[0]["text"] == "Cancelled: nothing was deleted."
    assert bot.rows() == before


async def test_forget_drops_the_persons_waiting_caption_in_that_chat(api, bot, ann):
    chat = api.private_chat(ann)
    api.send_text(chat, ann, "a lake at dawn")  # a caption that waits for its text
    api.send_text(chat, ann, "/forget")
    waiting, asked = await api.wait_for_sent(chat["id"], 2)
    assert seen(waiting).startswith("📝 Caption: a lake at dawn")
    api.press_button(ann, asked["message"], buttons(asked)["Yes, delete them"])
    await api.wait_until(lambda: api.edits, "the question is edited")
    assert re.fullmatch(r"Done: deleted 1 result of yours in this chat\.", api.edits[0]["text"])

    api.send_text(chat, ann, "peaceful")  # starts a new caption: the old one is gone
    (answer,) = await api.wait_for_sent(chat["id"])
    assert seen(answer).startswith("📝 Caption: peaceful")
    assert texts(bot, ann["id"]) == []


async def test_help_covers_the_new_commands(api, bot, ann):
    chat = api.private_chat(ann)
    api.send_text(chat, ann, "/help")
    (sent,) = await api.wait_for_sent(chat["id"])
    for command in ("/stats", "/export", "/forget", "/history"):
        assert command in seen(sent)
