"""Runs the models off the event loop, so other chats are answered while a photo is captioned.

One worker thread: on a small CPU server two model calls at once only fight over the same
cores, and torch already uses them all inside one call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from core.pipeline import Analysis, Pipeline

T = TypeVar("T")


class Inference:
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")

    @property
    def input_size(self) -> int:
        return self.pipeline.captioner.input_size

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
