"""A sliding-window limit per key: how often one person may start model work.

A key whose hits have all left the window is forgotten, in one sweep at most once a window,
so memory follows the people active in the last window, not everyone ever seen.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable


class RateLimit:
    def __init__(
        self, limit: int, window_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self._clock = clock
        self._hits: dict[Hashable, deque[float]] = {}
        self._lock = threading.Lock()
        self._swept = clock()

    def take(self, key: Hashable) -> float:
        """Count one for `key` and return 0.0; over the limit, count nothing and return the wait."""
        now = self._clock()
        with self._lock:
            if now - self._swept >= self.window_seconds:
                self._forget_idle(now)
            hits = self._hits.setdefault(key, deque())
            while hits and now - hits[0] >= self.window_seconds:
                hits.popleft()
            if len(hits) >= self.limit:
                return hits[0] + self.window_seconds - now
            hits.append(now)
            return 0.0

    def _forget_idle(self, now: float) -> None:
        self._hits = {
            key: hits
            for key, hits in self._hits.items()
            if hits and now - hits[-1] < self.window_seconds
        }
        self._swept = now
