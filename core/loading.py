"""Shared model loading: one clear line for the many ways `from_pretrained` fails, and each
model read in the dtype it will run in."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

from core.errors import ModelLoadError
from core.hub import in_hub_cache, reach_hub
from core.memory import hold_freed_heap
from core.precision import LOAD_DTYPES, Hardware

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=nn.Module)


def load_pretrained(
    loader: Callable[..., T],
    name_or_path: str,
    *,
    variable: str,
    token: str | None,
    adapters: bool = False,
    **kwargs,
) -> T:
    """Same call for a hub id and a local folder; the first hub download shows its progress bars.

    A hub model already in the Hugging Face cache loads from there without asking the hub
    for a newer copy: while the hub could not be reached, huggingface_hub retried each file
    five times, and a start took 7 minutes. What the cache lacks is still downloaded, once the
    hub has answered a first request within a few seconds.

    `adapters`: the loader is a model's, which also looks for a PEFT adapter where peft is
    installed. transformers 5's Auto classes do not pass `local_files_only` on to that lookup,
    so a cached sentiment model still asked the hub for its `adapter_config.json`.
    """
    try:
        if in_hub_cache(name_or_path):
            cached_only: dict[str, object] = {"local_files_only": True}
            if adapters:
                cached_only["adapter_kwargs"] = {"local_files_only": True}
            try:
                return loader(name_or_path, token=token, **cached_only, **kwargs)
            except OSError as error:
                log.info("%s is not all in the cache (%s); asking the hub", name_or_path, error)
        reach_hub(name_or_path, variable)
        return loader(name_or_path, token=token, **kwargs)
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(
            f"Could not load the model {name_or_path!r} ({variable}): {reason} "
            f"Fix: run once with network access so it is saved in the Hugging Face cache, "
            f"or set {variable} to a local folder made with save_pretrained()."
        ) from None


def load_weights(
    loader: Callable[..., M],
    name_or_path: str,
    *,
    model: str,
    token: str | None,
    mode: str,
    hardware: Hardware,
) -> M:
    """Read `model` (`core.precision.CAPTION` or `SENTIMENT`) as stock transformers, in the
    dtype that `mode` (already resolved) loads, on `hardware`'s device."""
    started = time.perf_counter()
    hold_freed_heap()  # this process runs models from now on (`core.memory`)
    loaded = load_pretrained(
        loader,
        name_or_path,
        variable=f"{model.upper()}_MODEL",
        token=token,
        adapters=True,
        dtype=LOAD_DTYPES[mode],
    )
    if hardware.device.startswith("cuda"):
        # cuDNN's fused attention builds a plan for each new shape: a caption of a new batch
        # size took a second more (docs/performance.md). fp32 never takes that path.
        torch.backends.cuda.enable_cudnn_sdp(False)
    log.debug(
        "%s model %s read in %.1f s",
        model.capitalize(),
        name_or_path,
        time.perf_counter() - started,
    )
    return loaded.to(hardware.device)


def log_loaded(model: str, name_or_path: str, started: float, mode: str, path: str) -> None:
    """One line per model at start: what loaded, how long it took, and what runs it."""
    log.info(
        "%s model %s loaded in %.1f s (%s; %s)",
        model.capitalize(),
        name_or_path,
        time.perf_counter() - started,
        mode,
        path,
    )
