"""Telegram's flood limits, without one chat's "retry after" freezing every other chat.

python-telegram-bot's AIORateLimiter paces requests to Telegram's limits, but when it
retries a 429 it holds back *all* requests until the wait is over. Here only the request
that got the 429 waits, a bounded number of times and never longer than `max_wait`.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from datetime import timedelta
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import AIORateLimiter
from telegram.warnings import PTBDeprecationWarning

log = logging.getLogger(__name__)


class FloodControl(AIORateLimiter):
    def __init__(self, retries: int = 3, max_wait: float = 30.0) -> None:
        super().__init__(max_retries=0)  # retries happen below, per request
        self.retries = retries
        self.max_wait = max_wait

    async def process_request(self, *args: Any, **kwargs: Any) -> Any:
        tries = 0
        while True:
            try:
                return await super().process_request(*args, **kwargs)
            except RetryAfter as error:
                tries += 1
                wait = _seconds(error)
                if tries > self.retries or wait > self.max_wait:
                    log.error("Telegram flood limit: giving up after %d tries", tries)
                    raise
                log.warning("Telegram flood limit: retrying one request in %.1f s", wait)
                await asyncio.sleep(wait + 0.1)


def _seconds(error: RetryAfter) -> float:
    """PTB is moving `retry_after` from int to timedelta; accept both, without its warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        wait = error.retry_after
    return wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
