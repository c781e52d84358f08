"""Mood bot: a photo (or a caption in words) plus a message in, a mood out.

`main()` reads the settings, refuses to start without a token, opens the database of
DATABASE_URL if there is one, loads both models once (or checks the remote ones), builds the
`Application` and polls Telegram (or, with WEBHOOK_URL, serves a webhook) until
SIGINT/SIGTERM. A Telegram that cannot be reached at start is tried again, with a warning
each time, until it answers; a webhook address that cannot be listened on stops the bot with
one line naming the setting. The handlers below are the bot's whole behaviour; each one lives
in `bot.handlers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import sys
import time
from collections.abc import Callable
from urllib.parse import urlparse

from telegram import BotCommand, Update
from telegram.error import NetworkError, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot import data_commands, handlers
from bot.flood import FloodControl
from bot.handlers import Deps
from bot.inference import Inference
from bot.ordering import PerPersonOrder
from bot.pending import PendingCaptions
from bot.pending_postgres import PostgresPendingCaptions
from bot.ratelimit import RateLimit
from core.config import Settings
from core.database import Database
from core.errors import CoreError, RecordsError
from core.store import RecordsStore, open_database, records_location, records_store

log = logging.getLogger(__name__)

NO_TOKEN = (
    "TELEGRAM_BOT_TOKEN is not set: get a token from @BotFather in Telegram (/newbot) "
    "and put TELEGRAM_BOT_TOKEN=<token> in .env (see .env.example)."
)
COMMANDS = [
    BotCommand("help", "How to use the bot"),
    BotCommand("analyze", "Reply to a photo or text: /analyze your message"),
    BotCommand("history", "Latest results in this chat: /history [N]"),
    BotCommand("stats", "This chat's moods as a chart: /stats [days|all]"),
    BotCommand("export", "This chat's results as a CSV file (groups: admins)"),
    BotCommand("forget", "Delete your results in this chat"),
    BotCommand("cancel", "Forget the caption waiting for your message"),
]
# Messages, and presses on /forget's buttons.
ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]


class MoodApplication(Application):
    async def initialize(self) -> None:
        """The first call to Telegram (getMe): `run` retries it, and each failure is said."""
        try:
            await super().initialize()
        except NetworkError as error:
            log.warning(
                "Telegram cannot be reached (%s): trying again, waiting up to %d s between tries",
                error,
                _MAX_RETRY_WAIT_S,
            )
            raise


_MAX_RETRY_WAIT_S = 30  # python-telegram-bot's bootstrap backoff: 1 s, then ×1.5 up to this
RETRY_FOREVER = -1
_CANNOT_LISTEN = (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)


def stores(
    settings: Settings, database: Database | None, clock: Callable[[], float] = time.time
) -> tuple[RecordsStore, PendingCaptions | PostgresPendingCaptions]:
    """The records and the waiting captions: in the database, or in their files."""
    ttl = settings.pending_ttl_seconds
    if database is None:
        pending = PendingCaptions(ttl, clock=clock, path=settings.pending_path)
    else:
        pending = PostgresPendingCaptions(database, ttl, clock=clock)
    return records_store(settings, database), pending


def build_application(
    settings: Settings,
    inference: Inference,
    records: RecordsStore,
    pending: PendingCaptions | PostgresPendingCaptions,
) -> Application:
    builder = (
        ApplicationBuilder()
        .application_class(MoodApplication)
        .token(settings.telegram_bot_token)
        .concurrent_updates(PerPersonOrder())
        .rate_limiter(FloodControl())
        .post_init(_start)
        .post_shutdown(_close)
    )
    if settings.telegram_api_base_url:
        base = settings.telegram_api_base_url
        builder = builder.base_url(f"{base}/bot").base_file_url(f"{base}/file/bot")
    application = builder.build()
    limits = settings.limits
    application.bot_data["deps"] = Deps(
        inference=inference,
        store=records,
        pending=pending,
        rate=RateLimit(limits.jobs_per_minute),
        allowed_chat_ids=limits.allowed_chat_ids,
        timezone=settings.timezone,
    )

    new = filters.UpdateType.MESSAGE  # edits and channel posts are deliberately ignored
    private = filters.ChatType.PRIVATE
    pictures = filters.PHOTO | filters.Document.IMAGE | filters.Sticker.STATIC
    application.add_handler(TypeHandler(Update, handlers.only_allowed_chats), group=-1)
    application.add_handlers(
        [
            CommandHandler(["start", "help"], handlers.help_command, filters=new),
            CommandHandler("cancel", handlers.cancel, filters=new),
            CommandHandler("history", handlers.history, filters=new),
            CommandHandler("stats", data_commands.stats, filters=new),
            CommandHandler("export", data_commands.export, filters=new),
            CommandHandler("forget", data_commands.forget, filters=new),
            CallbackQueryHandler(
                data_commands.forget_pressed, pattern=rf"^{data_commands.FORGET}:-?\d+:\w+$"
            ),
            CommandHandler("analyze", handlers.analyze_command, filters=new),
            MessageHandler(new & pictures, handlers.picture),
            MessageHandler(new & private & filters.Document.ALL, handlers.not_a_picture),
            MessageHandler(new & filters.TEXT & ~filters.COMMAND, handlers.text),
            MessageHandler(new & private, handlers.not_understood),
        ]
    )
    application.add_error_handler(handlers.error_handler)
    return application


def main() -> None:
    with contextlib.ExitStack() as resources:
        try:
            settings = Settings.from_env()
            if not settings.telegram_bot_token:
                sys.exit(NO_TOKEN)
            settings.configure_logging()
            # Before the models: a database that is down stops the bot in a second, not a minute.
            database = resources.enter_context(open_database(settings))
            inference = Inference.start(settings)
        except CoreError as error:
            sys.exit(f"error: {error}")
        log.info("Records go to %s", records_location(settings))
        records, pending = stores(settings, database)
        run(build_application(settings, inference, records, pending), settings)


def run(application: Application, settings: Settings) -> None:
    """Long polling, or with WEBHOOK_URL python-telegram-bot's own webhook server, which
    answers 403 to any request without the right X-Telegram-Bot-Api-Secret-Token."""
    if not settings.webhook_url:
        application.run_polling(allowed_updates=ALLOWED_UPDATES, bootstrap_retries=RETRY_FOREVER)
        return
    log.info(
        "Webhook mode: listening on %s:%s for %s",
        settings.webhook_listen,
        settings.webhook_port,
        settings.webhook_url,
    )
    try:
        application.run_webhook(
            listen=settings.webhook_listen,
            port=settings.webhook_port,
            url_path=urlparse(settings.webhook_url).path,  # a reverse proxy keeps the path
            webhook_url=settings.webhook_url,
            secret_token=settings.webhook_secret_token,
            allowed_updates=ALLOWED_UPDATES,
            bootstrap_retries=RETRY_FOREVER,
        )
    except OSError as error:
        if error.errno not in _CANNOT_LISTEN:
            raise
        sys.exit(
            f"error: cannot listen on {settings.webhook_listen}:{settings.webhook_port} "
            f"({error.strerror}): set WEBHOOK_PORT to a free port, or WEBHOOK_LISTEN to an "
            "address of this machine."
        )


async def _start(application: Application) -> None:
    await _recover_records(application)
    await _register_commands(application)


async def _recover_records(application: Application) -> None:
    """A row torn by a crash is set aside now, before anyone waits on it."""
    try:
        await asyncio.to_thread(application.bot_data["deps"].store.recover)
    except RecordsError as error:
        log.error("%s: answers go on, results are not recorded until this is fixed", error)


async def _register_commands(application: Application) -> None:
    """Best effort: the bot works without the menu, so a failure is only logged."""
    try:
        await application.bot.set_my_commands(COMMANDS)
    except TelegramError as error:
        log.warning("Could not register the command list: %s", error)


async def _close(application: Application) -> None:
    await asyncio.to_thread(application.bot_data["deps"].inference.close)
