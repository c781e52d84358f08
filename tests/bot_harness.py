"""A real `Application` of ours, polling a FakeBotApi on 127.0.0.1, for end-to-end tests."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from telegram.ext import Application

from bot.app import ALLOWED_UPDATES, build_application, stores
from bot.inference import Inference
from core.config import Settings
from core.database import Database
from core.pipeline import Pipeline
from core.store import RecordsStore
from tests.fake_botapi import FakeBotApi


class Clock:
    """Time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class RunningBot:
    api: FakeBotApi
    application: Application
    records_path: Path
    clock: Clock
    store: RecordsStore  # the records file, or the database

    def rows(self) -> list[dict[str, str]]:
        if not self.records_path.exists():
            return []
        with self.records_path.open(newline="", encoding="utf-8") as file:
            return list(csv.DictReader(file))


def bot_settings(api: FakeBotApi, models, records_path: Path, **extra: str) -> Settings:
    return Settings.from_env(
        {
            "TELEGRAM_BOT_TOKEN": api.token,
            "TELEGRAM_API_BASE_URL": api.root_url,
            "CAPTION_MODEL": str(models.caption),
            "SENTIMENT_MODEL": str(models.sentiment),
            "RECORDS_PATH": str(records_path),
            "PENDING_PATH": str(records_path.with_name("pending.json")),
            **extra,
        },
        dotenv_path=None,
    )


@asynccontextmanager
async def running_bot(
    api: FakeBotApi,
    settings: Settings,
    pipeline: Pipeline | None = None,
    allowed_updates: list[str] | None = None,
    database: Database | None = None,
) -> AsyncIterator[RunningBot]:
    """`allowed_updates` as `main()` asks for them, unless a test asks Telegram for more.
    With `database`, records and waiting captions go there, as with DATABASE_URL."""
    clock = Clock()
    records, pending = stores(settings, database, clock)
    inference = Inference(
        pipeline or Pipeline.from_settings(settings),
        settings.limits.max_queued_jobs,
        batch_window_ms=settings.batch_window_ms,  # as Inference.start does
        max_batch=settings.max_batch,
    )
    application = build_application(settings, inference, records, pending)
    async with application:
        await application.post_init(application)  # as run_polling does
        await application.start()
        await application.updater.start_polling(
            poll_interval=0, timeout=1, allowed_updates=allowed_updates or ALLOWED_UPDATES
        )
        try:
            yield RunningBot(api, application, settings.records_path, clock, records)
        finally:
            if application.updater.running:
                await application.updater.stop()
            if application.running:
                await application.stop()
