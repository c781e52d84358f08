"""Floods, allow-lists and privacy: the bot stays fair, bounded and discreet."""

from __future__ import annotations

import pytest

from bot import replies
from core.pipeline import Pipeline
from tests.bot_harness import bot_settings, running_bot
from tests.fake_botapi import FakeBotApi
from tests.pictures import picture
from tests.test_bot import SlowPipeline, seen


@pytest.mark.timeout(300)
async def test_a_flood_of_200_photos_from_one_person_is_slowed_down(api, tiny_models, tmp_path):
    settings = bot_settings(api, tiny_models, tmp_path / "r.csv", RATE_LIMIT_PER_MINUTE="20")
    async with running_bot(api, settings):
        ann = api.user(1)
        chat = api.private_chat(ann)
        photo = picture((40, 40))
        for _ in range(200):
            api.send_photo(chat, ann, photo, sizes=[(40, 40)])
        answers = [seen(sent) for sent in await api.wait_for_sent(chat["id"], 200, timeout=240)]
    assert sum(answer.startswith("🖼 I see: ") for answer in answers) == 20
    assert sum(answer.startswith("Slow down a little: try again in ") for answer in answers) == 180
    assert len(api.downloads) == 20  # nothing is fetched for a refused photo


@pytest.mark.timeout(300)
async def test_a_flood_from_50_people_meets_a_bounded_queue(api, tiny_models, tmp_path):
    settings = bot_settings(api, tiny_models, tmp_path / "r.csv", MAX_QUEUED_JOBS="8")
    slow = SlowPipeline(Pipeline.from_settings(settings))
    async with running_bot(api, settings, slow) as bot:
        people = [api.user(100 + n, f"User{n}") for n in range(50)]
        chats = [api.private_chat(person) for person in people]
        for _ in range(4):
            for person, chat in zip(people, chats, strict=True):
                api.send_photo(chat, person, picture((40, 40)), sizes=[(40, 40)])
        # 8 first photos hold the queue (their senders' next photos wait their turn);
        # the 42 other people are told, four times each, that the bot is busy.
        await api.wait_until(lambda: _count(api, replies.BUSY) == 42 * 4, "168 busy answers", 120)
        assert bot.application.bot_data["deps"].inference.jobs == 8
        assert len(api.downloads) == 8
        slow.release.set()
        await api.wait_until(lambda: _count(api, "🖼 I see: ") == 8 * 4, "32 captions", 120)
    assert _count(api, replies.BUSY) == 168 and len(api.sent) == 200
    assert len(api.downloads) == 32


def _count(api: FakeBotApi, prefix: str) -> int:
    return sum(seen(sent).startswith(prefix) for sent in api.sent)


async def test_chats_outside_the_allow_list_get_one_refusal_and_nothing_else(
    api, tiny_models, tmp_path
):
    ann, eve = api.user(1, "Ann"), api.user(66, "Eve")
    settings = bot_settings(api, tiny_models, tmp_path / "r.csv", ALLOWED_CHAT_IDS="1")
    async with running_bot(api, settings) as bot:
        eve_chat = api.private_chat(eve)
        api.send_photo(eve_chat, eve, picture(), caption="hello")
        api.send_text(eve_chat, eve, "a caption")
        api.send_text(eve_chat, eve, "/history")
        ann_chat = api.private_chat(ann)
        api.send_text(ann_chat, ann, "a lake")
        api.send_text(ann_chat, ann, "calm")
        await api.wait_for_sent(ann_chat["id"], 2)
        await api.wait_until_consumed()
        (refusal,) = await api.wait_for_sent(eve_chat["id"])
        api.send_text(ann_chat, ann, "/help")
        await api.wait_for_sent(ann_chat["id"])
    assert seen(refusal) == replies.NOT_ALLOWED
    assert [sent["chat_id"] for sent in api.sent].count(eve_chat["id"]) == 1
    assert api.downloads == []
    assert [row["chat_id"] for row in bot.rows()] == ["1"]


async def test_history_never_crosses_chats_for_a_person_in_two_groups(api, tiny_models, tmp_path):
    ann, bob = api.user(1, "Ann"), api.user(2, "Bob")
    one, two = api.group_chat(11, "One"), api.group_chat(22, "Two")
    private = api.private_chat(ann)
    settings = bot_settings(api, tiny_models, tmp_path / "r.csv")
    async with running_bot(api, settings):
        for chat, secret in [(one, "alpha"), (two, "bravo"), (private, "charlie")]:
            words = api.send_text(chat, bob if chat is not private else ann, f"{secret} caption")
            api.send_text(chat, ann, f"/analyze {secret} text", reply_to=words)
            await api.wait_for_sent(chat["id"])
        listings = {}
        for chat in (one, two, private):
            api.send_text(chat, ann, "/history 20")
            (listing,) = await api.wait_for_sent(chat["id"])
            listings[chat["id"]] = seen(listing)
    for chat, own in [(one, "alpha"), (two, "bravo"), (private, "charlie")]:
        others = {"alpha", "bravo", "charlie"} - {own}
        assert own in listings[chat["id"]]
        assert not any(other in listings[chat["id"]] for other in others)


class Exploding(Pipeline):
    def __init__(self, pipeline: Pipeline, secret: str) -> None:
        super().__init__(pipeline.captioner, pipeline.classifier)
        self.secret = secret

    def classify(self, *args, **kwargs):
        raise RuntimeError(f"boom with {self.secret} in /srv/app/core/pipeline.py")

    classify_many = classify


async def test_unexpected_errors_show_no_details_token_or_path(api, tiny_models, tmp_path, caplog):
    settings = bot_settings(api, tiny_models, tmp_path / "r.csv")
    exploding = Exploding(Pipeline.from_settings(settings), api.token)
    async with running_bot(api, settings, exploding) as bot:
        ann = api.user(1)
        chat = api.private_chat(ann)
        api.send_text(chat, ann, "a lake")
        api.send_text(chat, ann, "calm")
        _, answer = await api.wait_for_sent(chat["id"], 2)
        api.send_text(chat, ann, "/help")
        await api.wait_for_sent(chat["id"])  # still working
    assert answer["text"] == replies.SOMETHING_WENT_WRONG
    assert bot.rows() == []
    assert "boom with" in caplog.text  # logged for us, with its stack trace
