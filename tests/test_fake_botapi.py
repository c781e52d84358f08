"""The fake Bot API server, proven against a real, unmodified python-telegram-bot Application.

Each test starts the server on 127.0.0.1, points PTB at it the way the bot derives its URLs
from TELEGRAM_API_BASE_URL, and talks to it over real HTTP. A few tests use plain aiohttp
requests to check the wire format itself (encodings, offsets, error bodies).
"""

import asyncio
import datetime as dtm
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from PIL import Image
from telegram import Bot, MessageEntity, ReplyParameters, Update
from telegram.error import BadRequest, EndPointNotFound, InvalidToken, RetryAfter, TimedOut
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.fake_botapi import FakeBotApi


def build_app(api: FakeBotApi, token: str | None = None) -> Application:
    """An Application configured exactly as the bot does from TELEGRAM_API_BASE_URL."""
    root = api.root_url
    return (
        ApplicationBuilder()
        .token(token or api.token)
        .base_url(f"{root}/bot")
        .base_file_url(f"{root}/file/bot")
        .build()
    )


def build_bot(api: FakeBotApi, token: str | None = None) -> Bot:
    root = api.root_url
    return Bot(token or api.token, base_url=f"{root}/bot", base_file_url=f"{root}/file/bot")


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Say back what the user wrote."""
    await update.message.reply_text(update.message.text)


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Greet the user and repeat the command's arguments."""
    await update.message.reply_text(f"hello {update.effective_user.first_name} {context.args}")


async def photo_size(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Download the largest size of a photo and tell its dimensions."""
    file = await update.message.photo[-1].get_file()
    data = await file.download_as_bytearray()
    with Image.open(io.BytesIO(data)) as image:
        await update.message.reply_text(f"{image.width}x{image.height} {update.message.caption}")


@asynccontextmanager
async def polling(app: Application, timeout: int = 1) -> AsyncIterator[Application]:
    """Run `app` with long polling, as `run_polling` would, and stop it properly."""
    app.add_handler(CommandHandler("start", start))
    app.add_handler(
        MessageHandler(filters.PHOTO & filters.CaptionEntity(MessageEntity.BOT_COMMAND), photo_size)
    )
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, echo))
    async with app:
        await app.start()
        await app.updater.start_polling(poll_interval=0, timeout=timeout)
        try:
            yield app
        finally:
            await app.updater.stop()
            await app.stop()


def jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(buffer, "JPEG")
    return buffer.getvalue()


async def raw_call(
    api: FakeBotApi, method: str, *, token: str | None = None, http: str = "POST", **kwargs
) -> tuple[int, dict]:
    """One Bot API call with plain aiohttp; kwargs go to `session.request` (json=, data=...)."""
    url = f"{api.root_url}/bot{token or api.token}/{method}"
    async with aiohttp.ClientSession() as session, session.request(http, url, **kwargs) as resp:
        return resp.status, await resp.json()


async def test_application_echoes_text_and_answers_a_command(api: FakeBotApi) -> None:
    ann = api.user(1, "Ann")
    chat = api.private_chat(ann)
    async with polling(build_app(api)):
        api.send_text(chat, ann, "how are you?")
        [reply] = await api.wait_for_sent(chat["id"])
        assert reply["text"] == "how are you?"
        assert reply["message"]["from"]["username"] == "mood_test_bot"

        command = api.send_text(chat, ann, "/start now please")
        assert command["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
        [reply] = await api.wait_for_sent(chat["id"])
        assert reply["text"] == "hello Ann ['now', 'please']"
        await api.wait_until_consumed()

    methods = [name for name, _ in api.calls]
    assert methods[:2] == ["getMe", "deleteWebhook"]
    # On stop PTB calls getUpdates once more with an offset that confirms every fetched update.
    assert methods[-1] == "getUpdates"
    assert await raw_call(api, "getUpdates", json={"timeout": 0}) == (
        200,
        {"ok": True, "result": []},
    )


async def test_group_command_with_bot_username_is_answered_as_a_reply(api: FakeBotApi) -> None:
    bob = api.user(2, "Bob")
    group = api.group_chat(42, "Friends")
    assert group["id"] == -42
    async with polling(build_app(api)):
        command = api.send_text(group, bob, "/start@mood_test_bot")
        [reply] = await api.wait_for_sent(group["id"])

    assert reply["text"] == "hello Bob []"
    # PTB quotes by default in groups; the fake resolves reply_parameters to the full message.
    assert reply["reply_to_message_id"] == command["message_id"]
    assert reply["message"]["reply_to_message"]["text"] == "/start@mood_test_bot"


async def test_long_poll_answers_as_soon_as_an_update_arrives(api: FakeBotApi) -> None:
    ann = api.user(1)
    chat = api.private_chat(ann)
    loop = asyncio.get_running_loop()
    async with polling(build_app(api), timeout=30):
        poll = await api.wait_for_call("getUpdates")
        assert poll["timeout"] == 30
        sent_at = loop.time()
        api.send_text(chat, ann, "quick")
        await api.wait_for_sent(chat["id"], timeout=5)
        assert loop.time() - sent_at < 5
        stopping_at = loop.time()
    # Stopping cancels the pending 30 s long poll instead of waiting it out.
    assert loop.time() - stopping_at < 5


async def test_photo_sizes_are_real_downloadable_files(api: FakeBotApi) -> None:
    ann = api.user(1)
    chat = api.private_chat(ann)
    message = api.send_photo(chat, ann, jpeg(1000, 600), caption="/mood look")

    sizes = [(size["width"], size["height"]) for size in message["photo"]]
    assert sizes == [(90, 54), (320, 192), (800, 480), (1000, 600)]
    assert message["caption_entities"] == [{"type": "bot_command", "offset": 0, "length": 5}]

    bot = build_bot(api)
    async with bot:
        smallest = message["photo"][0]
        data = await (await bot.get_file(smallest["file_id"])).download_as_bytearray()
    assert bytes(data) == api.file_bytes(smallest["file_id"])
    assert len(data) == smallest["file_size"]
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (90, 54)
    assert api.downloaded_file_ids == [smallest["file_id"]]
    assert api.downloads == ["photos/file_1.jpg"]


async def test_application_downloads_a_photo_through_the_file_url(api: FakeBotApi) -> None:
    ann = api.user(1)
    chat = api.private_chat(ann)
    async with polling(build_app(api)):
        message = api.send_photo(chat, ann, jpeg(64, 48), caption="/mood hi", sizes=[(32, 24)])
        [reply] = await api.wait_for_sent(chat["id"])
    assert reply["text"] == "32x24 /mood hi"
    assert api.downloaded_file_ids == [message["photo"][-1]["file_id"]]


async def test_small_photo_is_not_upscaled_and_chosen_sizes_are_kept(api: FakeBotApi) -> None:
    ann = api.user(1)
    chat = api.private_chat(ann)
    small = api.send_photo(chat, ann, jpeg(200, 100))
    assert [(s["width"], s["height"]) for s in small["photo"]] == [(90, 45), (200, 100)]
    chosen = api.send_photo(chat, ann, jpeg(200, 100), sizes=[(20, 10), (40, 20)])
    assert [(s["width"], s["height"]) for s in chosen["photo"]] == [(20, 10), (40, 20)]


async def test_get_file_refuses_files_over_20_mb(api: FakeBotApi) -> None:
    ann = api.user(1)
    chat = api.private_chat(ann)
    message = api.send_document(
        chat, ann, b"%PDF-", "big.pdf", "application/pdf", file_size=30 * 1024 * 1024
    )
    assert message["document"]["file_size"] == 30 * 1024 * 1024
    async with build_bot(api) as bot:
        with pytest.raises(BadRequest, match="File is too big"):
            await bot.get_file(message["document"]["file_id"])
        with pytest.raises(BadRequest, match="Invalid file_id"):
            await bot.get_file("no-such-file")


async def test_wrong_token_is_rejected_on_every_route(api: FakeBotApi) -> None:
    app = build_app(api, token="123456:WRONG")
    with pytest.raises(InvalidToken):
        async with app:
            pass
    # PTB's Application.shutdown() does nothing after a failed initialize(), which leaves the
    # bot's HTTP connection open (a ResourceWarning); close it ourselves.
    await app.bot.shutdown()

    status, body = await raw_call(api, "getMe", token="123456:WRONG")
    assert (status, body) == (401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
    url = f"{api.root_url}/file/bot123456:WRONG/photos/file_1.jpg"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 401


async def test_unknown_method_is_not_found(api: FakeBotApi) -> None:
    status, body = await raw_call(api, "sendSomethingElse", json={})
    assert status == 404
    assert body == {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
    async with build_bot(api) as bot:
        with pytest.raises(EndPointNotFound):
            await bot.do_api_request("send_something_else")


async def test_fail_next_with_retry_after_raises_retry_after(
    api: FakeBotApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without this opt-in, PTB 22 warns (deprecation) whenever it builds a RetryAfter.
    monkeypatch.setenv("PTB_TIMEDELTA", "1")
    chat = api.private_chat(api.user(1))
    api.fail_next("sendMessage", retry_after=1)
    async with build_bot(api) as bot:
        with pytest.raises(RetryAfter) as excinfo:
            await bot.send_message(chat["id"], "too fast")
        assert excinfo.value.retry_after == dtm.timedelta(seconds=1)
        await bot.send_message(chat["id"], "later")
    assert api.errors == [("sendMessage", 429, "Too Many Requests: retry after 1")]
    assert [sent["text"] for sent in api.sent] == ["later"]


async def test_fail_next_with_delay_makes_the_client_time_out(api: FakeBotApi) -> None:
    chat = api.private_chat(api.user(1))
    api.fail_next("sendMessage", status=200, delay=1.0)  # slow, but it would succeed
    api.fail_next("sendMessage", status=502, description="Bad Gateway", times=2)
    async with build_bot(api) as bot:
        with pytest.raises(TimedOut):
            await bot.send_message(chat["id"], "slow", read_timeout=0.2)
        for _ in range(2):
            with pytest.raises(Exception, match="Bad Gateway"):
                await bot.send_message(chat["id"], "broken")
        await bot.send_message(chat["id"], "fine")
    assert [name for name, _ in api.calls].count("sendMessage") == 4
    # As on Telegram, the message the client gave up on was still sent, after the delay.
    assert [m["text"] for m in await api.wait_for_sent(chat["id"], count=2)] == ["fine", "slow"]


async def test_replies_are_resolved_from_reply_parameters_and_reply_to_message_id(
    api: FakeBotApi,
) -> None:
    ann = api.user(1)
    chat = api.private_chat(ann)
    question = api.send_text(chat, ann, "what do you see?")
    async with build_bot(api) as bot:
        first = await bot.send_message(
            chat["id"], "a cat", reply_parameters=ReplyParameters(question["message_id"])
        )
        second = await bot.send_message(
            chat["id"], "a happy cat", reply_to_message_id=question["message_id"]
        )
        with pytest.raises(BadRequest, match="Message to be replied not found"):
            await bot.send_message(chat["id"], "?", reply_to_message_id=12345)
        with pytest.raises(BadRequest, match="Chat not found"):
            await bot.send_message(777, "who?")

    assert first.reply_to_message.text == "what do you see?"
    assert second.reply_to_message.message_id == question["message_id"]
    assert [sent["reply_to_message_id"] for sent in api.sent] == [question["message_id"]] * 2
    assert first.message_id < second.message_id


async def test_markup_is_checked_like_telegram_does(api: FakeBotApi) -> None:
    chat = api.private_chat(api.user(1))
    async with build_bot(api) as bot:
        await bot.send_message(chat["id"], "<b>Mood:</b> joy &amp; calm", parse_mode="HTML")
        with pytest.raises(BadRequest, match="unsupported start tag"):
            await bot.send_message(chat["id"], "I <3 it", parse_mode="HTML")
        with pytest.raises(BadRequest, match="can't find end tag"):
            await bot.send_message(chat["id"], "<b>bold", parse_mode="HTML")
        with pytest.raises(BadRequest, match="reserved"):
            await bot.send_message(chat["id"], "Happy.", parse_mode="MarkdownV2")
        await bot.send_message(chat["id"], "*Happy*\\. [see](https://x.org/a-b)", "MarkdownV2")
        with pytest.raises(BadRequest, match="Message is too long"):
            await bot.send_message(chat["id"], "x" * 4097)
    assert [(sent["text"], sent["parse_mode"]) for sent in api.sent] == [
        ("<b>Mood:</b> joy &amp; calm", "HTML"),
        ("*Happy*\\. [see](https://x.org/a-b)", "MarkdownV2"),
    ]


async def test_edit_commands_chat_action_and_inline_keyboard(api: FakeBotApi) -> None:
    chat = api.private_chat(api.user(1))
    keyboard = {"inline_keyboard": [[{"text": "again", "callback_data": "again"}]]}
    async with build_bot(api) as bot:
        await bot.set_my_commands([("mood", "Read the mood of a photo")])
        assert [c.command for c in await bot.get_my_commands()] == ["mood"]
        assert await bot.send_chat_action(chat["id"], "typing")
        message = await bot.send_message(chat["id"], "thinking...", reply_markup=keyboard)
        assert message.reply_markup.inline_keyboard[0][0].callback_data == "again"
        edited = await bot.edit_message_text("joy", chat["id"], message.message_id)
        with pytest.raises(BadRequest, match="Message is not modified"):
            await bot.edit_message_text("joy", chat["id"], message.message_id)
        # A reply keyboard is recorded but, like on Telegram, not echoed in the Message.
        await bot.send_message(chat["id"], "pick", reply_markup={"keyboard": [["a"]]})

    assert edited.text == "joy" and edited.edit_date is not None
    assert api.my_commands() == [{"command": "mood", "description": "Read the mood of a photo"}]
    assert api.edits[0]["text"] == "joy"
    assert api.sent[0]["reply_markup"] == keyboard
    assert api.sent[1]["reply_markup"] == {"keyboard": [["a"]]}
    assert "reply_markup" not in api.sent[1]["message"]


@pytest.mark.parametrize(
    "how",
    [
        {"json": {"chat_id": 5, "text": "hi", "reply_markup": {"inline_keyboard": []}}},
        {"data": {"chat_id": "5", "text": "hi", "reply_markup": '{"inline_keyboard": []}'}},
        {"params": {"chat_id": "5", "text": "hi", "reply_markup": '{"inline_keyboard": []}'}},
    ],
    ids=["json", "form-urlencoded", "query-string"],
)
async def test_parameters_are_accepted_in_every_encoding(api: FakeBotApi, how: dict) -> None:
    api.private_chat(api.user(5))
    status, body = await raw_call(api, "sendMessage", **how)
    assert status == 200 and body["ok"]
    assert body["result"]["chat"]["id"] == 5
    assert api.calls[-1] == (
        "sendMessage",
        {"chat_id": 5, "text": "hi", "reply_markup": {"inline_keyboard": []}},
    )


async def test_multipart_and_get_are_accepted(api: FakeBotApi) -> None:
    api.private_chat(api.user(5))
    form = aiohttp.FormData()
    form.add_field("chat_id", "5")
    form.add_field("text", "with a file")
    form.add_field("thumbnail", b"\xff\xd8", filename="t.jpg", content_type="image/jpeg")
    status, body = await raw_call(api, "sendMessage", data=form)
    assert status == 200 and body["result"]["text"] == "with a file"
    assert api.calls[-1][1]["thumbnail"] == b"\xff\xd8"
    status, body = await raw_call(api, "GETME", http="GET")
    assert status == 200 and body["result"]["username"] == "mood_test_bot"


async def test_get_updates_honours_offset_limit_and_timeout(api: FakeBotApi) -> None:
    ann = api.user(1)
    chat = api.private_chat(ann)
    api.send_text(chat, ann, "one")
    api.send_text(chat, ann, "two")

    _, body = await raw_call(api, "getUpdates", json={"timeout": 0})
    first, second = (update["update_id"] for update in body["result"])
    _, body = await raw_call(api, "getUpdates", json={"timeout": 0, "limit": 1})
    assert [u["update_id"] for u in body["result"]] == [first]  # nothing was confirmed yet
    _, body = await raw_call(api, "getUpdates", json={"offset": second, "timeout": 0})
    assert [u["message"]["text"] for u in body["result"]] == ["two"]
    await api.wait_until_consumed()
    _, body = await raw_call(api, "getUpdates", data={"offset": str(second + 1), "timeout": "0"})
    assert body == {"ok": True, "result": []}


async def test_waiting_long_poll_gets_the_update_then_stop_releases_it(api: FakeBotApi) -> None:
    ann = api.user(1)
    chat = api.private_chat(ann)
    poll = asyncio.create_task(raw_call(api, "getUpdates", json={"timeout": 30}))
    await api.wait_for_call("getUpdates")
    api.send_text(chat, ann, "now")
    _, body = await asyncio.wait_for(poll, timeout=5)
    assert body["result"][0]["message"]["text"] == "now"

    confirmed = body["result"][0]["update_id"] + 1
    poll = asyncio.create_task(
        raw_call(api, "getUpdates", json={"offset": confirmed, "timeout": 30})
    )
    await api.wait_for_call("getUpdates")
    await api.stop()
    assert await asyncio.wait_for(poll, timeout=5) == (200, {"ok": True, "result": []})


async def test_a_newer_long_poll_ends_the_waiting_one_with_conflict(api: FakeBotApi) -> None:
    first = asyncio.create_task(raw_call(api, "getUpdates", json={"timeout": 30}))
    await api.wait_for_call("getUpdates")
    assert await raw_call(api, "getUpdates", json={"timeout": 0}) == (
        200,
        {"ok": True, "result": []},
    )
    status, body = await asyncio.wait_for(first, timeout=5)
    assert (status, body["error_code"]) == (409, 409)
    assert body["description"].startswith("Conflict: terminated by other getUpdates request")


async def test_a_delayed_old_long_poll_does_not_end_a_newer_one(api: FakeBotApi) -> None:
    ann = api.user(1)
    chat = api.private_chat(ann)
    api.fail_next("getUpdates", status=200, delay=0.3)
    stale = asyncio.create_task(raw_call(api, "getUpdates", json={"timeout": 0}))
    await api.wait_for_call("getUpdates")
    live = asyncio.create_task(raw_call(api, "getUpdates", json={"timeout": 30}))
    await api.wait_for_call("getUpdates")
    status, _ = await asyncio.wait_for(stale, timeout=5)
    assert status == 409
    api.send_text(chat, ann, "still here")
    _, body = await asyncio.wait_for(live, timeout=5)
    assert body["result"][0]["message"]["text"] == "still here"


async def test_opt_in_update_kinds_are_dropped_unless_allowed(api: FakeBotApi) -> None:
    api.send_raw_update({"chat_member": {"chat": {"id": 1, "type": "private"}}})
    api.send_raw_update({"edited_message": {"message_id": 1}})
    _, body = await raw_call(api, "getUpdates", json={"timeout": 0})
    assert [set(u) - {"update_id"} for u in body["result"]] == [{"edited_message"}]


async def test_waits_fail_with_what_was_received(api: FakeBotApi) -> None:
    chat = api.private_chat(api.user(1))
    async with build_bot(api) as bot:
        await bot.send_message(chat["id"], "one")
        await bot.send_message(chat["id"], "two")
    assert [m["text"] for m in await api.wait_for_sent(chat["id"])] == ["one"]
    with pytest.raises(AssertionError, match=r"new: \['two'\]"):
        await api.wait_for_sent(chat["id"], count=2, timeout=0.2)
    assert [m["text"] for m in await api.wait_for_sent(chat["id"])] == ["two"]
    with pytest.raises(AssertionError, match="waiting for a call of editMessageText"):
        await api.wait_for_call("editMessageText", timeout=0.2)
