"""Giving freed heap back to the system, so the bot's memory shows what it really holds."""

from __future__ import annotations

import ctypes
import functools
import mmap
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the bot imports this module without torch when both models are remote
    import torch


def release_freed_memory() -> None:
    """Hand the heap that the process has freed back to the system.

    glibc keeps freed heap for reuse, and a model call frees a lot: the float copies made
    while converting weights at load time, and activations after a batch of photos. Done at
    those moments it costs milliseconds (docs/performance.md). A no-op elsewhere than glibc.
    """
    if malloc_trim := _libc("malloc_trim"):
        malloc_trim(0)


# mallopt(3)'s parameters, and the values `hold_freed_heap` gives them.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_TRIM_ABOVE, _MAP_ABOVE = 1 << 30, 1 << 28


def hold_freed_heap() -> None:
    """Let glibc keep freed heap for the next model call, until `release_freed_memory`.

    By default glibc maps blocks of some MB afresh and hands a freed top of the heap straight
    back, so each of a model call's large activations is faulted in page by page, at every
    call: a sixth of an int8 vision encoder's time. Whoever runs the models calls
    `release_freed_memory` when they go idle, as `bot.inference` does; from then on the
    process holds its busy memory only while busy. A no-op elsewhere than glibc.
    """
    if mallopt := _libc("mallopt"):
        mallopt(_M_TRIM_THRESHOLD, _TRIM_ABOVE)
        mallopt(_M_MMAP_THRESHOLD, _MAP_ABOVE)


# madvise(2)'s MADV_PAGEOUT (Linux 5.4): reclaim these pages now. It never loses data: a page
# of a mapped file is read again if touched, one of the heap goes to swap (or stays, without).
_MADV_PAGEOUT = 21


def page_out(tensor: torch.Tensor) -> None:
    """Let the system reclaim the whole pages of `tensor`'s memory, which is no longer needed.

    A checkpoint is memory-mapped, and every page of it that a conversion has read stays in
    the process's memory until the last tensor of the file is gone: while BLIP was rounded to
    int8 layer by layer, its whole float32 file piled up there. A no-op where madvise or
    MADV_PAGEOUT is missing.
    """
    start = tensor.data_ptr()
    first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
    last = (start + tensor.numel() * tensor.element_size()) // mmap.PAGESIZE * mmap.PAGESIZE
    if last <= first:
        return
    if madvise := _libc("madvise"):
        madvise(first, last - first, _MADV_PAGEOUT)


@functools.cache
def _libc(name: str) -> Callable[..., int] | None:
    """The C library's function `name`, looked up once; None where there is no such library
    or function (not glibc)."""
    try:
        function = getattr(ctypes.CDLL("libc.so.6"), name)
    except (OSError, AttributeError):
        return None
    if name == "madvise":  # an address wider than the C int ctypes assumes
        function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return function
