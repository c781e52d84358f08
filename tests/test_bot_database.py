"""The bot with DATABASE_URL, end to end: records and waiting captions in PostgreSQL.

A real `Application` polls our Bot API server on 127.0.0.1 with the tiny models, and
keeps its records and waiting captions in a real PostgreSQL server that the tests start;
one test stops that server while the bot runs, and starts it again.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest

from bot import replies
from core.database import Database
from tests.bot_harness import bot_settings, running_bot
from tests.pictures import picture
from tests.postgres_server import PostgresServer, _free_port, once_it_answers
from tests.test_bot import seen
from tests.test_bot_main import bot_env


@pytest.fixture
def settings(api, tiny_models, tmp_path, database_url):
    return bot_settings(api, tiny_models, tmp_path / "records.csv", DATABASE_URL=database_url)


async def test_captions_wait_and_history_reads_in_the_database_across_a_restart(
    api, settings, tmp_path
):
    ann = api.user(1)
    chat = api.private_chat(ann)
    with Database.connect(settings.database_url) as database:
        async with running_bot(api, settings, database=database):
            api.send_photo(chat, ann, picture())
            (asked,) = await api.wait_for_sent(chat["id"])
    assert seen(asked).startswith("🖼 I see: ")
    with Database.connect(settings.database_url) as database:
        async with running_bot(api, settings, database=database) as restarted:
            api.send_text(chat, ann, "still here")
            (result,) = await api.wait_for_sent(chat["id"])
            api.send_text(chat, ann, "/history")
            (history,) = await api.wait_for_sent(chat["id"])
            stored = await asyncio.to_thread(restarted.store.recent, chat["id"], 5)
    assert "💬 still here" in seen(result)
    assert "💬 still here" in seen(history)
    assert [(r.user_text, r.caption_source) for r in stored] == [("still here", "image")]
    assert not (tmp_path / "records.csv").exists() and not (tmp_path / "pending.json").exists()


@pytest.mark.timeout(180)
async def test_a_database_that_goes_down_gets_try_again_replies_and_loses_nothing(
    api, tiny_models, tmp_path, caplog
):
    with PostgresServer() as server:
        url = server.create_database()
        settings = bot_settings(api, tiny_models, tmp_path / "records.csv", DATABASE_URL=url)
        ann, bob = api.user(1, "Ann"), api.user(2, "Bob")
        ann_chat, bob_chat = api.private_chat(ann), api.private_chat(bob)
        with Database.connect(url, wait_seconds=1, reconnect_seconds=2) as database:
            async with running_bot(api, settings, database=database) as bot:
                api.send_text(ann_chat, ann, "a boat at dusk")
                await api.wait_for_sent(ann_chat["id"])
                await waiting_in_database(bot, ann_chat["id"], ann["id"])

                await asyncio.to_thread(server.stop)
                with caplog.at_level(logging.ERROR):
                    api.send_text(ann_chat, ann, "calm")
                    (try_again,) = await api.wait_for_sent(ann_chat["id"], timeout=30)
                    api.send_text(ann_chat, ann, "/history")
                    (no_history,) = await api.wait_for_sent(ann_chat["id"], timeout=30)
                    api.send_photo(bob_chat, bob, picture(), caption="stormy")
                    (unsaved,) = await api.wait_for_sent(bob_chat["id"], timeout=60)
                await asyncio.to_thread(server.start)
                await asyncio.to_thread(once_it_answers, lambda: bot.store.recent(1))

                api.send_text(ann_chat, ann, "calm")
                (result,) = await api.wait_for_sent(ann_chat["id"], timeout=30)
                assert bot.application.running
                stored = await asyncio.to_thread(lambda: list(bot.store.records()))

    assert seen(try_again) == replies.TRY_AGAIN
    assert seen(no_history) == replies.HISTORY_UNAVAILABLE
    assert "💬 stormy" in seen(unsaved) and seen(unsaved).endswith(replies.NOT_SAVED)
    assert "a boat at dusk" in seen(result) and "💬 calm" in seen(result)
    assert [(r.user_id, r.user_text) for r in stored] == [(1, "calm")]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("Waiting captions unavailable" in e and "is unavailable" in e for e in errors)
    assert any("History unavailable" in e for e in errors)
    assert any("RECORD NOT SAVED" in e for e in errors)
    assert not any("caused an error" in e for e in errors)  # no unexpected exception


async def waiting_in_database(bot, chat_id: int, user_id: int) -> None:
    """The prompt goes out just before the caption is saved: wait for the save."""
    pending = bot.application.bot_data["deps"].pending
    for _ in range(100):
        if await asyncio.to_thread(pending.peek, chat_id, user_id):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the caption was never saved")


async def test_the_bot_refuses_to_start_with_one_line_when_the_database_is_down(tmp_path):
    url = f"postgresql://bot:s3cret@127.0.0.1:{_free_port()}/moods"
    env = bot_env(tmp_path, TELEGRAM_BOT_TOKEN="1:x", DATABASE_URL=url)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    lines = err.decode().splitlines()
    assert process.returncode == 1
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: Cannot use the database of DATABASE_URL (postgresql://bot@")
    assert "s3cret" not in lines[0]
