"""Shared `from_pretrained` call that turns the many ways loading fails into one clear line."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from core.errors import ModelLoadError

T = TypeVar("T")


def load_pretrained(
    loader: Callable[..., T], name_or_path: str, *, variable: str, token: str | None, **kwargs
) -> T:
    """Same call for a hub id and a local folder; the first hub download shows its progress bars."""
    try:
        return loader(name_or_path, token=token, **kwargs)
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(
            f"Could not load the model {name_or_path!r} ({variable}): {reason} "
            f"Fix: run once with network access so it is saved in the Hugging Face cache, "
            f"or set {variable} to a local folder made with save_pretrained()."
        ) from None
