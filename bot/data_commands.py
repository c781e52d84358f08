"""What a chat can do with its stored results: see them as a chart, take them away, delete them.

/stats [days|all]: the chat's moods per day (or week) as a PNG chart, with totals in the
caption and, in a group, the five most active people by name (from `getChatMember`).
/export: the chat's results as a spreadsheet-safe CSV file; in a group only for its
administrators. /forget: an inline keyboard asks first; only the asker's "yes" deletes their
results in this chat (and drops their waiting caption), "cancel" deletes nothing.
The records are read, counted, drawn and rewritten in threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging

from telegram import Bot, Chat, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ChatMemberStatus, ParseMode
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from bot import replies
from bot.errors import Refusal
from bot.handlers import deps
from core.errors import RecordsError
from core.export import csv_bytes
from core.stats import chat_stats

log = logging.getLogger(__name__)

STATS_DEFAULT_DAYS, STATS_MAX_DAYS = 30, 365
TELEGRAM_UPLOAD_LIMIT = 50 * 1024 * 1024
FORGET = "forget"  # callback data: "forget:<user id>:yes" or "forget:<user id>:cancel"
_ADMINS = {ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR}


async def stats(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/stats [days|all]: this chat's moods over time as a chart, never another chat's."""
    message, chat = update.effective_message, update.effective_chat
    days = _stats_days(context.args)
    try:
        result = await asyncio.to_thread(
            chat_stats, deps(context).store, chat.id, days, deps(context).timezone
        )
    except RecordsError as error:
        log.error("Statistics unavailable: %s", error)
        raise Refusal(replies.STATS_UNAVAILABLE) from None
    if result is None:
        await message.reply_html(replies.no_stats(days))
        return
    names = {}
    if chat.type != Chat.PRIVATE:
        people = [person.user_id for person in result.people]
        found = await asyncio.gather(*(_name(context.bot, chat.id, user) for user in people))
        names = dict(zip(people, found, strict=True))
    await message.reply_photo(
        result.png, caption=replies.stats_caption(result, names), parse_mode=ParseMode.HTML
    )


async def export(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/export: this chat's results as a CSV file; in a group, for administrators only."""
    message, chat, user = update.effective_message, update.effective_chat, update.effective_user
    if chat.type != Chat.PRIVATE and not await _is_admin(context.bot, chat.id, user.id):
        await message.reply_html(replies.EXPORT_ADMINS_ONLY)
        return
    try:
        data, count = await asyncio.to_thread(
            lambda: csv_bytes(deps(context).store.records(chat.id))
        )
    except RecordsError as error:
        log.error("Export unavailable: %s", error)
        raise Refusal(replies.EXPORT_UNAVAILABLE) from None
    if len(data) > TELEGRAM_UPLOAD_LIMIT:
        await message.reply_html(replies.EXPORT_TOO_BIG.format(chat_id=chat.id))
        return
    await message.reply_document(
        data, filename=f"mood-results-{chat.id}.csv", caption=replies.exported(count)
    )


async def forget(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/forget: ask this person to confirm before their results in this chat are deleted."""
    user = update.effective_user.id
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(replies.FORGET_YES, callback_data=f"{FORGET}:{user}:yes"),
                InlineKeyboardButton(
                    replies.FORGET_CANCEL, callback_data=f"{FORGET}:{user}:cancel"
                ),
            ]
        ]
    )
    await update.effective_message.reply_html(replies.FORGET_ASK, reply_markup=keyboard)


async def forget_pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A press on /forget's buttons: only the person who asked decides."""
    query, chat = update.callback_query, update.effective_chat
    _, owner, choice = query.data.split(":")
    if int(owner) != query.from_user.id:
        await query.answer(replies.FORGET_NOT_YOURS)
        return
    await query.answer()
    if choice != "yes":
        await query.edit_message_text(replies.FORGET_CANCELLED)
        return
    try:
        count = await asyncio.to_thread(deps(context).store.forget, int(owner), chat.id)
    except RecordsError as error:
        log.error("Could not forget user %s in chat %s: %s", owner, chat.id, error)
        await query.edit_message_text(replies.FORGET_UNAVAILABLE)
        return
    deps(context).pending.drop(chat.id, int(owner))
    log.info("Forgot %d results of user %s in chat %s", count, owner, chat.id)
    await query.edit_message_text(replies.forgotten(count))


def _stats_days(args: list[str]) -> int | None:
    """None for `all`; a refusal with the usage for anything but 1 to STATS_MAX_DAYS."""
    if [arg.lower() for arg in args] == ["all"]:
        return None
    try:
        (days,) = [int(arg) for arg in args] or [STATS_DEFAULT_DAYS]
    except ValueError:
        days = 0
    if not 1 <= days <= STATS_MAX_DAYS:
        raise Refusal(replies.STATS_USAGE.format(limit=STATS_MAX_DAYS))
    return days


async def _name(bot: Bot, chat_id: int, user_id: int) -> str:
    """A member's name as Telegram shows it; people who left or hide stay a number."""
    try:
        member = await bot.get_chat_member(chat_id, user_id)
    except TelegramError as error:
        log.info("No name for user %s in chat %s: %s", user_id, chat_id, error)
        return f"user {user_id}"
    return member.user.full_name


async def _is_admin(bot: Bot, chat_id: int, user_id: int) -> bool:
    try:
        member = await bot.get_chat_member(chat_id, user_id)
    except TelegramError as error:
        log.warning("Could not check user %s in chat %s: %s", user_id, chat_id, error)
        return False
    return member.status in _ADMINS
