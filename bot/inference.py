"""Runs the models off the event loop, so other chats are answered while a photo is captioned.

One worker thread: on a small CPU server two model calls at once only fight over the same
cores, and torch already uses them all inside one call. The number of jobs waiting or
running is bounded: past it, people are told to try again instead of memory growing.

Micro-batching (`BATCH_WINDOW_MS` above 0): a caption request waits up to that long for
others, from any chat, and up to `MAX_BATCH` of them go through the model in one call;
classifications likewise, with each other. Each request still gets its own result or its own
error (`Pipeline.caption_each`, `Pipeline.classify_many`); if the batch's model call fails as a
whole, each request runs again alone, so one poisoned request fails no one else. At 0, each
request is one model call, exactly as `Pipeline.caption` and `Pipeline.classify` run it.

When the last model call in flight ends, the thread hands the memory that the call freed back
to the system (`on_idle`), so between bursts the bot's RSS is what the models really hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from bot import replies
from bot.errors import Refusal
from core.config import Settings
from core.errors import ModelServiceError
from core.memory import release_freed_memory
from core.pipeline import Analysis, Pipeline

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Inference:
    def __init__(
        self,
        pipeline: Pipeline,
        max_jobs: int,
        worker: ThreadPoolExecutor | None = None,
        *,
        batch_window_ms: float = 0,
        max_batch: int = 8,
        on_idle: Callable[[], object] = release_freed_memory,
    ) -> None:
        self.pipeline = pipeline
        self.max_jobs = max_jobs
        self.jobs = 0
        self._worker = worker or _inference_thread()
        self._on_idle = on_idle
        self._calls = 0  # model calls submitted and not yet finished
        self._captions: _Batcher[bytes, str] | None = None
        self._analyses: _Batcher[tuple[str, str, str], Analysis] | None = None
        if batch_window_ms > 0:
            window = batch_window_ms / 1000
            self._captions = _Batcher(pipeline.caption_each, self._run, window, max_batch)
            self._analyses = _Batcher(pipeline.classify_many, self._run, window, max_batch)

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
        worker.submit(release_freed_memory).result()
        return cls(
            pipeline,
            settings.limits.max_queued_jobs,
            worker,
            batch_window_ms=settings.batch_window_ms,
            max_batch=settings.max_batch,
        )

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
        if self._captions is not None:
            return await self._captions(image)
        (caption,) = await self._run(lambda: self.pipeline.caption([image]))
        return caption

    async def classify(self, caption: str, text: str, caption_source: str) -> Analysis:
        if self._analyses is not None:
            return await self._analyses((caption, text, caption_source))
        return await self._run(
            lambda: self.pipeline.classify(caption, text, caption_source=caption_source)
        )

    def close(self) -> None:
        """Let a running analysis finish: its reply and its record belong together."""
        self._worker.shutdown(wait=True)

    async def _run(self, work: Callable[[], T]) -> T:
        self._calls += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._worker, work)
        finally:
            self._calls -= 1
            if self._calls == 0:
                # After the result has gone out: a caller never waits for this.
                with contextlib.suppress(RuntimeError):  # the worker has been shut down
                    self._worker.submit(self._on_idle)


class _Batcher(Generic[T, R]):
    """Collects requests on the event loop and runs them as one batch on the inference thread.

    The first request of a batch starts the window; the batch goes when the window ends or
    when it holds `max_batch` requests, whichever comes first. `run` returns one result or
    one exception per request, in order.
    """

    def __init__(
        self,
        run: Callable[[list[T]], list[R | Exception]],
        submit: Callable[[Callable[[], list[R | Exception]]], Awaitable[list[R | Exception]]],
        window_s: float,
        max_batch: int,
    ) -> None:
        self._run = run
        self._submit = submit
        self._window_s = window_s
        self._max_batch = max_batch
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._batches: set[asyncio.Task[None]] = set()  # running: kept from garbage collection

    async def __call__(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._waiting.append((item, future))
        if len(self._waiting) >= self._max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._window_s, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # A request whose caller gave up (cancelled) is not worth a place in the batch.
        batch = [(item, future) for item, future in self._waiting if not future.done()]
        self._waiting = []
        if batch:
            task = asyncio.get_running_loop().create_task(self._serve(batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _serve(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        items = [item for item, _ in batch]
        try:
            results = await self._call(items)
        except Exception as error:  # the whole call failed: one request may have poisoned it
            if len(items) == 1:
                results = [error]
            else:
                log.warning(
                    "A batch of %d failed (%r): running each request alone", len(items), error
                )
                results = [await self._alone(item) for item in items]
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _call(self, items: list[T]) -> list[R | Exception]:
        return await self._submit(lambda: self._run(items))

    async def _alone(self, item: T) -> R | Exception:
        """So that one bad request fails only itself, never the others of its batch."""
        try:
            (result,) = await self._call([item])
        except Exception as error:
            return error
        return result


def _inference_thread() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
