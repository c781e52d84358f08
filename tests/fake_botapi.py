"""A fake Telegram Bot API server on 127.0.0.1, for end-to-end tests of the bot.

The flow of a test: start a `FakeBotApi`, point an unmodified python-telegram-bot
`Application` at it (`base_url=f"{api.root_url}/bot"`, `base_file_url=f"{api.root_url}/file/bot"`),
let the bot long-poll `getUpdates`, then play the users: `send_text`, `send_photo` and
`send_document` queue realistic updates, and `wait_for_sent` / `wait_for_call` wait (bounded)
for what the bot answers. `fail_next` makes the next calls of a method fail, to test how the
bot copes with Telegram being unwell.

The server speaks the real Bot API over HTTP: `{"ok": true, "result": ...}` on success and
`{"ok": false, "error_code": N, "description": "..."}` on failure, with the descriptions Telegram
uses (python-telegram-bot turns them into `BadRequest`, `InvalidToken`, `RetryAfter`, ...).
Parameters are accepted as a JSON body, form-urlencoded, multipart/form-data or a query string;
the latter three carry every value as a string (python-telegram-bot sends JSON-encoded strings
for objects and numbers), so values are typed by parameter name, as Telegram does.

Like Telegram, the server refuses to send to a chat it has never seen (the helpers make chats
known), to reply to a message that does not exist, or to send text whose HTML or MarkdownV2
markup it cannot parse.

Files the bot sends (`sendPhoto`, `sendDocument`) arrive as multipart/form-data uploads, as
python-telegram-bot sends them; the server keeps the uploaded bytes, file name and type
(`sent[...]["file"]`), refuses a photo Pillow cannot open and files over Telegram's limits.
`press_button` plays a person pressing an inline button (a `callback_query` update), and
`set_member_status` says what `getChatMember` answers for a person in a group.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import io
import json
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Self, TypeVar

from aiohttp import web
from PIL import Image, ImageOps, UnidentifiedImageError

JSONDict = dict[str, Any]
T = TypeVar("T")

# Telegram keeps sizes in these steps (longest side, in pixels) and never upscales.
PHOTO_STEPS = (90, 320, 800, 1280)
# Bots may download files up to 20 MB through the cloud Bot API.
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
MAX_MESSAGE_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
# Bots may upload photos up to 10 MB and other files up to 50 MB.
MAX_PHOTO_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
# The pseudo method name `fail_next` uses for the file download route.
DOWNLOAD = "download"

# Update kinds Telegram leaves out unless the bot asks for them with `allowed_updates`.
_OPT_IN_UPDATES = {"chat_member", "message_reaction", "message_reaction_count"}

_INT_PARAMS = {
    "chat_id",
    "from_chat_id",
    "limit",
    "message_id",
    "message_thread_id",
    "offset",
    "reply_to_message_id",
    "timeout",
    "user_id",
}
_BOOL_PARAMS = {
    "allow_sending_without_reply",
    "disable_notification",
    "disable_web_page_preview",
    "drop_pending_updates",
    "protect_content",
    "show_alert",
}
_JSON_PARAMS = {
    "allowed_updates",
    "caption_entities",
    "commands",
    "entities",
    "link_preview_options",
    "reply_markup",
    "reply_parameters",
    "scope",
}
_CHAT_ACTIONS = {
    "choose_sticker",
    "find_location",
    "record_video",
    "record_video_note",
    "record_voice",
    "typing",
    "upload_document",
    "upload_photo",
    "upload_video",
    "upload_video_note",
    "upload_voice",
}
_HTML_TAGS = {
    "a",
    "b",
    "blockquote",
    "code",
    "del",
    "em",
    "i",
    "ins",
    "pre",
    "s",
    "span",
    "strike",
    "strong",
    "tg-emoji",
    "tg-spoiler",
    "u",
}
_HTML_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)((?:\s[^<>]*)?)>")
_HTML_ENTITY = re.compile(r"&(lt|gt|amp|quot|#[0-9]+|#x[0-9A-Fa-f]+);")
# MarkdownV2 characters that never open markup, so must always be escaped outside code.
_MARKDOWN_V2_LITERAL_ONLY = set("#+-=|{}.!")
_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")
_ADMIN_RIGHTS = {
    "can_be_edited": False,
    "is_anonymous": False,
    "can_manage_chat": True,
    "can_delete_messages": True,
    "can_manage_video_chats": True,
    "can_restrict_members": True,
    "can_promote_members": False,
    "can_change_info": True,
    "can_invite_users": True,
    "can_post_stories": False,
    "can_edit_stories": False,
    "can_delete_stories": False,
}
# The fields each ChatMember kind carries besides `status` and `user`.
_MEMBER_STATUSES: dict[str, JSONDict] = {
    "creator": {"is_anonymous": False},
    "administrator": _ADMIN_RIGHTS,
    "member": {},
    "left": {},
    "kicked": {"until_date": 0},
}


class _ApiError(Exception):
    """An error answer of the Bot API."""

    def __init__(self, status: int, description: str, parameters: JSONDict | None = None):
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def _bad_request(what: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {what}")


@dataclass
class _Fault:
    status: int
    description: str
    retry_after: int | None
    delay: float
    remaining: int


class Upload(bytes):
    """The bytes of a multipart file field, with the name and type the client gave them."""

    filename: str | None
    content_type: str

    def __new__(cls, data: bytes, filename: str | None, content_type: str) -> Self:
        upload = super().__new__(cls, data)
        upload.filename = filename
        upload.content_type = content_type
        return upload


@dataclass(frozen=True)
class _StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes
    file_size: int


class _Changes:
    """Wakes every waiter whenever the server's state changes; `notify` works from sync code."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait_for(self, ready: Callable[[], T | None], timeout: float) -> T | None:
        """Return `ready()` once it is not None, or None when `timeout` seconds pass first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (result := ready()) is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), remaining)
        return result


def _utf16_len(text: str) -> int:
    """Telegram measures offsets and lengths in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def _command_entities(text: str | None) -> list[JSONDict]:
    """The `bot_command` entity Telegram attaches to text starting with a command."""
    if not text or not text.startswith("/"):
        return []
    command = re.match(r"/[^\s]*", text)
    if command is None or len(command.group()) < 2:
        return []
    return [{"type": "bot_command", "offset": 0, "length": _utf16_len(command.group())}]


def _coerce(name: str, value: Any) -> Any:
    """Types a parameter that arrived as a string, the way Telegram reads it."""
    if not isinstance(value, str):
        return value
    if name in _JSON_PARAMS:
        try:
            return json.loads(value)
        except ValueError as exc:
            raise _bad_request(f"can't parse {name} JSON object") from exc
    if name in _INT_PARAMS:
        with contextlib.suppress(ValueError):
            return int(value)
        return value  # e.g. chat_id="@channelusername"
    if name in _BOOL_PARAMS:
        return value.strip().lower() in {"true", "1"}
    return value


def _html_plain_text(text: str) -> str:
    """Checks Telegram-style HTML and returns the text without markup, or raises a 400."""

    def error(what: str, position: int) -> _ApiError:
        offset = len(text[:position].encode())
        return _bad_request(f"can't parse entities: {what} at byte offset {offset}")

    plain: list[str] = []
    open_tags: list[tuple[str, int]] = []
    position = 0
    while (start := text.find("<", position)) >= 0:
        plain.append(text[position:start])
        tag = _HTML_TAG.match(text, start)
        name = tag.group(2).lower() if tag else ""
        if tag is None or name not in _HTML_TAGS:
            shown = name or re.match(r"[^\s<>]*", text[start + 1 :]).group()
            raise error(f'Unsupported start tag "{shown}"', start)
        if tag.group(1):
            if not open_tags or open_tags[-1][0] != name:
                expected = f'"</{open_tags[-1][0]}>"' if open_tags else "no end tag"
                raise error(f'Unmatched end tag, expected {expected}, found "</{name}>"', start)
            open_tags.pop()
        else:
            open_tags.append((name, start))
        position = tag.end()
    plain.append(text[position:])
    if open_tags:
        name, start = open_tags[-1]
        raise error(f'Can\'t find end tag corresponding to start tag "{name}"', start)
    return _HTML_ENTITY.sub(lambda m: html.unescape(m.group()), "".join(plain))


def _check_markdown_v2(text: str) -> None:
    """Raises a 400 for reserved MarkdownV2 characters left unescaped (a simplified check)."""
    index = 0
    in_code = False
    in_link_url = False
    line_start = True
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            line_start = False
            continue
        if char == "`":
            in_code = not in_code
        elif in_link_url:
            in_link_url = char != ")"
        elif not in_code:
            if char == "]" and text.startswith("(", index + 1):
                in_link_url = True
                index += 1
            elif char in _MARKDOWN_V2_LITERAL_ONLY or (char == ">" and not line_start):
                raise _bad_request(
                    f"can't parse entities: Character '{char}' is reserved and must be escaped "
                    "with the preceding '\\'"
                )
        line_start = char == "\n"
        index += 1


def _plain_length(text: str, parse_mode: str | None) -> int:
    """Validates `text` for `parse_mode` and returns its length as Telegram counts it."""
    mode = (parse_mode or "").lower()
    if mode == "html":
        return _utf16_len(_html_plain_text(text))
    if mode == "markdownv2":
        _check_markdown_v2(text)
    elif mode not in {"", "markdown"}:
        raise _bad_request("unsupported parse_mode")
    return _utf16_len(text)


def _inline_markup(reply_markup: Any) -> JSONDict | None:
    """Telegram echoes only inline keyboards in a sent Message (PTB parses nothing else there)."""
    if isinstance(reply_markup, dict) and "inline_keyboard" in reply_markup:
        return reply_markup
    return None


def _without_reply(message: JSONDict) -> JSONDict:
    """A message as it appears in `reply_to_message`: Telegram does not nest replies deeper."""
    return {key: value for key, value in message.items() if key != "reply_to_message"}


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=87)
    return buffer.getvalue()


def _photo_variants(
    image_bytes: bytes, sizes: list[tuple[int, int]] | None
) -> list[tuple[int, int, bytes]]:
    """(width, height, JPEG bytes) for each size Telegram would keep of this photo, ascending.

    Bytes Pillow cannot open are served unchanged for every size, so tests can check how the
    bot copes with a photo it cannot decode.
    """
    try:
        with Image.open(io.BytesIO(image_bytes)) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
    except (UnidentifiedImageError, OSError):
        return [(width, height, image_bytes) for width, height in sizes or [(320, 240)]]
    if sizes is None:
        longest = max(image.size)
        steps = sorted({min(step, longest) for step in PHOTO_STEPS})
        sizes = [
            (
                max(1, round(image.width * step / longest)),
                max(1, round(image.height * step / longest)),
            )
            for step in steps
        ]
    variants = []
    for width, height in sizes:
        resized = image if (width, height) == image.size else image.resize((width, height))
        variants.append((width, height, _jpeg(resized)))
    return variants


class FakeBotApi:
    """A Bot API server for one bot, plus helpers that play its users and observe its answers."""

    def __init__(
        self,
        token: str = "123456:TEST-TOKEN",
        bot_username: str = "mood_test_bot",
        bot_id: int = 999,
    ) -> None:
        self.token = token
        self.bot_user: JSONDict = {
            "id": bot_id,
            "is_bot": True,
            "first_name": "Mood Test Bot",
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self.root_url = ""
        # What the bot did, in order.
        self.sent: list[JSONDict] = []
        self.edits: list[JSONDict] = []
        self.calls: list[tuple[str, JSONDict]] = []
        self.errors: list[tuple[str, int, str]] = []  # (method, HTTP status, description)
        self.downloads: list[str] = []
        self.downloaded_file_ids: list[str] = []

        self._changes = _Changes()
        self._closing = False
        self._runner: web.AppRunner | None = None
        handlers: dict[str, Callable[..., Awaitable[Any]]] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,  # also given its arrival number, see _call
            "deleteWebhook": self._delete_webhook,
            "setWebhook": self._set_webhook,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "sendMessage": self._send_message,
            "sendChatAction": self._send_chat_action,
            "getFile": self._get_file,
            "editMessageText": self._edit_message_text,
            "answerCallbackQuery": self._answer_callback_query,
            "sendPhoto": self._send_photo,
            "sendDocument": self._send_document,
            "getChatMember": self._get_chat_member,
        }
        # Telegram matches method names case-insensitively.
        self._methods = {name.lower(): (name, handler) for name, handler in handlers.items()}
        self._faults: dict[str, deque[_Fault]] = {}

        self._pending: list[JSONDict] = []  # updates not yet confirmed by an offset
        self._allowed_updates: set[str] | None = None  # None: all but _OPT_IN_UPDATES
        self._last_update_id = 10_000
        self._last_delivered_id = 0
        self._last_poll = 0
        self._last_message_id = 0
        self._last_file_number = 0
        self._chats: dict[int, JSONDict] = {}
        self._messages: dict[tuple[int, int], JSONDict] = {}
        self._files: dict[str, _StoredFile] = {}
        self._files_by_path: dict[str, _StoredFile] = {}
        self._commands: dict[str, list[JSONDict]] = {}
        self._sent_cursor: dict[int, int] = {}
        self._call_cursor: dict[str, int] = {}
        self._users: dict[int, JSONDict] = {}
        self._member_status: dict[tuple[int, int], str] = {}
        self._last_callback_number = 0
        self.answered_callbacks: list[JSONDict] = []

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Listen on 127.0.0.1 on a port the OS chooses; sets `root_url`."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # As on Telegram, a request whose client gave up (timed out) is still carried out:
        # a slow sendMessage still reaches the chat. A long poll nobody listens to any more is
        # ended by the next getUpdates (409 Conflict), and `stop` ends every wait.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.root_url = f"http://{host}:{port}"

    async def stop(self) -> None:
        """Answer any waiting long poll with no updates, then close every connection."""
        self._closing = True
        self._changes.notify()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """What `ApplicationBuilder().base_url(...)` takes."""
        return f"{self.root_url}/bot"

    @property
    def base_file_url(self) -> str:
        """What `ApplicationBuilder().base_file_url(...)` takes."""
        return f"{self.root_url}/file/bot"

    # ------------------------------------------------------------ playing users

    def user(self, user_id: int, first_name: str = "Ann") -> JSONDict:
        """A human Telegram user."""
        return {
            "id": user_id,
            "is_bot": False,
            "first_name": first_name,
            "username": f"{first_name.lower()}{user_id}",
            "language_code": "en",
        }

    def private_chat(self, user: JSONDict) -> JSONDict:
        """The private chat between `user` and the bot (its id is the user's id)."""
        chat = {"id": user["id"], "type": "private", "first_name": user["first_name"]}
        if "username" in user:
            chat["username"] = user["username"]
        self._chats[chat["id"]] = chat
        return chat

    def group_chat(
        self, chat_id: int, title: str = "Friends", *, supergroup: bool = False
    ) -> JSONDict:
        """A group the bot is in. A positive `chat_id` is turned into Telegram's negative form
        (`-chat_id`, or `-100…` for a supergroup)."""
        if chat_id > 0:
            chat_id = -(1_000_000_000_000 + chat_id) if supergroup else -chat_id
        chat = {"id": chat_id, "type": "supergroup" if supergroup else "group", "title": title}
        self._chats[chat_id] = chat
        return chat

    def send_text(
        self, chat: JSONDict, user: JSONDict, text: str, reply_to: JSONDict | None = None
    ) -> JSONDict:
        """`user` writes `text` in `chat`; returns the message the bot will receive."""
        message = self._user_message(chat, user, reply_to)
        message["text"] = text
        if entities := _command_entities(text):
            message["entities"] = entities
        return self._deliver_message(message)

    def send_photo(
        self,
        chat: JSONDict,
        user: JSONDict,
        image_bytes: bytes,
        caption: str | None = None,
        reply_to: JSONDict | None = None,
        sizes: list[tuple[int, int]] | None = None,
    ) -> JSONDict:
        """`user` sends a photo. Like Telegram, it is kept in several JPEG sizes (ascending), each
        its own downloadable file; `sizes` chooses them, else 90/320/800/1280 px longest side."""
        message = self._user_message(chat, user, reply_to)
        message["photo"] = [
            self._register_file(data, "photos", ".jpg", "AgACAgIAAxkBAA", len(data))
            | {"width": width, "height": height}
            for width, height, data in _photo_variants(image_bytes, sizes)
        ]
        self._add_caption(message, caption)
        return self._deliver_message(message)

    def send_document(
        self,
        chat: JSONDict,
        user: JSONDict,
        data: bytes,
        file_name: str,
        mime_type: str,
        caption: str | None = None,
        reply_to: JSONDict | None = None,
        file_size: int | None = None,
    ) -> JSONDict:
        """`user` sends a file. `file_size` claims a size other than `len(data)` (say, 30 MB,
        which `getFile` refuses as Telegram does) without holding the bytes."""
        message = self._user_message(chat, user, reply_to)
        suffix = re.search(r"\.[A-Za-z0-9]{1,8}$", file_name)
        stored = self._register_file(
            data,
            "documents",
            suffix.group().lower() if suffix else "",
            "BQACAgIAAxkBAA",
            len(data) if file_size is None else file_size,
        )
        message["document"] = {"file_name": file_name, "mime_type": mime_type} | stored
        self._add_caption(message, caption)
        return self._deliver_message(message)

    def press_button(self, user: JSONDict, message: JSONDict, data: str) -> str:
        """`user` presses the inline button with callback data `data` under the bot's
        `message` (as the bot sent it); returns the callback query's id."""
        self._users[user["id"]] = user
        self._last_callback_number += 1
        query_id = f"{4_000_000 + self._last_callback_number}"
        stored = self._messages[(message["chat"]["id"], message["message_id"])]
        self.send_raw_update(
            {
                "callback_query": {
                    "id": query_id,
                    "from": user,
                    "message": stored,
                    "chat_instance": str(message["chat"]["id"]),
                    "data": data,
                }
            }
        )
        return query_id

    def set_member_status(self, chat: JSONDict, user: JSONDict, status: str) -> None:
        """What `getChatMember` says of `user` in `chat`: "creator", "administrator",
        "member" (the default for anyone who wrote there), "left" or "kicked"."""
        if status not in _MEMBER_STATUSES:
            raise ValueError(f"status must be one of {sorted(_MEMBER_STATUSES)}")
        self._users[user["id"]] = user
        self._member_status[(chat["id"], user["id"])] = status

    def send_raw_update(self, update: JSONDict) -> None:
        """Queue any update dict as is (`update_id` is filled in when missing)."""
        update = dict(update)
        if "update_id" in update:
            self._last_update_id = max(self._last_update_id, update["update_id"])
        else:
            self._last_update_id += 1
            update["update_id"] = self._last_update_id
        self._pending.append(update)
        self._changes.notify()

    def file_bytes(self, file_id: str) -> bytes:
        """The bytes the server serves for `file_id`."""
        return self._files[file_id].data

    def my_commands(self, scope: JSONDict | None = None, language_code: str = "") -> list[JSONDict]:
        """The commands the bot set for this scope and language (via setMyCommands)."""
        return self._commands.get(self._commands_key(scope, language_code), [])

    # ----------------------------------------------------------- fault injection

    def fail_next(
        self,
        method: str,
        *,
        status: int | None = None,
        description: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
        delay: float = 0.0,
    ) -> None:
        """Make the next `times` calls of `method` fail, after waiting `delay` seconds.

        The status is 429 with `parameters.retry_after` when `retry_after` is given, else 500
        unless chosen. `status=200` only delays the call, which then succeeds (a slow Telegram).
        `method` may be `DOWNLOAD` ("download") for the file download route.
        """
        if status is None:
            status = 429 if retry_after is not None else 500
        if description is None:
            description = (
                f"Too Many Requests: retry after {retry_after}"
                if retry_after is not None
                else HTTPStatus(status).phrase
            )
        fault = _Fault(status, description, retry_after, delay, times)
        self._faults.setdefault(method.lower(), deque()).append(fault)

    # --------------------------------------------------------------- observation

    async def wait_for_sent(
        self, chat_id: int, count: int = 1, timeout: float = 10.0
    ) -> list[JSONDict]:
        """The next `count` messages the bot sent to `chat_id`, counting from the messages
        earlier waits for this chat returned."""
        cursor = self._sent_cursor.get(chat_id, 0)

        def ready() -> list[JSONDict] | None:
            to_chat = [sent for sent in self.sent if sent["chat_id"] == chat_id]
            return to_chat[cursor : cursor + count] if len(to_chat) >= cursor + count else None

        def describe() -> str:
            to_chat = [sent["text"] for sent in self.sent if sent["chat_id"] == chat_id]
            return (
                f"timed out after {timeout}s waiting for {count} new message(s) to chat "
                f"{chat_id}; new: {to_chat[cursor:]!r}; earlier: {to_chat[:cursor]!r}; "
                f"{self._summary()}"
            )

        new = await self._changes.wait_for(ready, timeout)
        if new is None:
            raise AssertionError(describe())
        self._sent_cursor[chat_id] = cursor + count
        return new

    async def wait_for_call(self, method: str, timeout: float = 10.0) -> JSONDict:
        """The parameters of the next call of `method`, counting from earlier waits for it."""
        key = method.lower()
        cursor = self._call_cursor.get(key, 0)

        def ready() -> JSONDict | None:
            matching = [params for name, params in self.calls if name.lower() == key]
            return matching[cursor] if len(matching) > cursor else None

        def describe() -> str:
            return f"timed out after {timeout}s waiting for a call of {method}; {self._summary()}"

        params = await self._changes.wait_for(ready, timeout)
        if params is None:
            raise AssertionError(describe())
        self._call_cursor[key] = cursor + 1
        return params

    async def wait_until_consumed(self, timeout: float = 10.0) -> None:
        """Until the bot has fetched (been answered with) every update queued so far."""

        def ready() -> bool | None:
            last = self._pending[-1]["update_id"] if self._pending else 0
            return True if last <= self._last_delivered_id else None

        def describe() -> str:
            waiting = [
                u["update_id"] for u in self._pending if u["update_id"] > self._last_delivered_id
            ]
            return (
                f"timed out after {timeout}s: updates {waiting} were never fetched; "
                f"{self._summary()}"
            )

        if await self._changes.wait_for(ready, timeout) is None:
            raise AssertionError(describe())

    async def wait_until(
        self, condition: Callable[[], bool], what: str, timeout: float = 10.0
    ) -> None:
        """Until `condition()` holds, checked whenever the bot calls the server."""
        if await self._changes.wait_for(lambda: condition() or None, timeout) is None:
            raise AssertionError(
                f"timed out after {timeout}s waiting until {what}; {self._summary()}"
            )

    def _summary(self) -> str:
        calls = [name for name, _ in self.calls if name != "getUpdates"]
        return f"calls (without getUpdates): {calls}; errors answered: {self.errors}"

    # -------------------------------------------------------------- HTTP routes

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if method := re.fullmatch(r"/bot([^/]+)/([^/]+)", request.path):
            if method.group(1) != self.token:
                return self._error_response(_ApiError(401, "Unauthorized"))
            return await self._call(method.group(2), request)
        if download := re.fullmatch(r"/file/bot([^/]+)/(.+)", request.path):
            if download.group(1) != self.token:
                return self._error_response(_ApiError(401, "Unauthorized"))
            return await self._download(download.group(2))
        return self._error_response(_ApiError(404, "Not Found"))

    async def _call(self, method: str, request: web.Request) -> web.StreamResponse:
        name, handler = self._methods.get(method.lower(), (method, None))
        try:
            params = await self._read_params(request)
        except _ApiError as error:
            return self._failed(name, error)
        self.calls.append((name, params))
        if name == "getUpdates":
            # Telegram serves one long poll per bot: the newest getUpdates, by arrival, ends
            # the one still waiting (even one a fault delays, which then ends at once).
            self._last_poll += 1
            poll = self._last_poll
        self._changes.notify()
        try:
            await self._apply_fault(method)
            if handler is None:
                raise _ApiError(404, "Not Found: method not found")
            if name == "getUpdates":
                result = await self._get_updates(params, poll)
            else:
                result = await handler(params)
        except _ApiError as error:
            return self._failed(name, error)
        return web.json_response({"ok": True, "result": result})

    async def _download(self, file_path: str) -> web.StreamResponse:
        stored = self._files_by_path.get(file_path)
        try:
            await self._apply_fault(DOWNLOAD)
            if stored is None:
                raise _ApiError(404, "Not Found")
        except _ApiError as error:
            return self._failed(DOWNLOAD, error)
        self.downloads.append(file_path)
        self.downloaded_file_ids.append(stored.file_id)
        self._changes.notify()
        content_type = "image/jpeg" if file_path.endswith(".jpg") else "application/octet-stream"
        return web.Response(body=stored.data, content_type=content_type)

    async def _apply_fault(self, method: str) -> None:
        queue = self._faults.get(method.lower())
        if not queue:
            return
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.popleft()
        if fault.delay:
            # A slow server, cut short only by `stop`.
            await self._changes.wait_for(lambda: True if self._closing else None, fault.delay)
        if fault.status != 200:
            parameters = (
                {"retry_after": fault.retry_after} if fault.retry_after is not None else None
            )
            raise _ApiError(fault.status, fault.description, parameters)

    @staticmethod
    async def _read_params(request: web.Request) -> JSONDict:
        raw: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.body_exists:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError as exc:
                    raise _bad_request("can't parse JSON request body") from exc
                if not isinstance(body, dict):
                    raise _bad_request("JSON request body must be an object")
                raw.update(body)
            else:
                form = await request.post()
                for key, value in form.items():
                    raw[key] = (
                        Upload(value.file.read(), value.filename, value.content_type)
                        if isinstance(value, web.FileField)
                        else value
                    )
        return {key: _coerce(key, value) for key, value in raw.items()}

    def _failed(self, method: str, error: _ApiError) -> web.Response:
        self.errors.append((method, error.status, error.description))
        self._changes.notify()
        return self._error_response(error)

    @staticmethod
    def _error_response(error: _ApiError) -> web.Response:
        body: JSONDict = {"ok": False, "error_code": error.status, "description": error.description}
        if error.parameters:
            body["parameters"] = error.parameters
        return web.json_response(body, status=error.status)

    # ------------------------------------------------------------ Bot API methods

    async def _get_me(self, params: JSONDict) -> JSONDict:
        return self.bot_user

    async def _get_updates(self, params: JSONDict, poll: int) -> list[JSONDict]:
        offset = params.get("offset")
        limit = min(max(int(params.get("limit", 100)), 1), 100)
        timeout = max(float(params.get("timeout", 0)), 0.0)
        if params.get("allowed_updates"):
            self._allowed_updates = set(params["allowed_updates"])
        elif params.get("allowed_updates") == []:
            self._allowed_updates = None
        if isinstance(offset, int):
            self._confirm(offset)

        def ready() -> list[JSONDict] | None:
            if poll != self._last_poll:
                raise _ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one "
                    "bot instance is running",
                )
            updates = self._deliverable(limit)
            return updates if updates or self._closing else None

        updates = await self._changes.wait_for(ready, timeout) or []
        if updates:
            self._last_delivered_id = max(self._last_delivered_id, updates[-1]["update_id"])
            self._changes.notify()
        return updates

    def _confirm(self, offset: int) -> None:
        if offset > 0:
            self._pending = [u for u in self._pending if u["update_id"] >= offset]
        elif offset < 0:
            self._pending = self._pending[offset:]
        self._changes.notify()

    def _deliverable(self, limit: int) -> list[JSONDict]:
        """The first `limit` pending updates; kinds the bot did not allow are dropped."""
        allowed = self._allowed_updates

        def wanted(update: JSONDict) -> bool:
            kinds = set(update) - {"update_id"}
            return bool(kinds & allowed) if allowed else not kinds <= _OPT_IN_UPDATES

        self._pending = [u for u in self._pending if wanted(u)]
        return self._pending[:limit]

    async def _set_webhook(self, params: JSONDict) -> bool:
        """Only recorded: tests post to the bot's webhook server themselves."""
        if not str(params.get("url", "")).startswith("https://"):
            raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        return True

    async def _delete_webhook(self, params: JSONDict) -> bool:
        if params.get("drop_pending_updates"):
            self._pending.clear()
            self._changes.notify()
        return True

    @staticmethod
    def _commands_key(scope: JSONDict | None, language_code: str) -> str:
        return json.dumps([scope or {"type": "default"}, language_code], sort_keys=True)

    async def _set_my_commands(self, params: JSONDict) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad_request("commands must be a list of at most 100 BotCommand")
        for command in commands:
            if not _COMMAND_NAME.fullmatch(str(command.get("command", ""))):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        key = self._commands_key(params.get("scope"), params.get("language_code", ""))
        self._commands[key] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    async def _get_my_commands(self, params: JSONDict) -> list[JSONDict]:
        return self.my_commands(params.get("scope"), params.get("language_code", ""))

    def _known_chat(self, params: JSONDict) -> JSONDict:
        if params.get("chat_id") in (None, ""):
            raise _bad_request("chat_id is empty")
        chat = self._chats.get(params["chat_id"])
        if chat is None:
            raise _bad_request("chat not found")
        return chat

    @staticmethod
    def _checked_text(params: JSONDict) -> str:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _bad_request("message text is empty")
        if _plain_length(text, params.get("parse_mode")) > MAX_MESSAGE_LENGTH:
            raise _bad_request("message is too long")
        return text

    def _replied_message(self, chat: JSONDict, params: JSONDict) -> JSONDict | None:
        reply = params.get("reply_parameters")
        if isinstance(reply, dict):
            message_id = reply.get("message_id")
            allow_missing = bool(reply.get("allow_sending_without_reply"))
        elif "reply_to_message_id" in params:
            message_id = params["reply_to_message_id"]
            allow_missing = bool(params.get("allow_sending_without_reply"))
        else:
            return None
        replied = self._messages.get((chat["id"], message_id))
        if replied is None and not allow_missing:
            raise _bad_request("message to be replied not found")
        return replied

    async def _send_message(self, params: JSONDict) -> JSONDict:
        chat = self._known_chat(params)
        text = self._checked_text(params)
        replied = self._replied_message(chat, params)
        message = self._new_message(chat, self._bot_from())
        message["text"] = text
        if replied is not None:
            message["reply_to_message"] = _without_reply(replied)
        if markup := _inline_markup(params.get("reply_markup")):
            message["reply_markup"] = markup
        return self._keep_sent(message, params, replied, text=text)

    def _keep_sent(
        self, message: JSONDict, params: JSONDict, replied: JSONDict | None, **fields: Any
    ) -> JSONDict:
        """Store a message the bot sent, and note it in `sent` with `fields`."""
        chat_id = message["chat"]["id"]
        self._messages[(chat_id, message["message_id"])] = message
        self.sent.append(
            {
                "chat_id": chat_id,
                "message_id": message["message_id"],
                **fields,
                "parse_mode": params.get("parse_mode"),
                "reply_markup": params.get("reply_markup"),
                "reply_to_message_id": replied["message_id"] if replied else None,
                "message": message,
                "params": params,
            }
        )
        self._changes.notify()
        return message

    async def _send_chat_action(self, params: JSONDict) -> bool:
        self._known_chat(params)
        if params.get("action") not in _CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        return True

    async def _get_file(self, params: JSONDict) -> JSONDict:
        stored = self._files.get(str(params.get("file_id", "")))
        if stored is None:
            raise _bad_request("invalid file_id")
        if stored.file_size > MAX_DOWNLOAD_BYTES:
            raise _bad_request("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.file_size,
            "file_path": stored.file_path,
        }

    async def _edit_message_text(self, params: JSONDict) -> JSONDict:
        chat = self._known_chat(params)
        message = self._messages.get((chat["id"], params.get("message_id")))
        if message is None:
            raise _bad_request("message to edit not found")
        if message["from"]["id"] != self.bot_user["id"]:
            raise _bad_request("message can't be edited")
        text = self._checked_text(params)
        markup = _inline_markup(params.get("reply_markup"))
        if text == message.get("text") and markup == message.get("reply_markup"):
            raise _bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        message["text"] = text
        message["edit_date"] = int(time.time())
        message.pop("reply_markup", None)
        if markup:
            message["reply_markup"] = markup
        self.edits.append(
            {
                "chat_id": chat["id"],
                "message_id": message["message_id"],
                "text": text,
                "parse_mode": params.get("parse_mode"),
                "reply_markup": params.get("reply_markup"),
            }
        )
        self._changes.notify()
        return message

    async def _answer_callback_query(self, params: JSONDict) -> bool:
        if not params.get("callback_query_id"):
            raise _bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        self.answered_callbacks.append(params)
        self._changes.notify()
        return True

    async def _send_photo(self, params: JSONDict) -> JSONDict:
        photo = self._upload(params, "photo", MAX_PHOTO_UPLOAD_BYTES)
        try:
            with Image.open(io.BytesIO(photo)) as image:
                image.load()
        except (UnidentifiedImageError, OSError) as exc:
            raise _bad_request("IMAGE_PROCESS_FAILED") from exc
        return self._send_file(
            params,
            "photo",
            [
                self._register_file(data, "photos", ".jpg", "AgACAgIAAxkBAA", len(data))
                | {"width": width, "height": height}
                for width, height, data in _photo_variants(photo, None)
            ],
        )

    async def _send_document(self, params: JSONDict) -> JSONDict:
        document = self._upload(params, "document", MAX_UPLOAD_BYTES)
        suffix = re.search(r"\.[A-Za-z0-9]{1,8}$", document.filename or "")
        stored = self._register_file(
            document,
            "documents",
            suffix.group().lower() if suffix else "",
            "BQACAgIAAxkBAA",
            len(document),
        )
        meta = {"file_name": document.filename, "mime_type": document.content_type}
        return self._send_file(params, "document", {k: v for k, v in meta.items() if v} | stored)

    def _upload(self, params: JSONDict, name: str, limit: int) -> Upload:
        """A file uploaded in the field `name`; file ids and URLs are not served here."""
        self._known_chat(params)
        upload = params.get(name)
        if not isinstance(upload, Upload):
            raise _bad_request(f"there is no {name} in the request")
        if not upload:
            raise _bad_request("file must be non-empty")
        if len(upload) > limit:
            raise _ApiError(413, "Request Entity Too Large")
        return upload

    def _send_file(self, params: JSONDict, kind: str, file: Any) -> JSONDict:
        chat = self._known_chat(params)
        caption = params.get("caption")
        if caption is not None and _plain_length(caption, params.get("parse_mode")) > (
            MAX_CAPTION_LENGTH
        ):
            raise _bad_request("message caption is too long")
        replied = self._replied_message(chat, params)
        message = self._new_message(chat, self._bot_from())
        message[kind] = file
        if caption:
            message["caption"] = caption
        if replied is not None:
            message["reply_to_message"] = _without_reply(replied)
        upload = params[kind]
        return self._keep_sent(
            message,
            params,
            replied,
            text=None,
            caption=caption,
            kind=kind,
            file=upload,
            file_name=upload.filename,
        )

    async def _get_chat_member(self, params: JSONDict) -> JSONDict:
        chat = self._known_chat(params)
        user = self._users.get(params.get("user_id"))
        if user is None:
            raise _bad_request("PARTICIPANT_ID_INVALID")
        if chat["type"] == "private":
            status = "member"
        else:
            status = self._member_status.get((chat["id"], user["id"]), "member")
        return {"status": status, "user": user, **_MEMBER_STATUSES[status]}

    # ------------------------------------------------------------------ plumbing

    def _bot_from(self) -> JSONDict:
        return {key: self.bot_user[key] for key in ("id", "is_bot", "first_name", "username")}

    def _new_message(self, chat: JSONDict, sender: JSONDict) -> JSONDict:
        self._last_message_id += 1
        return {
            "message_id": self._last_message_id,
            "from": sender,
            "chat": chat,
            "date": int(time.time()),
        }

    def _user_message(self, chat: JSONDict, user: JSONDict, reply_to: JSONDict | None) -> JSONDict:
        self._chats.setdefault(chat["id"], chat)
        self._users[user["id"]] = user
        message = self._new_message(chat, user)
        if reply_to is not None:
            message["reply_to_message"] = _without_reply(reply_to)
        return message

    @staticmethod
    def _add_caption(message: JSONDict, caption: str | None) -> None:
        if caption is None:
            return
        message["caption"] = caption
        if entities := _command_entities(caption):
            message["caption_entities"] = entities

    def _deliver_message(self, message: JSONDict) -> JSONDict:
        self._messages[(message["chat"]["id"], message["message_id"])] = message
        self.send_raw_update({"message": message})
        return message

    def _register_file(
        self, data: bytes, folder: str, suffix: str, id_prefix: str, file_size: int
    ) -> JSONDict:
        self._last_file_number += 1
        number = self._last_file_number
        stored = _StoredFile(
            file_id=f"{id_prefix}{number:06d}{self.bot_user['id']}",
            file_unique_id=f"AQAD{number:06d}",
            file_path=f"{folder}/file_{number}{suffix}",
            data=data,
            file_size=file_size,
        )
        self._files[stored.file_id] = stored
        self._files_by_path[stored.file_path] = stored
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": file_size,
        }
