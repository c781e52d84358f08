"""Whatever people send, they get a clear answer, nothing bad is recorded, the bot goes on."""

from __future__ import annotations

import itertools
import time

import pytest
from telegram import Update

from bot import replies
from tests.bot_harness import bot_settings, running_bot
from tests.pictures import animated_gif, png_bomb
from tests.test_bot import seen

_ids = itertools.count(900_000)


@pytest.fixture
async def bot(api, tiny_models, tmp_path):
    settings = bot_settings(api, tiny_models, tmp_path / "r.csv")
    async with running_bot(api, settings, allowed_updates=Update.ALL_TYPES) as running:
        yield running


def raw_message(chat: dict, user: dict, **content) -> dict:
    return {
        "message_id": next(_ids),
        "date": int(time.time()),
        "chat": chat,
        "from": user,
        **content,
    }


@pytest.mark.parametrize(
    ("data", "name", "answer"),
    [
        (b"", "empty.jpg", "The file is empty."),
        (png_bomb(30_000, 30_000), "bomb.png", "The image is too large"),
        (b"PK\x03\x04 zip archive", "photos.zip", "That file is not an image I can read."),
    ],
)
async def test_bad_image_files_are_refused_clearly(api, bot, ann, data, name, answer):
    chat = api.private_chat(ann)
    api.send_document(chat, ann, data, name, "image/png")
    (refusal,) = await api.wait_for_sent(chat["id"])
    assert seen(refusal).startswith(answer)
    assert bot.rows() == []


async def test_an_animated_gif_file_is_read_from_its_first_frame(api, bot, ann):
    chat = api.private_chat(ann)
    gif = animated_gif([(255, 0, 0), (0, 0, 255)], size=(48, 48))
    api.send_document(chat, ann, gif, "party.gif", "image/gif", caption="fun")
    (result,) = await api.wait_for_sent(chat["id"])
    assert "💬 fun" in seen(result)
    assert [row["caption_source"] for row in bot.rows()] == ["image"]


@pytest.mark.parametrize(
    "content",
    [
        {"voice": {"file_id": "v1", "file_unique_id": "uv1", "duration": 3}},
        {
            "video": {
                "file_id": "v2",
                "file_unique_id": "uv2",
                "width": 9,
                "height": 9,
                "duration": 1,
            }
        },
        {"location": {"latitude": 52.5, "longitude": 13.4}},
        {"contact": {"phone_number": "+100", "first_name": "Zed"}},
        {
            "poll": {
                "id": "p1",
                "question": "tea?",
                "options": [
                    {"persistent_id": "1", "text": "yes", "voter_count": 0},
                    {"persistent_id": "2", "text": "no", "voter_count": 0},
                ],
                "total_voter_count": 0,
                "is_closed": False,
                "is_anonymous": True,
                "type": "regular",
                "allows_multiple_answers": False,
                "allows_revoting": False,
                "members_only": False,
            }
        },
        {
            "sticker": {
                "file_id": "s1",
                "file_unique_id": "us1",
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": True,
                "is_video": False,
            }
        },
        {
            "text": "/unknown_command",
            "entities": [{"type": "bot_command", "offset": 0, "length": 16}],
        },
    ],
    ids=["voice", "video", "location", "contact", "poll", "animated-sticker", "unknown-command"],
)
async def test_other_kinds_of_message_get_a_hint_in_private_and_silence_in_groups(
    api, bot, ann, content
):
    private, group = api.private_chat(ann), api.group_chat(7)
    api.send_raw_update({"message": raw_message(private, ann, **content)})
    (hint,) = await api.wait_for_sent(private["id"])
    assert seen(hint) == replies.NOT_UNDERSTOOD
    api.send_raw_update({"message": raw_message(group, ann, **content)})
    api.send_text(group, ann, "/help")
    (only_help,) = await api.wait_for_sent(group["id"])
    assert seen(only_help).startswith("I read the mood")


@pytest.mark.parametrize(
    "text",
    [
        "😀😀😀",
        "السماء صافية اليوم",  # right to left
        "שלום עולם",
        "tab\there\x07bell\x1bescape",
        "<b>not bold</b> *nor* _this_ `code` &amp; <script>",
        "x" * 4096,
    ],
    ids=["emoji", "arabic", "hebrew", "control", "markup", "4096-chars"],
)
async def test_any_text_is_answered_and_shown_literally(api, bot, ann, text):
    chat = api.private_chat(ann)
    api.send_text(chat, ann, text)
    (asked,) = await api.wait_for_sent(chat["id"])
    api.send_text(chat, ann, text)
    (result,) = await api.wait_for_sent(chat["id"])
    for shown in (seen(asked), seen(result)):
        assert len(shown) <= 4096
        assert (text in shown) if len(text) < 1000 else (text[:1000] in shown)
    (row,) = bot.rows()
    assert row["image_caption"] == row["user_text"] == text  # recorded exactly, never clipped


async def test_edits_and_channel_posts_are_ignored_without_crashing(api, bot, ann):
    chat = api.private_chat(ann)
    edited = raw_message(chat, ann, text="changed my mind", edit_date=int(time.time()))
    api.send_raw_update({"edited_message": edited})
    channel = {"id": -100777, "type": "channel", "title": "News"}
    api.send_raw_update(
        {"channel_post": raw_message(channel, ann, text="news item") | {"from": None}}
    )
    api.send_text(chat, ann, "/help")
    (answer,) = await api.wait_for_sent(chat["id"])
    assert seen(answer).startswith("I read the mood")
    assert [sent["chat_id"] for sent in api.sent] == [chat["id"]]
    assert bot.rows() == []


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


async def test_an_emoji_heavy_pair_gets_a_result_that_fits_telegrams_limit(api, bot, ann):
    """4,000 emoji are 8,000 UTF-16 units: Telegram's limit counts those, not characters."""
    chat = api.private_chat(ann)
    api.send_text(chat, ann, "😀" * 2000)
    (asked,) = await api.wait_for_sent(chat["id"])
    api.send_text(chat, ann, "🎉" * 2000)
    (result,) = await api.wait_for_sent(chat["id"])
    assert seen(result).splitlines()[2].startswith("💬 🎉🎉")  # a result, not an apology
    assert all(utf16_units(seen(sent)) <= 4096 for sent in (asked, result))
    assert "🎉" * 700 in seen(result) and seen(result).count("🎉") < 1000
    (row,) = bot.rows()
    assert row["user_text"] == "🎉" * 2000  # recorded whole


async def test_history_of_twenty_emoji_heavy_results_fits_one_message(api, bot, ann):
    chat = api.private_chat(ann)
    for number in range(20):
        api.send_text(chat, ann, "🌅" * 300)
        api.send_text(chat, ann, f"{'🎉' * 300} {number}")
    await api.wait_for_sent(chat["id"], 40, timeout=120)
    api.send_text(chat, ann, "/history 20")
    (listing,) = await api.wait_for_sent(chat["id"])
    assert seen(listing).startswith("🕘 Latest 20")
    assert utf16_units(seen(listing)) <= 4096


async def test_one_text_with_a_lone_surrogate_fails_no_one_in_its_batch(api, bot, ann, bob):
    """Three people's texts arrive together and are classified in one batch; one of them
    holds a lone surrogate (`"\\udcff"` in Telegram's JSON), which no tokenizer accepts."""
    people = [ann, bob, api.user(3, "Cy")]
    chats = [api.private_chat(person) for person in people]
    captions = ["a red door", "a \ud83d cat", "a dog"]
    for chat, person, caption in zip(chats, people, captions, strict=True):
        api.send_text(chat, person, caption)
    for chat in chats:
        await api.wait_for_sent(chat["id"])
    for chat, person, text in zip(chats, people, ["I love it", "\udcff", "so sad"], strict=True):
        api.send_text(chat, person, text)
    results = [(await api.wait_for_sent(chat["id"]))[0] for chat in chats]
    assert [seen(result).splitlines()[1] for result in results] == [
        "🖼 a red door", "🖼 a \ufffd cat", "🖼 a dog",
    ]  # fmt: skip
    assert sorted(row["user_text"] for row in bot.rows()) == ["I love it", "so sad", "\ufffd"]
