"""Mood bot: a photo (or a caption in words) plus a message in, a mood out.

`main()` reads the settings, refuses to start without a token, loads both models once,
builds the `Application` and polls Telegram until SIGINT/SIGTERM. The handlers below are
the bot's whole behaviour; each one lives in `bot.handlers`.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from telegram import BotCommand, Update
from telegram.error import TelegramError
from telegram.ext import Application, ApplicationBuilder, CommandHandler, MessageHandler, filters

from bot import handlers
from bot.handlers import Deps
from bot.inference import Inference
from bot.ordering import PerPersonOrder
from core.config import Settings
from core.errors import CoreError
from core.pending import PendingCaptions
from core.pipeline import Pipeline
from core.records import RecordStore

log = logging.getLogger(__name__)

NO_TOKEN = (
    "TELEGRAM_BOT_TOKEN is not set: get a token from @BotFather in Telegram (/newbot) "
    "and put TELEGRAM_BOT_TOKEN=<token> in .env (see .env.example)."
)
COMMANDS = [
    BotCommand("help", "How to use the bot"),
    BotCommand("analyze", "Reply to a photo or text: /analyze your message"),
    BotCommand("history", "Latest results in this chat: /history [N]"),
    BotCommand("cancel", "Forget the caption waiting for your message"),
]


def build_application(
    settings: Settings, pipeline: Pipeline, pending: PendingCaptions | None = None
) -> Application:
    builder = (
        ApplicationBuilder()
        .token(settings.telegram_bot_token)
        .concurrent_updates(PerPersonOrder())
        .post_init(_register_commands)
        .post_shutdown(_close)
    )
    if settings.telegram_api_base_url:
        base = settings.telegram_api_base_url
        builder = builder.base_url(f"{base}/bot").base_file_url(f"{base}/file/bot")
    application = builder.build()
    application.bot_data["deps"] = Deps(
        inference=Inference(pipeline),
        store=RecordStore(settings.records_path),
        pending=pending or PendingCaptions(settings.pending_ttl_seconds),
    )

    new = filters.UpdateType.MESSAGE  # edits and channel posts are deliberately ignored
    private = filters.ChatType.PRIVATE
    pictures = filters.PHOTO | filters.Document.IMAGE
    application.add_handlers(
        [
            CommandHandler(["start", "help"], handlers.help_command, filters=new),
            CommandHandler("cancel", handlers.cancel, filters=new),
            CommandHandler("history", handlers.history, filters=new),
            CommandHandler("analyze", handlers.analyze_command, filters=new),
            MessageHandler(new & pictures, handlers.picture),
            MessageHandler(new & private & filters.Document.ALL, handlers.not_a_picture),
            MessageHandler(new & filters.TEXT & ~filters.COMMAND, handlers.text),
        ]
    )
    application.add_error_handler(handlers.error_handler)
    return application


def main() -> None:
    try:
        settings = Settings.from_env()
    except CoreError as error:
        sys.exit(f"error: {error}")
    if not settings.telegram_bot_token:
        sys.exit(NO_TOKEN)
    settings.configure_logging()
    try:
        pipeline = Pipeline.from_settings(settings)
    except CoreError as error:
        sys.exit(f"error: {error}")
    log.info("Records go to %s", settings.records_path.resolve())
    build_application(settings, pipeline).run_polling(allowed_updates=[Update.MESSAGE])


async def _register_commands(application: Application) -> None:
    """Best effort: the bot works without the menu, so a failure is only logged."""
    try:
        await application.bot.set_my_commands(COMMANDS)
    except TelegramError as error:
        log.warning("Could not register the command list: %s", error)


async def _close(application: Application) -> None:
    await asyncio.to_thread(application.bot_data["deps"].inference.close)
