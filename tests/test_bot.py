"""The bot end to end: a real Application over real HTTP to our Bot API server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import html
import re
import threading

import pytest

from core.pipeline import Pipeline
from tests.bot_harness import bot_settings, running_bot
from tests.pictures import picture

BOT = "mood_test_bot"  # FakeBotApi's default username


def seen(sent: dict) -> str:
    """What a person sees: an HTML reply without its tags, or a plain one as it is."""
    if sent["parse_mode"] is None:
        return sent["text"]
    assert sent["parse_mode"] == "HTML"
    return html.unescape(re.sub(r"<[^>]+>", "", sent["text"]))


@pytest.fixture
def settings(api, tiny_models, tmp_path):
    return bot_settings(api, tiny_models, tmp_path / "records.csv")


@pytest.fixture
async def bot(api, settings):
    async with running_bot(api, settings) as running:
        yield running


@pytest.fixture
def group(api):
    return api.group_chat(500, "Friends")


async def answered_after(api, chat, user, reply_count=1):
    """Wait until everything `user` sent before is handled: their updates run in order."""
    api.send_text(chat, user, "/help")
    replies = await api.wait_for_sent(chat["id"], reply_count)
    assert seen(replies[-1]).startswith("I read the mood")
    return replies[:-1]


# --------------------------------------------------------------------------- private chat


async def test_photo_then_text_gives_a_result_and_one_record(api, bot, ann):
    chat = api.private_chat(ann)
    api.send_photo(chat, ann, picture((400, 300), (250, 200, 0)))
    (asked,) = await api.wait_for_sent(chat["id"])
    caption = re.match(r"🖼 I see: (.+)\n", seen(asked)).group(1)
    assert "Now send the message that goes with it." in seen(asked)
    assert bot.rows() == []

    api.send_text(chat, ann, "I am so happy")
    (result,) = await api.wait_for_sent(chat["id"])
    text = seen(result)
    (row,) = bot.rows()
    assert row["image_caption"] == caption and row["user_text"] == "I am so happy"
    assert row["combined_input"] == f"{caption}. I am so happy"
    assert (row["chat_id"], row["user_id"], row["caption_source"]) == (str(ann["id"]),) * 2 + (
        "image",
    )
    assert row["timestamp"].endswith("+00:00")
    label, score = row["label"], float(row["score"])
    assert text.splitlines()[0].endswith(f"{label.capitalize()} · {score:.1%}")
    assert {"😊": "positive", "😐": "neutral", "😞": "negative"}[text[0]] == label
    assert f"🖼 {caption}" in text and "💬 I am so happy" in text
    assert "Picture alone: " in text and "Message alone: " in text


async def test_text_first_is_a_manual_caption_and_the_next_text_completes_it(api, bot, ann):
    chat = api.private_chat(ann)
    api.send_text(chat, ann, "a car crashed into a pole")
    (asked,) = await api.wait_for_sent(chat["id"])
    assert seen(asked).startswith("📝 Caption: a car crashed into a pole\nNow send")
    api.send_text(chat, ann, "I feel bad and i think life is hard")
    (result,) = await api.wait_for_sent(chat["id"])
    (row,) = bot.rows()
    assert row["combined_input"] == (
        "a car crashed into a pole. I feel bad and i think life is hard"
    )
    assert row["caption_source"] == "manual"
    assert "🖼 a car crashed into a pole" in seen(result)


async def test_photo_with_a_caption_is_a_complete_pair(api, bot, ann):
    chat = api.private_chat(ann)
    api.send_photo(chat, ann, picture(), caption="best day ever")
    (result,) = await api.wait_for_sent(chat["id"])
    (row,) = bot.rows()
    assert row["user_text"] == "best day ever" and row["caption_source"] == "image"
    assert "💬 best day ever" in seen(result)


async def test_an_image_sent_as_a_file_works_like_a_photo(api, bot, ann):
    chat = api.private_chat(ann)
    api.send_document(chat, ann, picture(fmt="PNG"), "sunset.png", "image/png")
    (asked,) = await api.wait_for_sent(chat["id"])
    assert seen(asked).startswith("🖼 I see: ")
    api.send_text(chat, ann, "calm")
    await api.wait_for_sent(chat["id"])
    assert [row["user_text"] for row in bot.rows()] == ["calm"]


async def test_the_typing_action_shows_while_models_work(api, bot, ann):
    chat = api.private_chat(ann)
    api.send_photo(chat, ann, picture())
    action = await api.wait_for_call("sendChatAction")
    assert (action["chat_id"], action["action"]) == (chat["id"], "typing")


async def test_the_smallest_photo_size_that_covers_the_model_input_is_downloaded(api, bot, ann):
    chat = api.private_chat(ann)
    # The tiny caption model sees 32 px: 40x30 is too small, 80x60 is enough.
    message = api.send_photo(chat, ann, picture((160, 120)), sizes=[(40, 30), (80, 60), (160, 120)])
    await api.wait_for_sent(chat["id"])
    assert api.downloaded_file_ids == [message["photo"][1]["file_id"]]


async def test_a_photo_smaller_than_the_model_input_uses_its_largest_size(api, bot, ann):
    chat = api.private_chat(ann)
    message = api.send_photo(chat, ann, picture((20, 10)), sizes=[(10, 5), (20, 10)])
    await api.wait_for_sent(chat["id"])
    assert api.downloaded_file_ids == [message["photo"][1]["file_id"]]


async def test_files_over_20_mb_are_refused_before_download(api, bot, ann):
    chat = api.private_chat(ann)
    api.send_document(chat, ann, picture(), "huge.jpg", "image/jpeg", file_size=25 * 1024 * 1024)
    (refusal,) = await api.wait_for_sent(chat["id"])
    assert "20 MB" in refusal["text"]
    assert api.downloads == [] and bot.rows() == []


@pytest.mark.parametrize(
    ("data", "name", "mime", "answer"),
    [
        (b"%PDF-1.7 a report", "report.pdf", "application/pdf", "That file is not a picture"),
        (b"MZ\x90\x00 program", "cat.jpg", "image/jpeg", "That file is not an image I can read"),
        (picture(fmt="JPEG")[:200], "cut.jpg", "image/jpeg", "damaged or incomplete"),
    ],
)
async def test_bad_files_get_a_clear_answer_and_nothing_is_recorded(
    api, bot, ann, data, name, mime, answer
):
    chat = api.private_chat(ann)
    api.send_document(chat, ann, data, name, mime)
    (refusal,) = await api.wait_for_sent(chat["id"])
    assert answer in refusal["text"]
    assert bot.rows() == []
    # The bot keeps working, and nothing was left waiting.
    api.send_text(chat, ann, "a quiet lake")
    (asked,) = await api.wait_for_sent(chat["id"])
    assert seen(asked).startswith("📝 Caption: a quiet lake")


async def test_cancel_drops_the_waiting_caption(api, bot, ann):
    chat = api.private_chat(ann)
    api.send_text(chat, ann, "/cancel")
    (nothing,) = await api.wait_for_sent(chat["id"])
    assert seen(nothing) == "Nothing to cancel."
    api.send_text(chat, ann, "a boat")
    await api.wait_for_sent(chat["id"])
    api.send_text(chat, ann, "/cancel")
    (done,) = await api.wait_for_sent(chat["id"])
    assert seen(done) == "Done, I forgot that caption."
    api.send_text(chat, ann, "stormy")
    (asked,) = await api.wait_for_sent(chat["id"])
    assert seen(asked).startswith("📝 Caption: stormy")  # a new caption, not a completion
    assert bot.rows() == []


async def test_an_expired_caption_is_reported_and_nothing_is_recorded(api, bot, ann, settings):
    chat = api.private_chat(ann)
    api.send_text(chat, ann, "a field of flowers")
    await answered_after(api, chat, ann, reply_count=2)  # the caption is stored by now
    bot.clock.now += settings.pending_ttl_seconds + 1
    api.send_text(chat, ann, "so happy")
    (expired,) = await api.wait_for_sent(chat["id"])
    assert seen(expired).startswith("Your caption expired (captions wait 15 min")
    assert bot.rows() == []


async def test_start_and_help_explain_private_and_group_use(api, bot, ann):
    chat = api.private_chat(ann)
    for command in ("/start", "/help"):
        api.send_text(chat, ann, command)
        (answer,) = await api.wait_for_sent(chat["id"])
        assert "In a private chat" in seen(answer) and "In a group" in seen(answer)
        assert "/analyze" in seen(answer) and "/history" in seen(answer)


# --------------------------------------------------------------------------- group chats


async def test_analyze_with_text_as_a_reply_to_a_photo(api, bot, ann, bob, group):
    photo = api.send_photo(group, bob, picture((64, 64), (0, 90, 200)))
    command = api.send_text(group, ann, "/analyze what a day", reply_to=photo)
    (result,) = await api.wait_for_sent(group["id"])
    assert result["reply_to_message_id"] == command["message_id"]
    (row,) = bot.rows()
    assert (row["chat_id"], row["user_id"]) == (str(group["id"]), str(ann["id"]))
    assert (row["user_text"], row["caption_source"]) == ("what a day", "image")


async def test_analyze_alone_asks_with_a_force_reply_and_the_reply_completes(
    api, bot, ann, bob, group
):
    photo = api.send_photo(group, bob, picture())
    command = api.send_text(group, ann, f"/analyze@{BOT}", reply_to=photo)
    (prompt,) = await api.wait_for_sent(group["id"])
    assert prompt["reply_to_message_id"] == command["message_id"]
    assert prompt["reply_markup"]["force_reply"] is True
    assert prompt["reply_markup"]["selective"] is True
    assert "Reply to this message with the text" in seen(prompt)
    api.send_text(group, ann, "loving it", reply_to=prompt["message"])
    (result,) = await api.wait_for_sent(group["id"])
    assert "💬 loving it" in seen(result)
    assert [row["user_text"] for row in bot.rows()] == ["loving it"]


async def test_analyze_as_a_reply_to_a_text_uses_it_as_the_caption(api, bot, ann, bob, group):
    words = api.send_text(group, bob, "a sunflower field at noon")
    api.send_text(group, ann, "/analyze so bright", reply_to=words)
    await api.wait_for_sent(group["id"])
    (row,) = bot.rows()
    assert row["combined_input"] == "a sunflower field at noon. so bright"
    assert row["caption_source"] == "manual"


async def test_a_photo_captioned_analyze_is_analysed_with_the_rest(api, bot, ann, group):
    api.send_photo(group, ann, picture(), caption=f"/analyze@{BOT} rainy again")
    await api.wait_for_sent(group["id"])
    api.send_photo(group, ann, picture(), caption="/analyze sunny now")
    await api.wait_for_sent(group["id"])
    assert [row["user_text"] for row in bot.rows()] == ["rainy again", "sunny now"]


async def test_group_messages_not_addressed_to_the_bot_are_ignored(api, bot, ann, group):
    api.send_photo(group, ann, picture(), caption="look at this")
    api.send_photo(group, ann, picture(), caption="/analyze@some_other_bot hi")
    api.send_text(group, ann, "just chatting")
    assert await answered_after(api, group, ann) == []
    assert bot.rows() == [] and api.downloads == []


async def test_analyze_without_a_reply_target_explains_itself(api, bot, ann, group):
    api.send_text(group, ann, "/analyze hello")
    (usage,) = await api.wait_for_sent(group["id"])
    assert seen(usage).startswith("Reply to a photo, or to a message that describes a picture")


async def test_two_members_mid_flow_in_one_group_never_mix(api, bot, ann, bob, group):
    photo = api.send_photo(group, ann, picture((50, 50), (255, 0, 0)))
    words = api.send_text(group, bob, "a dog asleep on the sofa")
    api.send_text(group, ann, "/analyze", reply_to=photo)
    (ann_prompt,) = await api.wait_for_sent(group["id"])
    api.send_text(group, bob, "/analyze", reply_to=words)
    (bob_prompt,) = await api.wait_for_sent(group["id"])
    ann_caption = re.match(r"🖼 I see: (.+)\n", seen(ann_prompt)).group(1)

    api.send_text(group, bob, "cute", reply_to=bob_prompt["message"])
    await api.wait_for_sent(group["id"])
    api.send_text(group, ann, "scary", reply_to=ann_prompt["message"])
    await api.wait_for_sent(group["id"])
    by_user = {row["user_id"]: row for row in bot.rows()}
    assert by_user[str(bob["id"])]["combined_input"] == "a dog asleep on the sofa. cute"
    assert by_user[str(ann["id"])]["combined_input"] == f"{ann_caption}. scary"


async def test_a_reply_from_someone_without_a_waiting_caption_is_ignored(api, bot, ann, bob, group):
    words = api.send_text(group, bob, "a cat on a roof")
    api.send_text(group, ann, "/analyze", reply_to=words)
    (prompt,) = await api.wait_for_sent(group["id"])
    api.send_text(group, bob, "not my prompt", reply_to=prompt["message"])
    assert await answered_after(api, group, bob) == []
    api.send_text(group, ann, "mine", reply_to=prompt["message"])
    await api.wait_for_sent(group["id"])
    assert [row["combined_input"] for row in bot.rows()] == ["a cat on a roof. mine"]


# --------------------------------------------------------------------------- /history


async def test_history_shows_only_this_chats_records_newest_first(api, bot, ann, group):
    private = api.private_chat(ann)
    api.send_text(private, ann, "/history")
    (empty,) = await api.wait_for_sent(private["id"])
    assert seen(empty) == "No results in this chat yet."

    for caption, text in [("a calm lake", "first"), ("a busy road", "second")]:
        api.send_text(private, ann, caption)
        api.send_text(private, ann, text)
    words = api.send_text(group, ann, "a group photo")
    api.send_text(group, ann, "/analyze group secret", reply_to=words)
    await api.wait_for_sent(private["id"], 4)
    await api.wait_for_sent(group["id"])

    api.send_text(private, ann, "/history")
    (listing,) = await api.wait_for_sent(private["id"])
    text = seen(listing)
    assert text.startswith("🕘 Latest 2 in this chat, newest first:")
    assert text.index("💬 second") < text.index("💬 first")
    assert "group secret" not in text and "a group photo" not in text

    api.send_text(group, ann, "/history")
    (group_listing,) = await api.wait_for_sent(group["id"])
    assert "group secret" in seen(group_listing)
    assert "💬 first" not in seen(group_listing) and "💬 second" not in seen(group_listing)


async def test_history_takes_a_count_up_to_20(api, bot, ann):
    chat = api.private_chat(ann)
    for number in range(3):
        api.send_text(chat, ann, f"caption {number}")
        api.send_text(chat, ann, f"text {number}")
    await api.wait_for_sent(chat["id"], 6)
    api.send_text(chat, ann, "/history 2")
    (listing,) = await api.wait_for_sent(chat["id"])
    assert seen(listing).startswith("🕘 Latest 2")
    assert "text 2" in seen(listing) and "text 0" not in seen(listing)
    for bad in ("/history 21", "/history 0", "/history lots", "/history 1 2"):
        api.send_text(chat, ann, bad)
        (usage,) = await api.wait_for_sent(chat["id"])
        assert seen(usage) == "Use /history or /history N, with N from 1 to 20."


async def test_markup_in_user_text_is_shown_literally(api, bot, ann):
    chat = api.private_chat(ann)
    caption = "<b>bold</b> *star* _under_ `tick` & <i>"
    api.send_text(chat, ann, caption)
    (asked,) = await api.wait_for_sent(chat["id"])
    assert caption in seen(asked)
    api.send_text(chat, ann, "</i> <a href='x'>link</a>")
    (result,) = await api.wait_for_sent(chat["id"])
    assert caption in seen(result) and "</i> <a href='x'>link</a>" in seen(result)
    api.send_text(chat, ann, "/history")
    (listing,) = await api.wait_for_sent(chat["id"])
    assert caption in seen(listing)


# --------------------------------------------------------------------------- responsiveness


class SlowPipeline(Pipeline):
    """Captioning waits until the test lets it go: "slow" without a sleep."""

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__(pipeline.captioner, pipeline.classifier)
        self.started = threading.Event()
        self.release = threading.Event()

    def caption(self, images):
        self._wait()
        return super().caption(images)

    def caption_each(self, images):
        self._wait()
        return super().caption_each(images)

    def _wait(self) -> None:
        self.started.set()
        assert self.release.wait(timeout=30), "the test never released the caption"


async def test_other_chats_are_answered_while_a_photo_is_being_captioned(api, settings, ann, bob):
    slow = SlowPipeline(Pipeline.from_settings(settings))
    async with running_bot(api, settings, slow):
        ann_chat, bob_chat = api.private_chat(ann), api.private_chat(bob)
        api.send_photo(ann_chat, ann, picture())
        assert await asyncio.to_thread(slow.started.wait, 10)
        api.send_text(bob_chat, bob, "/help")
        (help_reply,) = await api.wait_for_sent(bob_chat["id"])
        assert "In a private chat" in seen(help_reply)
        api.send_text(bob_chat, bob, "/history")
        await api.wait_for_sent(bob_chat["id"])
        assert [sent["chat_id"] for sent in api.sent] == [bob_chat["id"]] * 2
        slow.release.set()
        (asked,) = await api.wait_for_sent(ann_chat["id"])
        assert seen(asked).startswith("🖼 I see: ")


async def test_a_text_sent_right_after_a_photo_completes_it(api, settings, ann):
    """One person's updates run in order, even while the photo is still being captioned."""
    slow = SlowPipeline(Pipeline.from_settings(settings))
    async with running_bot(api, settings, slow) as bot:
        chat = api.private_chat(ann)
        api.send_photo(chat, ann, picture())
        api.send_text(chat, ann, "so quick")
        assert await asyncio.to_thread(slow.started.wait, 10)
        slow.release.set()
        asked, result = await api.wait_for_sent(chat["id"], 2)
        assert seen(asked).startswith("🖼 I see: ") and "💬 so quick" in seen(result)
        assert [row["caption_source"] for row in bot.rows()] == ["image"]


async def test_help_is_answered_while_eight_photos_are_in_progress(api, settings, bob):
    slow = SlowPipeline(Pipeline.from_settings(settings))
    async with running_bot(api, settings, slow) as bot:
        people = [api.user(10 + n, f"P{n}") for n in range(8)]
        for person in people:
            api.send_photo(api.private_chat(person), person, picture())
        assert await asyncio.to_thread(slow.started.wait, 10)
        await api.wait_until(
            lambda: bot.application.bot_data["deps"].inference.jobs == 8, "8 photos in progress"
        )
        bob_chat = api.private_chat(bob)
        api.send_text(bob_chat, bob, "/help")
        (help_reply,) = await api.wait_for_sent(bob_chat["id"])
        assert "In a private chat" in seen(help_reply)
        assert [sent["chat_id"] for sent in api.sent] == [bob_chat["id"]]
        slow.release.set()
        for person in people:
            (asked,) = await api.wait_for_sent(person["id"])
            assert seen(asked).startswith("🖼 I see: ")
