"""Telegram misbehaves: the bot keeps polling, waits out flood limits, never records twice."""

from __future__ import annotations

import pytest

from bot import replies
from tests.bot_harness import bot_settings, running_bot
from tests.pictures import picture
from tests.test_bot import seen


@pytest.fixture
async def bot(api, tiny_models, tmp_path):
    async with running_bot(api, bot_settings(api, tiny_models, tmp_path / "r.csv")) as running:
        yield running


async def test_polling_survives_server_errors_on_get_updates(api, bot, ann):
    api.fail_next("getUpdates", status=502, times=3)
    chat = api.private_chat(ann)
    api.send_text(chat, ann, "/help")
    (answer,) = await api.wait_for_sent(chat["id"], timeout=30)
    assert seen(answer).startswith("I read the mood")
    assert [error[:2] for error in api.errors[:3]] == [("getUpdates", 502)] * 3


@pytest.mark.timeout(60)
async def test_polling_survives_a_get_updates_that_times_out(api, bot, ann):
    api.fail_next("getUpdates", status=200, delay=20)  # longer than the client waits
    chat = api.private_chat(ann)
    api.send_text(chat, ann, "/help")
    (answer,) = await api.wait_for_sent(chat["id"], timeout=45)
    assert seen(answer).startswith("I read the mood")


async def test_a_flood_limit_on_the_answer_is_waited_out_and_recorded_once(api, bot, ann):
    chat = api.private_chat(ann)
    api.send_text(chat, ann, "a calm sea")
    await api.wait_for_sent(chat["id"])
    api.fail_next("sendMessage", retry_after=1)
    api.send_text(chat, ann, "peaceful")
    (result,) = await api.wait_for_sent(chat["id"], timeout=15)
    assert "💬 peaceful" in seen(result)
    assert [error[:2] for error in api.errors] == [("sendMessage", 429)]
    assert [row["user_text"] for row in bot.rows()] == ["peaceful"]


async def test_an_answer_that_keeps_failing_is_given_up_and_recorded_once(api, bot, ann):
    chat = api.private_chat(ann)
    api.send_text(chat, ann, "a calm sea")
    await api.wait_for_sent(chat["id"])
    api.fail_next("sendMessage", retry_after=1, times=4)  # the first try and 3 retries
    api.send_text(chat, ann, "peaceful")
    (apology,) = await api.wait_for_sent(chat["id"], timeout=30)
    assert seen(apology) == replies.SOMETHING_WENT_WRONG
    assert [error[:2] for error in api.errors] == [("sendMessage", 429)] * 4
    assert [row["user_text"] for row in bot.rows()] == ["peaceful"]


async def test_a_long_flood_wait_for_one_chat_does_not_freeze_the_others(api, bot, ann):
    bob = api.user(2, "Bob")
    ann_chat, bob_chat = api.private_chat(ann), api.private_chat(bob)
    api.fail_next("sendMessage", retry_after=3600)
    api.send_text(ann_chat, ann, "/help")
    await api.wait_until(lambda: len(api.errors) == 1, "ann's answer hit the flood limit")
    api.send_text(bob_chat, bob, "/help")
    (answer,) = await api.wait_for_sent(bob_chat["id"], timeout=10)
    assert seen(answer).startswith("I read the mood")


@pytest.mark.parametrize("method", ["getFile", "download"])
async def test_a_failed_download_gets_a_clear_answer_and_no_record(api, bot, ann, method):
    chat = api.private_chat(ann)
    api.fail_next(method, status=500)
    api.send_photo(chat, ann, picture(), caption="hello")
    (answer,) = await api.wait_for_sent(chat["id"])
    assert seen(answer) == replies.DOWNLOAD_FAILED
    assert bot.rows() == []
    api.send_photo(chat, ann, picture(), caption="again")
    await api.wait_for_sent(chat["id"])
    assert [row["user_text"] for row in bot.rows()] == ["again"]


async def test_a_failed_command_list_registration_is_logged_not_fatal(
    api, tiny_models, tmp_path, ann, caplog
):
    api.fail_next("setMyCommands", status=500)
    async with running_bot(api, bot_settings(api, tiny_models, tmp_path / "r.csv")):
        chat = api.private_chat(ann)
        api.send_text(chat, ann, "/help")
        (answer,) = await api.wait_for_sent(chat["id"])
    assert seen(answer).startswith("I read the mood")
    assert "Could not register the command list" in caplog.text
