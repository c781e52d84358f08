"""One handler per step of a conversation; `bot.app` registers them.

Private chat: a photo (or an image file, or a caption typed in words) waits for the next
text, which completes the pair; a photo with a Telegram caption is a pair at once.
Group chat (privacy mode: the bot only sees its commands and replies to itself): `/analyze`
as a reply to a photo or a text, or a photo captioned `/analyze ...`; without text, a
ForceReply prompt asks for it and the person's reply to the prompt completes the pair.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from telegram import Bot, Chat, Document, ForceReply, Message, PhotoSize, Sticker, Update
from telegram.constants import ChatAction
from telegram.error import NetworkError, TelegramError
from telegram.ext import ApplicationHandlerStop, ContextTypes

from bot import replies
from bot.errors import Refusal
from bot.inference import Inference
from bot.pending import Lookup, Pending, PendingCaptions
from bot.pending_postgres import PostgresPendingCaptions
from bot.ratelimit import RateLimit
from core.errors import CoreError, RecordsError
from core.pipeline import IMAGE, MANUAL
from core.store import RecordsStore
from core.text import clean_text

log = logging.getLogger(__name__)

TELEGRAM_DOWNLOAD_LIMIT = 20 * 1024 * 1024
HISTORY_DEFAULT, HISTORY_MAX = 5, 20
_ANALYZE = re.compile(r"/analyze(?:@(?P<bot>\w+))?(?=\s|$)(?P<rest>.*)", re.DOTALL | re.IGNORECASE)
T = TypeVar("T")


@dataclass(frozen=True)
class Deps:
    inference: Inference
    store: RecordsStore
    pending: PendingCaptions | PostgresPendingCaptions
    rate: RateLimit
    allowed_chat_ids: frozenset[int] | None = None
    timezone: str = "UTC"  # where /stats days begin and end
    refused_chats: set[int] = field(default_factory=set)


def deps(context: ContextTypes.DEFAULT_TYPE) -> Deps:
    return context.bot_data["deps"]


async def only_allowed_chats(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """With ALLOWED_CHAT_IDS, other chats get one polite refusal and nothing else."""
    allowed, chat = deps(context).allowed_chat_ids, update.effective_chat
    if allowed is None or (chat is not None and chat.id in allowed):
        return
    if chat is not None and chat.id not in deps(context).refused_chats:
        deps(context).refused_chats.add(chat.id)
        log.info("Refused chat %s: not in ALLOWED_CHAT_IDS", chat.id)
        with contextlib.suppress(TelegramError):
            await context.bot.send_message(chat.id, replies.NOT_ALLOWED)
    raise ApplicationHandlerStop


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/start and /help: both flows in a few lines."""
    await update.effective_message.reply_html(replies.HELP)


async def cancel(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/cancel: forget this person's waiting caption in this chat."""
    pending = deps(context).pending
    dropped = await _waiting(pending.drop, update.effective_chat.id, update.effective_user.id)
    await update.effective_message.reply_html(
        replies.CANCELLED if dropped else replies.NOTHING_PENDING
    )


async def history(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/history [N]: this chat's latest results, never another chat's."""
    try:
        (count,) = [int(arg) for arg in context.args] or [HISTORY_DEFAULT]
    except ValueError:
        count = 0
    if not 1 <= count <= HISTORY_MAX:
        await update.effective_message.reply_html(replies.HISTORY_USAGE.format(limit=HISTORY_MAX))
        return
    try:
        records = await asyncio.to_thread(
            deps(context).store.recent, update.effective_chat.id, count
        )
    except RecordsError as error:
        log.error("History unavailable: %s", error)
        raise Refusal(replies.HISTORY_UNAVAILABLE) from None
    await update.effective_message.reply_html(replies.history(records))


async def analyze_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/analyze [text] as a reply to a photo (caption it) or to a text (use it as caption)."""
    message = update.effective_message
    target = message.reply_to_message
    text = _analyze_text(message.text, context.bot.username) or ""
    if target is not None and _is_picture(target):
        await _start_from_picture(update, context, target, text)
    elif target is not None and (target.text or target.caption):
        await _finish_or_wait(update, context, target.text or target.caption, text, MANUAL)
    else:
        await message.reply_html(replies.ANALYZE_USAGE)


async def picture(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A photo or image file; in groups only when captioned /analyze."""
    message = update.effective_message
    text = message.caption or ""
    command_text = _analyze_text(text, context.bot.username)
    if command_text is not None:
        text = command_text
    elif _in_group(update.effective_chat):
        return
    await _start_from_picture(update, context, message, text)


async def not_a_picture(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A file that is not an image, in a private chat."""
    await update.effective_message.reply_html(replies.NOT_AN_IMAGE_DOCUMENT)


async def not_understood(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Voice, video, stickers that move, locations, polls…: say what we do understand."""
    await update.effective_message.reply_html(replies.NOT_UNDERSTOOD)


async def text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Completes a waiting caption; in a private chat, otherwise starts one."""
    message, chat, user = update.effective_message, update.effective_chat, update.effective_user
    in_group = _in_group(chat)
    if in_group and not _replies_to_bot(message, context.bot):
        return
    waiting = await _waiting(deps(context).pending.take, chat.id, user.id)
    if waiting is Lookup.EXPIRED:
        await message.reply_html(replies.expired(deps(context).pending.ttl_seconds))
    elif isinstance(waiting, Pending):
        await _finish(update, context, waiting.caption, message.text, waiting.caption_source)
    elif not in_group:
        await _wait_for_text(update, context, message.text, MANUAL)


async def error_handler(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """People see one short line; the log gets the stack trace for anything unexpected.

    A network error while polling (a 502 from getUpdates, a dropped connection) has no update:
    it is a hiccup that polling retries by itself, worth one warning line."""
    error = context.error
    if update is None and isinstance(error, NetworkError):
        log.warning("Polling Telegram failed (%s): trying again", error)
        return
    if isinstance(error, CoreError | Refusal):
        log.info("Refused: %s", error)
        answer = str(error)
    else:
        log.error("An update caused an error", exc_info=error)
        answer = replies.SOMETHING_WENT_WRONG
    if isinstance(update, Update) and update.effective_message:
        with contextlib.suppress(TelegramError):
            await update.effective_message.reply_text(answer)


async def _start_from_picture(
    update: Update, context: ContextTypes.DEFAULT_TYPE, source: Message, text: str
) -> None:
    inference = deps(context).inference
    async with _job(update, context):
        data = await _download(context.bot, source, inference.input_size)
        caption = await inference.caption(data)
    await _finish_or_wait(update, context, caption, text, IMAGE)


async def _finish_or_wait(
    update: Update, context: ContextTypes.DEFAULT_TYPE, caption: str, text: str, source: str
) -> None:
    """With a text the pair is complete; without, the caption waits for it."""
    if text.strip():
        await _finish(update, context, caption, text, source)
    else:
        await _wait_for_text(update, context, caption, source)


async def _wait_for_text(
    update: Update, context: ContextTypes.DEFAULT_TYPE, caption: str, source: str
) -> None:
    caption = clean_text(caption)  # kept and shown: no lone surrogate may come along
    if not caption.strip():
        raise Refusal("The caption is empty: describe the picture in a few words.")
    in_group = _in_group(update.effective_chat)
    show = replies.caption_seen if source == IMAGE else replies.caption_saved
    prompt = await update.effective_message.reply_html(
        show(caption, in_group=in_group),
        reply_markup=ForceReply(selective=True, input_field_placeholder="Your text…")
        if in_group
        else None,
    )
    await _waiting(
        deps(context).pending.put,
        update.effective_chat.id,
        update.effective_user.id,
        caption,
        source,
        prompt.message_id,
    )


async def _finish(
    update: Update, context: ContextTypes.DEFAULT_TYPE, caption: str, text: str, source: str
) -> None:
    """Classify, record, reply: the record is written before the person sees the answer."""
    chat, user = update.effective_chat, update.effective_user
    async with _job(update, context):
        analysis = await deps(context).inference.classify(caption, text, source)
    answer = replies.result(analysis)
    try:
        record = analysis.to_record(chat_id=chat.id, user_id=user.id)
        await asyncio.to_thread(deps(context).store.append, record)
    except RecordsError as error:
        log.error("RECORD NOT SAVED for chat %s: %s", chat.id, error, exc_info=True)
        answer += "\n\n" + replies.NOT_SAVED
    await update.effective_message.reply_html(answer)


async def _waiting(call: Callable[..., T], *args: object) -> T:
    """Waiting captions may live in a database: the call runs off the event loop, and a
    database that is down becomes a "try again" for the person and an error in the log."""
    try:
        return await asyncio.to_thread(call, *args)
    except RecordsError as error:
        log.error("Waiting captions unavailable: %s", error)
        raise Refusal(replies.TRY_AGAIN) from None


@contextlib.asynccontextmanager
async def _job(update: Update, context: ContextTypes.DEFAULT_TYPE) -> AsyncIterator[None]:
    """Admission for one model job: the person's rate first, then a place in the queue."""
    wait = deps(context).rate.take(update.effective_user.id)
    if wait:
        raise Refusal(replies.slow_down(wait))
    async with deps(context).inference.job(), _typing(context.bot, update.effective_chat.id):
        yield


def _is_picture(message: Message) -> bool:
    return _picture_file(message) is not None


def _image_document(message: Message) -> Document | None:
    document = message.document
    return document if document and (document.mime_type or "").startswith("image/") else None


def _picture_file(message: Message) -> PhotoSize | Document | Sticker | None:
    """The photo, image file or still sticker in a message (a photo in several sizes)."""
    if message.photo:
        return message.photo[-1]
    if message.sticker and not (message.sticker.is_animated or message.sticker.is_video):
        return message.sticker
    return _image_document(message)


async def _download(bot: Bot, message: Message, min_side: int) -> bytes:
    chosen = _photo_size(message.photo, min_side) if message.photo else _picture_file(message)
    if chosen.file_size and chosen.file_size > TELEGRAM_DOWNLOAD_LIMIT:
        raise Refusal(replies.TOO_BIG)
    try:
        telegram_file = await bot.get_file(chosen.file_id)
        return bytes(await telegram_file.download_as_bytearray())
    except TelegramError as error:
        log.warning("Download failed: %s", error)
        raise Refusal(replies.DOWNLOAD_FAILED) from None


def _photo_size(sizes: tuple[PhotoSize, ...], min_side: int) -> PhotoSize:
    """The smallest size the model can use fully: bigger ones only cost download time."""
    by_area = sorted(sizes, key=lambda size: size.width * size.height)
    return next((s for s in by_area if min(s.width, s.height) >= min_side), by_area[-1])


def _analyze_text(text: str | None, bot_username: str) -> str | None:
    """The text after `/analyze` or `/analyze@us`; None if the message is not that command."""
    match = _ANALYZE.match(text or "")
    if not match or (match["bot"] and match["bot"].lower() != bot_username.lower()):
        return None
    return match["rest"].strip()


def _in_group(chat: Chat) -> bool:
    return chat.type != Chat.PRIVATE


def _replies_to_bot(message: Message, bot: Bot) -> bool:
    target = message.reply_to_message
    return bool(target and target.from_user and target.from_user.id == bot.id)


@contextlib.asynccontextmanager
async def _typing(bot: Bot, chat_id: int) -> AsyncIterator[None]:
    """Keep "typing…" on screen while the models work; Telegram drops it after 5 s."""

    async def keep_typing() -> None:
        while True:
            with contextlib.suppress(TelegramError):
                await bot.send_chat_action(chat_id, ChatAction.TYPING)
            await asyncio.sleep(4)

    task = asyncio.create_task(keep_typing())
    try:
        yield
    finally:
        task.cancel()
