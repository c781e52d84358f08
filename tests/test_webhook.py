"""`python -m bot` in webhook mode, as a real process, with both models behind the api backend.

The bot registers its webhook with our Bot API server (`setWebhook`, with the secret token),
then python-telegram-bot's own webhook server listens on 127.0.0.1. Updates are posted to it
as Telegram would; only those with the right `X-Telegram-Bot-Api-Secret-Token` get in.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.child_env import child_env
from tests.fake_botapi import FakeBotApi
from tests.fake_inference import TOKEN, FakeInference

SECRET = "webhook-Secret_123"
HOOK_PATH = "/telegram/hook"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def start_webhook_bot(
    api: FakeBotApi, inference: FakeInference, tmp_path: Path, port: int
) -> asyncio.subprocess.Process:
    """`python -m bot` in webhook mode on 127.0.0.1:`port`, both models behind `inference`."""
    env = {
        **child_env(drop=("HF_", "TRANSFORMERS_", "TELEGRAM_", "CAPTION_", "WEBHOOK_")),
        "RECORDS_PATH": str(tmp_path / "records.csv"),
        "TELEGRAM_BOT_TOKEN": api.token,
        "TELEGRAM_API_BASE_URL": api.root_url,
        "CAPTION_BACKEND": "api",
        "CAPTION_ENDPOINT": inference.url("caption"),
        "SENTIMENT_BACKEND": "api",
        "SENTIMENT_ENDPOINT": inference.url("sentiment"),
        "HF_TOKEN": TOKEN,
        "WEBHOOK_URL": f"https://bot.example.org{HOOK_PATH}",
        "WEBHOOK_SECRET_TOKEN": SECRET,
        "WEBHOOK_LISTEN": "127.0.0.1",
        "WEBHOOK_PORT": str(port),
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE
    )


async def wait_until_listening(port: int, process: asyncio.subprocess.Process) -> None:
    """Bounded: the webhook server opens right after setWebhook succeeds."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise AssertionError(f"the bot exited with {process.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)  # poll interval of a bounded wait
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise AssertionError(f"nothing listened on port {port} within 30 s")


@pytest.mark.timeout(120)
async def test_the_webhook_takes_updates_only_with_the_secret_token(tmp_path):
    port = free_port()
    with FakeInference() as inference:
        async with FakeBotApi() as api:
            process = await start_webhook_bot(api, inference, tmp_path, port)
            try:
                registered = await api.wait_for_call("setWebhook", timeout=60)
                assert registered["url"] == f"https://bot.example.org{HOOK_PATH}"
                assert registered["secret_token"] == SECRET
                assert registered["allowed_updates"] == ["message", "callback_query"]
                await wait_until_listening(port, process)

                ann, bob = api.user(501, "Ann"), api.user(502, "Bob")
                intruder = api.send_text(api.private_chat(ann), ann, "/help")
                genuine = api.send_text(api.private_chat(bob), bob, "/help")
                hook = f"http://127.0.0.1:{port}{HOOK_PATH}"
                async with aiohttp.ClientSession() as http:
                    for headers in [{}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}]:
                        update = {"update_id": 1, "message": intruder}
                        async with http.post(hook, json=update, headers=headers) as response:
                            assert response.status == 403
                    update = {"update_id": 2, "message": genuine}
                    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
                    async with http.post(hook, json=update, headers=headers) as response:
                        assert response.status == 200

                (reply,) = await api.wait_for_sent(bob["id"], timeout=30)
                assert "/analyze" in reply["text"]  # the help text
                assert [sent for sent in api.sent if sent["chat_id"] == ann["id"]] == []
                assert not [name for name, _ in api.calls if name == "getUpdates"]
            finally:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                _, err = await asyncio.wait_for(process.communicate(), 30)
            assert process.returncode == 0, err.decode()
            assert SECRET not in err.decode()


@pytest.mark.timeout(120)
async def test_a_webhook_port_in_use_stops_the_bot_with_one_line_naming_it(tmp_path):
    with FakeInference() as inference, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with FakeBotApi() as api:
            process = await start_webhook_bot(api, inference, tmp_path, port)
            _, err = await asyncio.wait_for(process.communicate(), 90)
    log = err.decode()
    assert process.returncode == 1, log
    assert "Traceback" not in log
    assert log.splitlines()[-1] == (
        f"error: cannot listen on 127.0.0.1:{port} (Address already in use): set WEBHOOK_PORT "
        "to a free port, or WEBHOOK_LISTEN to an address of this machine."
    )
