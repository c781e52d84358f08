"""Deploys and restarts: an answer in flight is finished, a waiting caption is kept."""

from __future__ import annotations

import asyncio

from core.pipeline import Pipeline
from tests.bot_harness import bot_settings, running_bot
from tests.fake_botapi import FakeBotApi
from tests.pictures import picture
from tests.test_bot import SlowPipeline, seen


async def test_stopping_during_an_analysis_finishes_it_reply_and_record_both(tiny_models, tmp_path):
    async with FakeBotApi() as api:
        settings = bot_settings(api, tiny_models, tmp_path / "r.csv")
        slow = SlowPipeline(Pipeline.from_settings(settings))
        async with running_bot(api, settings, slow) as bot:
            ann = api.user(1)
            chat = api.private_chat(ann)
            api.send_photo(chat, ann, picture(), caption="right before the deploy")
            assert await asyncio.to_thread(slow.started.wait, 10)
            # What run_polling does on SIGTERM: stop fetching, then wait for running handlers.
            stopping = asyncio.create_task(_stop(bot.application))
            await api.wait_until(lambda: not bot.application.updater.running, "polling stopped")
            slow.release.set()
            await asyncio.wait_for(stopping, 10)
            (result,) = await api.wait_for_sent(chat["id"])
    assert "💬 right before the deploy" in seen(result)
    assert [row["user_text"] for row in bot.rows()] == ["right before the deploy"]
    assert (tmp_path / "r.csv").read_text().endswith("\n")


async def _stop(application) -> None:
    await application.updater.stop()
    await application.stop()


async def test_a_waiting_caption_survives_a_restart(tiny_models, tmp_path):
    async with FakeBotApi() as api:
        settings = bot_settings(api, tiny_models, tmp_path / "r.csv")
        ann = api.user(1)
        chat = api.private_chat(ann)
        async with running_bot(api, settings):
            api.send_photo(chat, ann, picture())
            (asked,) = await api.wait_for_sent(chat["id"])
            api.send_text(chat, ann, "/help")
            await api.wait_for_sent(chat["id"])
        async with running_bot(api, settings) as restarted:
            api.send_text(chat, ann, "still here")
            (result,) = await api.wait_for_sent(chat["id"])
    caption = seen(asked).removeprefix("🖼 I see: ").split("\n")[0]
    assert f"🖼 {caption}" in seen(result) and "💬 still here" in seen(result)
    assert [row["caption_source"] for row in restarted.rows()] == ["image"]
