"""Giving freed heap back to the system, so the bot's memory shows what it really holds."""

from __future__ import annotations

import contextlib
import ctypes
import math
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# Every live `Scratch`, so that `release_freed_memory` can empty them.
_SCRATCHES: weakref.WeakSet[Scratch] = weakref.WeakSet()


class Scratch:
    """Large buffers that a model call writes in place, kept from one call to the next until
    `release_freed_memory` drops them with the rest.

    glibc maps a block above 32 MiB afresh from the system at each allocation and unmaps it
    when it is freed, and the kernel zeroes every page again at first touch: eight photos'
    cross-attention keys and values (510 MB) took 125,000 page faults and 0.2-1.3 s of system
    time per caption here. Kept, they are written in place.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}
        _SCRATCHES.add(self)

    def tensor(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A contiguous tensor of `shape`: the front of buffer `name`, grown if too small.

        Its contents are whatever the last call left, and the next request for `name`
        overwrites them; asking for `name` with another shape of no more elements reuses it.
        """
        import torch  # here, not above: the bot imports this module without loading models

        size = math.prod(shape)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < size or buffer.dtype != dtype:
            self._buffers.pop(name, None)  # freed before the larger one is made
            buffer = self._buffers[name] = torch.empty(size, dtype=dtype)
        return buffer[:size].view(shape)

    def clear(self) -> None:
        self._buffers.clear()


def release_freed_memory() -> None:
    """Hand the heap that the process has freed back to the system, with every `Scratch`.

    glibc keeps freed heap for reuse, and a model call frees a lot: the float copies made
    while converting weights at load time (0.6 GB after int8 loading), and activations after
    a batch of photos (0.4 GB after eight). Done at those moments, it costs 10-20 ms (README,
    "Precision"). Elsewhere than glibc only the scratch buffers go.
    """
    for scratch in list(_SCRATCHES):
        scratch.clear()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
