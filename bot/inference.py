"""Runs the models off the event loop, so other chats are answered while a photo is captioned.

One worker thread: on a small CPU server two model calls at once only fight over the same
cores, and torch already uses them all inside one call. The number of jobs waiting or
running is bounded: past it, people are told to try again instead of memory growing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from bot import replies
from bot.errors import Refusal
from core.config import Settings
from core.errors import ModelServiceError
from core.pipeline import Analysis, Pipeline

log = logging.getLogger(__name__)

T = TypeVar("T")


class Inference:
    def __init__(
        self, pipeline: Pipeline, max_jobs: int, worker: ThreadPoolExecutor | None = None
    ) -> None:
        self.pipeline = pipeline
        self.max_jobs = max_jobs
        self.jobs = 0
        self._worker = worker or _inference_thread()

    @classmethod
    def start(cls, settings: Settings) -> Inference:
        """Load and warm up the models on the thread that will run them, before polling.

        Once a second thread has run parallel torch work, torch's OpenMP threads outnumber
        the cores and every later call waits for sleeping threads (0.35-0.4 s per photo in
        `bench/bench_models.py`), so the main thread never touches the models.
        """
        worker = _inference_thread()
        pipeline = worker.submit(Pipeline.from_settings, settings).result()
        try:
            seconds = worker.submit(pipeline.warm_up).result()
            log.info("Models warmed up in %.1f s", seconds)
        except ModelServiceError as error:
            log.warning("Warm-up skipped, a remote model is not ready yet: %s", error)
        return cls(pipeline, settings.limits.max_queued_jobs, worker)

    @property
    def input_size(self) -> int:
        return self.pipeline.captioner.input_size

    @contextlib.asynccontextmanager
    async def job(self) -> AsyncIterator[None]:
        """A place in the queue, taken before any download, or a "busy" refusal."""
        if self.jobs >= self.max_jobs:
            raise Refusal(replies.BUSY)
        self.jobs += 1
        try:
            yield
        finally:
            self.jobs -= 1

    async def caption(self, image: bytes) -> str:
        (caption,) = await self._run(lambda: self.pipeline.caption([image]))
        return caption

    async def classify(self, caption: str, text: str, caption_source: str) -> Analysis:
        return await self._run(
            lambda: self.pipeline.classify(caption, text, caption_source=caption_source)
        )

    def close(self) -> None:
        """Let a running analysis finish: its reply and its record belong together."""
        self._worker.shutdown(wait=True)

    async def _run(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, work)


def _inference_thread() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
