"""`python -m bot` as a real process: start-up, command list, logs, and a clean stop."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from tests.child_env import child_env
from tests.fake_botapi import FakeBotApi


def bot_env(tmp_path: Path, **values: str) -> dict[str, str]:
    records = str(tmp_path / "r.csv")
    return child_env(drop=("TELEGRAM_", "CAPTION_"), RECORDS_PATH=records, **values)


async def start_bot(api: FakeBotApi, tmp_path: Path, tiny_models, **values: str):
    """`python -m bot` with the tiny models, against `api`; its log comes on stdout."""
    env = bot_env(
        tmp_path,
        TELEGRAM_BOT_TOKEN=api.token,
        TELEGRAM_API_BASE_URL=api.root_url,
        CAPTION_MODEL=str(tiny_models.caption),
        SENTIMENT_MODEL=str(tiny_models.sentiment),
        **values,
    )
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def stop_bot(process: asyncio.subprocess.Process) -> str:
    """SIGTERM (or a kill if it is already failing), then the whole log."""
    try:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 10)
    finally:
        if process.returncode is None:
            process.kill()
    return (await process.stdout.read()).decode()


async def test_without_a_token_it_exits_at_once_saying_where_to_get_one(tmp_path):
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=bot_env(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "TELEGRAM_BOT_TOKEN is not set" in lines[0]
    assert "@BotFather" in lines[0] and ".env" in lines[0]


async def test_a_bad_setting_stops_it_with_one_line(tmp_path):
    env = bot_env(tmp_path, TELEGRAM_BOT_TOKEN="1:x", TELEGRAM_API_BASE_URL="ftp://x")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    expected = "error: TELEGRAM_API_BASE_URL='ftp://x' is not accepted: use an http(s) URL.\n"
    assert err.decode() == expected


@pytest.mark.timeout(180)
async def test_it_loads_models_registers_commands_answers_and_stops_on_sigterm(
    tmp_path, tiny_models
):
    async with FakeBotApi() as api:
        process = await start_bot(api, tmp_path, tiny_models, LOG_LEVEL="DEBUG")
        try:
            await api.wait_for_call("setMyCommands", timeout=120)
            commands = api.my_commands()
            assert {c["command"] for c in commands} == {
                "help", "analyze", "history", "stats", "export", "forget", "cancel",
            }  # fmt: skip
            assert all(c["description"] and "\n" not in c["description"] for c in commands)
            ann = api.user(1)
            chat = api.private_chat(ann)
            api.send_text(chat, ann, "a lake at dawn")
            api.send_text(chat, ann, "peaceful")
            await api.wait_for_sent(chat["id"], 2, timeout=60)
        finally:
            log = await stop_bot(process)
    assert process.returncode == 0, log
    assert "Caption model" in log and "Sentiment model" in log and " loaded in " in log
    assert log.index("Sentiment model") < log.index("Models warmed up in")
    assert log.index("Models warmed up in") < log.index("Application started")
    assert api.token not in log and api.token.split(":")[1] not in log
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith("a lake at dawn,peaceful,")


@pytest.mark.timeout(180)
async def test_an_unreachable_telegram_is_retried_and_a_polling_hiccup_is_one_line(
    tmp_path, tiny_models
):
    async with FakeBotApi() as api:
        api.fail_next("getMe", status=502, times=2)  # Telegram down at start
        api.fail_next("getUpdates", status=502)  # then one hiccup while polling
        process = await start_bot(api, tmp_path, tiny_models)
        try:
            ann = api.user(1)
            chat = api.private_chat(ann)
            api.send_text(chat, ann, "/help")
            await api.wait_for_sent(chat["id"], timeout=120)
        finally:
            log = await stop_bot(process)
    assert process.returncode == 0, log
    assert "Traceback" not in log
    retries = [line for line in log.splitlines() if "Telegram cannot be reached" in line]
    assert len(retries) == 2 and "trying again, waiting up to 30 s between tries" in retries[0]
    hiccups = [line for line in log.splitlines() if "Polling Telegram failed" in line]
    assert len(hiccups) == 1 and "Bad Gateway" in hiccups[0]
