"""Giving freed heap back to the system, so the bot's memory shows what it really holds."""

from __future__ import annotations

import contextlib
import ctypes


def release_freed_memory() -> None:
    """Hand the heap that the process has freed back to the system.

    glibc keeps freed heap for reuse, and a model call frees a lot: the float copies made
    while converting weights at load time, and activations after a batch of photos. Done at
    those moments it costs milliseconds (docs/performance.md). A no-op elsewhere than glibc.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
